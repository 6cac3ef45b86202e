// What every backend shares and what needs no backend: names and properties of the element-wise
// functions, and the devices this build offers. Linked by code that only inspects a graph (shape
// inference, the daemon's JobSpec validation) without pulling in oneDNN.
#include <string>
#include <vector>

#include "kernels/backend.h"
#ifdef ELK_HAVE_CUDA
#include "kernels/cuda/cuda_devices.h"
#endif

namespace elektronn::kernels {

// selu, concentration and radius increase monotonically, so they commute with max-pooling too.
bool IsMonotone(Eltwise e) { return e != Eltwise::kAbs; }

const char* EltwiseName(Eltwise e) {
  switch (e) {
    case Eltwise::kLinear:
      return "lin";
    case Eltwise::kRelu:
      return "relu";
    case Eltwise::kTanh:
      return "tanh";
    case Eltwise::kSigmoid:
      return "sigmoid";
    case Eltwise::kAbs:
      return "abs";
    case Eltwise::kSoftplus:
      return "softplus";
    case Eltwise::kElu:
      return "elu";
    case Eltwise::kSelu:
      return "selu";
    case Eltwise::kConcentration:
      return "concentration";
    case Eltwise::kRadius:
      return "radius";
  }
  return "?";
}

std::vector<std::string> AvailableDevices() {
  std::vector<std::string> d = {"cpu"};
#ifdef ELK_HAVE_CUDA
  auto n = cuda::CudaDeviceCount();
  for (int i = 0; n.ok() && i < *n; ++i) d.push_back("cuda:" + std::to_string(i));
#endif
  return d;
}

}  // namespace elektronn::kernels
