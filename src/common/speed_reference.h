// A speed reference measured in the same run as a timing: this machine's speed varies about 2x
// between days, so a step time is comparable across machines and days only next to what a plain
// matrix product reaches at the same moment, on the same threads.
#pragma once

#include <string>

#include <torch/types.h>

namespace driftlab {

struct SpeedReference {
  double gflops = 0;     // best of the timed repeats, 2 n^3 / seconds
  int64_t size = 0;      // n of the n x n x n product
  int threads = 0;       // LibTorch intra-op threads when measured (CPU)
  std::string dtype;     // "fp32" or "bf16"
  std::string device;    // "cpu" or "cuda:0"
  // "fp32 1024^3 matrix product: 201.3 GFLOP/s (cpu, 2 threads)"
  std::string describe() const;
};

// Times `size` x `size` matrix products in `dtype` on `device` for about `seconds` after one
// warm-up product and reports the fastest repeat.
SpeedReference measure_gemm_reference(torch::Device device, torch::ScalarType dtype = torch::kFloat,
                                      int64_t size = 1024, double seconds = 0.3);

}  // namespace driftlab
