// A same-run speed reference (see speed_reference.h).
#include "common/speed_reference.h"

#include <torch/torch.h>

#include <algorithm>
#include <cstdio>

#include "common/timer.h"

namespace driftlab {

std::string SpeedReference::describe() const {
  char buf[160];
  std::snprintf(buf, sizeof buf, "%s %lld^3 matrix product: %.1f GFLOP/s (%s, %d thread%s)", dtype.c_str(),
                static_cast<long long>(size), gflops, device.c_str(), threads, threads == 1 ? "" : "s");
  return buf;
}

SpeedReference measure_gemm_reference(torch::Device device, torch::ScalarType dtype, int64_t size, double seconds) {
  torch::NoGradGuard no_grad;
  auto opts = torch::TensorOptions().dtype(dtype).device(device);
  const auto a = torch::randn({size, size}, opts.dtype(torch::kFloat)).to(dtype);
  const auto b = torch::randn({size, size}, opts.dtype(torch::kFloat)).to(dtype);
  auto c = torch::mm(a, b);
  // .item() waits for the device: the timing covers the product, not its launch.
  (void)c.sum().item<float>();
  double best = 1e30;
  Stopwatch total;
  int repeats = 0;
  while (repeats < 3 || total.seconds() < seconds) {
    Stopwatch sw;
    torch::mm_out(c, a, b);
    (void)c[0][0].item<float>();
    best = std::min(best, sw.seconds());
    if (++repeats >= 1000) break;
  }
  SpeedReference r;
  r.size = size;
  r.gflops = 2.0 * static_cast<double>(size) * static_cast<double>(size) * static_cast<double>(size) / best / 1e9;
  r.threads = torch::get_num_threads();
  r.dtype = dtype == torch::kBFloat16 ? "bf16" : dtype == torch::kFloat ? "fp32" : std::string(c10::toString(dtype));
  r.device = device.str();
  return r;
}

}  // namespace driftlab
