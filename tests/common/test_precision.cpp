// Mixed precision (common/precision.h): --precision's resolution and errors, the autocast scope
// (on inside, the previous state after, nested scopes, the weight-cast cache cleared at the
// end: an optimizer step between two scopes is seen), the fp32 scope inside it.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "common/precision.h"
#include "user_error.h"

namespace driftlab {
namespace {

TEST(Precision, ResolvesTheFlagAndNamesBadValues) {
  const torch::Device cpu(torch::kCPU);
  EXPECT_EQ(resolve_precision("fp32", cpu).precision, Precision::kFp32);
  EXPECT_EQ(resolve_precision("bf16", cpu).precision, Precision::kBf16);
  const auto a = resolve_precision("auto", cpu);
  EXPECT_EQ(a.precision, hardware_bf16(cpu) ? Precision::kBf16 : Precision::kFp32);
  EXPECT_NE(a.reason.find("--precision=auto"), std::string::npos) << a.reason;
  const std::string msg = testing_util::user_error_of([&] { resolve_precision("fp16", cpu); });
  EXPECT_NE(msg.find("--precision=fp16"), std::string::npos) << msg;
  EXPECT_NE(msg.find("auto, fp32 or bf16"), std::string::npos) << msg;
  EXPECT_STREQ(precision_name(Precision::kBf16), "bf16");
  EXPECT_STREQ(precision_name(Precision::kFp32), "fp32");
}

TEST(Precision, AutocastScopeTurnsMatrixProductsToBf16AndRestores) {
  const torch::Device cpu(torch::kCPU);
  auto a = torch::randn({8, 8}), b = torch::randn({8, 8});
  EXPECT_EQ(torch::mm(a, b).scalar_type(), torch::kFloat);
  {
    AutocastScope off(Precision::kFp32, cpu);
    EXPECT_EQ(torch::mm(a, b).scalar_type(), torch::kFloat);
  }
  {
    AutocastScope on(Precision::kBf16, cpu);
    EXPECT_EQ(torch::mm(a, b).scalar_type(), torch::kBFloat16);
    {
      AutocastScope nested(Precision::kBf16, cpu);
      EXPECT_EQ(torch::mm(a, b).scalar_type(), torch::kBFloat16);
    }
    EXPECT_EQ(torch::mm(a, b).scalar_type(), torch::kBFloat16);  // the inner scope restored "on"
    {
      Fp32Scope fp32;
      EXPECT_EQ(torch::mm(a, b).scalar_type(), torch::kFloat);
    }
    EXPECT_EQ(torch::mm(a, b).scalar_type(), torch::kBFloat16);
    const auto c = torch::mm(a, b);
    EXPECT_EQ(as_fp32(c).scalar_type(), torch::kFloat);
    EXPECT_TRUE(torch::allclose(as_fp32(c), torch::mm(a, b).to(torch::kFloat)));
  }
  EXPECT_EQ(torch::mm(a, b).scalar_type(), torch::kFloat);
  EXPECT_FALSE(as_fp32(torch::Tensor()).defined());
}

// Autocast caches the bf16 copy of a leaf weight that requires grad; the scope's end clears it,
// so the next scope sees the weight as the optimizer left it.
TEST(Precision, WeightUpdatesBetweenScopesAreSeen) {
  const torch::Device cpu(torch::kCPU);
  auto w = torch::ones({4, 4}).requires_grad_(true);
  auto x = torch::ones({2, 4});
  torch::Tensor before, after;
  {
    AutocastScope on(Precision::kBf16, cpu);
    before = torch::mm(x, w).detach();
  }
  {
    torch::NoGradGuard ng;
    w.mul_(2);  // an optimizer step
  }
  {
    AutocastScope on(Precision::kBf16, cpu);
    after = torch::mm(x, w).detach();
  }
  EXPECT_EQ(before[0][0].item<float>(), 4.0f);
  EXPECT_EQ(after[0][0].item<float>(), 8.0f);
}

}  // namespace
}  // namespace driftlab
