// Mixed precision (see precision.h).
#include "common/precision.h"

#include <ATen/autocast_mode.h>
#include <torch/version.h>

#include <fstream>
#include <sstream>

#include "common/check.h"
#include "driftlab_config.h"

#if DRIFTLAB_WITH_CUDA
#include <ATen/cuda/CUDAContext.h>
#endif

// LibTorch 2.4 replaced the per-device autocast setters by ones taking the device type (and
// deprecated the old ones, which -Werror refuses).
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
#define DRIFTLAB_AUTOCAST_BY_DEVICE_TYPE 1
#else
#define DRIFTLAB_AUTOCAST_BY_DEVICE_TYPE 0
#endif

namespace driftlab {
namespace {

bool autocast_enabled(bool cuda) {
#if DRIFTLAB_AUTOCAST_BY_DEVICE_TYPE
  return at::autocast::is_autocast_enabled(cuda ? at::kCUDA : at::kCPU);
#else
  return cuda ? at::autocast::is_enabled() : at::autocast::is_cpu_enabled();
#endif
}

void set_autocast(bool cuda, bool enabled, c10::ScalarType dtype) {
#if DRIFTLAB_AUTOCAST_BY_DEVICE_TYPE
  const auto type = cuda ? at::kCUDA : at::kCPU;
  at::autocast::set_autocast_dtype(type, dtype);
  at::autocast::set_autocast_enabled(type, enabled);
#else
  if (cuda) {
    at::autocast::set_autocast_gpu_dtype(dtype);
    at::autocast::set_enabled(enabled);
  } else {
    at::autocast::set_autocast_cpu_dtype(dtype);
    at::autocast::set_cpu_enabled(enabled);
  }
#endif
}

c10::ScalarType autocast_dtype(bool cuda) {
#if DRIFTLAB_AUTOCAST_BY_DEVICE_TYPE
  return at::autocast::get_autocast_dtype(cuda ? at::kCUDA : at::kCPU);
#else
  return cuda ? at::autocast::get_autocast_gpu_dtype() : at::autocast::get_autocast_cpu_dtype();
#endif
}

// The flags line of /proc/cpuinfo's first processor ("" where there is none).
std::string cpu_flags() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("flags", 0) == 0) return " " + line.substr(line.find(':') + 1) + " ";
  return "";
}

}  // namespace

const char* precision_name(Precision p) { return p == Precision::kBf16 ? "bf16" : "fp32"; }

bool hardware_bf16(torch::Device device) {
  if (device.is_cuda()) {
#if DRIFTLAB_WITH_CUDA
    return at::cuda::getCurrentDeviceProperties()->major >= 8;
#else
    return false;
#endif
  }
  const std::string f = cpu_flags();
  return f.find(" avx512_bf16 ") != std::string::npos || f.find(" amx_bf16 ") != std::string::npos;
}

PrecisionChoice resolve_precision(const std::string& flag, torch::Device device, const std::string& flag_name) {
  DL_REQUIRE(flag == "auto" || flag == "fp32" || flag == "bf16",
             flag_name << "=" << flag << ": expected auto, fp32 or bf16");
  const bool hw = hardware_bf16(device);
  const std::string where = device.is_cuda() ? "this GPU" : "this CPU";
  const std::string support = device.is_cuda() ? "compute capability 8.0 or newer" : "AVX512-BF16 or AMX-BF16";
  PrecisionChoice c;
  if (flag == "fp32") {
    c.reason = "fp32 (" + flag_name + "=fp32)";
  } else if (flag == "bf16") {
    c.precision = Precision::kBf16;
    c.reason = "bf16 autocast (" + flag_name + "=bf16)" +
               (hw ? std::string() : "; " + where + " lacks " + support + ": bf16 runs emulated, slower than fp32");
  } else if (hw) {
    c.precision = Precision::kBf16;
    c.reason = "bf16 autocast (" + flag_name + "=auto: " + where + " has " + support + ")";
  } else {
    c.reason = "fp32 (" + flag_name + "=auto: " + where + " lacks " + support + ")";
  }
  return c;
}

AutocastScope::AutocastScope(Precision p, torch::Device device) {
  if (p != Precision::kBf16) return;
  active_ = true;
  cuda_ = device.is_cuda();
  was_enabled_ = autocast_enabled(cuda_);
  was_dtype_ = autocast_dtype(cuda_);
  set_autocast(cuda_, true, c10::ScalarType::BFloat16);
  at::autocast::increment_nesting();
}

AutocastScope::~AutocastScope() {
  if (!active_) return;
  // The cache holds bf16 copies of leaf weights; they are stale once the optimizer steps.
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  set_autocast(cuda_, was_enabled_, was_dtype_);
}

torch::Tensor as_fp32(const torch::Tensor& t) {
  if (!t.defined() || t.scalar_type() == torch::kFloat) return t;
  return t.to(torch::kFloat);
}

}  // namespace driftlab
