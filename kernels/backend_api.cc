// What every backend shares and what needs no backend: names and properties of the element-wise
// functions, and the devices this build offers. Linked by code that only inspects a graph (shape
// inference, the daemon's JobSpec validation) without pulling in oneDNN.
#include <string>
#include <vector>

#include "kernels/backend.h"

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

std::vector<std::string> AvailableDevices() { return {"cpu"}; }

}  // namespace elektronn::kernels
