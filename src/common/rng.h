// Counter-based random draws: every number is a pure function of (seed, stream, step, index, j).
//
// This is what makes training world-size invariant: the noise of global sample i at step t is
// the same whether rank 0 of 1 or rank 2 of 3 draws it, and whatever else was drawn before.
// Philox4x32-10 (Salmon et al., SC'11): key = seed, counter = (block j/4, index, step, stream).
// Not for cryptography.
#pragma once

#include <array>
#include <cstdint>

#include <torch/types.h>

namespace driftlab::rng {

// Independent families of draws; a new use gets a new stream so it never aliases another.
enum class Stream : uint32_t {
  kNoise = 1,       // generator input noise, per global sample
  kClass = 2,       // which classes a step trains on
  kAlpha = 3,       // guidance scale per class
  kData = 4,        // which real samples are positives / unconditional negatives
  kStyle = 5,       // style-token codebook choices
  kInit = 6,        // parameter initialisation
  kSample = 7,      // offline sampling noise
  kMask = 8,        // MAE masks
  kToyData = 9,     // synthetic data sets
  kEval = 10,       // evaluation: permutation tests, real-data resamples, KID subsets
  kTest = 1000,     // tests and benchmarks
};

struct Key {
  uint64_t seed = 0;
  Stream stream = Stream::kTest;
  uint64_t step = 0;   // < 2^32
  uint64_t index = 0;  // < 2^32 (global sample index, class id, ...)
};

using Block = std::array<uint32_t, 4>;

// The raw Philox4x32-10 bijection.
Block philox4x32_10(Block counter, std::array<uint32_t, 2> key);

// The stream of numbers of one key, read in order. Element j of the underlying u32 sequence is
// fixed by the key, so Draw(k) always yields the same values whatever happened elsewhere.
class Draw {
 public:
  explicit Draw(const Key& key);
  uint32_t next_u32();
  uint64_t next_u64();
  double uniform();                  // in (0, 1), 53 bits
  float uniform_float();             // in (0, 1), 24 bits
  uint64_t below(uint64_t n);        // uniform integer in [0, n), unbiased; n > 0
  double normal();                   // standard normal (Box-Muller on two fresh uniforms)

 private:
  Block counter_;
  std::array<uint32_t, 2> key_;
  Block buf_{};
  int pos_ = 4;
};

// out[j] = j-th standard normal of the key (prefix-stable: the first n values do not depend on
// how many are asked for). Four normals per Philox block.
void fill_normal(const Key& key, float* out, int64_t n);
// out[j] = j-th uniform in (0, 1) of the key (24-bit floats).
void fill_uniform(const Key& key, float* out, int64_t n);

// Rows [first_index, first_index + rows) of a global [*, row_shape...] normal tensor: row r is
// fill_normal(Key{seed, stream, step, first_index + r}). float32, CPU.
torch::Tensor normal_rows(uint64_t seed, Stream stream, uint64_t step, int64_t first_index,
                          int64_t rows, at::IntArrayRef row_shape);

}  // namespace driftlab::rng
