// Mixed precision (--precision=auto|fp32|bf16 of drift_train, drift_encoder and drift_sample).
//
// bf16 runs the generator's and the encoder's forward passes under LibTorch autocast (their
// matrix products and convolutions in bfloat16; the backward follows the forward's types),
// while master weights, optimizer state, EMA and checkpoints stay float32. The callers cast the
// networks' outputs to float32 (as_fp32) before anything that small temperatures make fragile:
// distances, softmaxes and the field, the feature keys' statistics, the loss.
#pragma once

#include <string>

#include <c10/core/impl/LocalDispatchKeySet.h>
#include <torch/types.h>

namespace driftlab {

enum class Precision { kFp32, kBf16 };

// "fp32" or "bf16".
const char* precision_name(Precision p);

// The precision that --precision=`flag` asks for on `device`, and why (one line for the log):
// auto picks bf16 where the hardware computes in it (CPU: AVX512-BF16 or AMX-BF16 in
// /proc/cpuinfo; CUDA: compute capability 8.0 or newer), else fp32; fp32 and bf16 are taken as
// given (bf16 without hardware support runs emulated, slower than fp32: the reason says so).
// Throws UserError naming `flag_name` for any other value.
struct PrecisionChoice {
  Precision precision = Precision::kFp32;
  std::string reason;
};
PrecisionChoice resolve_precision(const std::string& flag, torch::Device device,
                                  const std::string& flag_name = "--precision");

// Whether this machine's `device` computes bfloat16 products in hardware (see above).
bool hardware_bf16(torch::Device device);

// The forward passes of the networks run inside one of these: with kBf16, autocast to bfloat16
// is on for `device`'s type until the scope ends (then the previous state is restored and, at
// the outermost scope, the cast-weight cache is cleared: the next step's weights are new).
// With kFp32 it does nothing. Not thread-safe across threads sharing a scope (autocast state is
// per thread, as in LibTorch).
class AutocastScope {
 public:
  AutocastScope(Precision p, torch::Device device);
  ~AutocastScope();
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;

 private:
  bool active_ = false;
  bool cuda_ = false;
  bool was_enabled_ = false;
  c10::ScalarType was_dtype_ = c10::ScalarType::Float;
};

// Inside an AutocastScope, the ops run in this one's lifetime are not autocast (they run in
// their inputs' types: give them fp32 inputs). The generators' output layers run so, and the
// samples keep fp32 resolution (bf16 keeps 8 bits: steps of 0.016 at coordinates near 3).
class Fp32Scope {
 public:
  Fp32Scope() : guard_(c10::autocast_dispatch_keyset) {}

 private:
  c10::impl::ExcludeDispatchKeyGuard guard_;
};

// `t` as float32 (a no-op for float32 tensors; undefined stays undefined). Differentiable.
torch::Tensor as_fp32(const torch::Tensor& t);

}  // namespace driftlab
