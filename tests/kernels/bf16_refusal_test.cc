// bf16 refused with a clear error where oneDNN may not use AVX512_BF16. ctest runs this binary
// with DNNL_MAX_CPU_ISA=AVX512_CORE, which makes any CPU look like one without bf16 to oneDNN
// (read once, at oneDNN's first ISA query, so it needs a process of its own).
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include "kernels/backend.h"

namespace elektronn::kernels {
namespace {

void ExpectRefused(const absl::Status& s, const std::string& what) {
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  const std::string m(s.message());
  EXPECT_NE(m.find(what), std::string::npos) << m;
  EXPECT_NE(m.find("'bf16'"), std::string::npos) << m;
  EXPECT_NE(m.find("AVX512_BF16"), std::string::npos) << m;
}

TEST(Bf16Refusal, EveryKernelRefusesAndFp32StillWorks) {
  const char* isa = std::getenv("DNNL_MAX_CPU_ISA");
  ASSERT_TRUE(isa != nullptr && std::string(isa) == "AVX512_CORE")
      << "run through ctest, which sets DNNL_MAX_CPU_ISA=AVX512_CORE";
  auto b = CreateCpuBackend();
  ConvDesc c{1, 4, 4, {6, 6}, {3, 3}, {0, 0}, Eltwise::kRelu, true, DataType::kBf16};
  ExpectRefused(b->CreateConv(c).status(), "convolution");
  c.kernel = {1, 1};  // the matrix-product path checks too
  ExpectRefused(b->CreateConv(c).status(), "convolution");
  MatmulDesc m{4, 4, 4, Eltwise::kLinear, DataType::kBf16};
  ExpectRefused(b->CreateMatmul(m).status(), "matrix product");
  PoolDesc p{1, 4, {4, 4}, {2, 2}, {2, 2}, PoolMode::kMax, DataType::kBf16};
  ExpectRefused(b->CreatePool(p).status(), "pooling");
  DeconvDesc dc{1, 4, 4, {3, 3}, {2, 2}, {2, 2}, Eltwise::kLinear, true, DataType::kBf16};
  ExpectRefused(b->CreateDeconv(dc).status(), "transposed convolution");

  c.dtype = DataType::kF32;
  EXPECT_TRUE(b->CreateConv(c).ok());
  m.dtype = DataType::kF32;
  EXPECT_TRUE(b->CreateMatmul(m).ok());
}

TEST(Bf16Refusal, Names) {
  EXPECT_STREQ(DataTypeName(DataType::kF32), "fp32");
  EXPECT_STREQ(DataTypeName(DataType::kBf16), "bf16");
}

}  // namespace
}  // namespace elektronn::kernels
