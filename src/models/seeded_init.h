// Deterministic parameter initialisation: modules built inside a SeededInit scope draw their
// initial weights from torch's CPU generator reseeded with a config's init_seed, so every rank and
// every rebuild gets the same weights; the caller's generator state is restored afterwards.
#pragma once

#include <torch/torch.h>

#include <cstdint>

namespace driftlab::models {

class SeededInit {
 public:
  explicit SeededInit(uint64_t seed)
      : gen_(at::detail::getDefaultCPUGenerator()), state_(gen_.get_state()) {
    gen_.set_current_seed(seed);
  }
  ~SeededInit() { gen_.set_state(state_); }
  SeededInit(const SeededInit&) = delete;
  SeededInit& operator=(const SeededInit&) = delete;

 private:
  at::Generator gen_;
  at::Tensor state_;
};

}  // namespace driftlab::models
