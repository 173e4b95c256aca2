// Philox4x32-10 and the draws built on it (see rng.h for the key layout).
#include "common/rng.h"

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <cmath>

#include "common/check.h"

namespace driftlab::rng {
namespace {
constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;
constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;
constexpr double kTwoPi = 6.283185307179586476925286766559;

inline void mulhilo(uint32_t a, uint32_t b, uint32_t& hi, uint32_t& lo) {
  uint64_t p = static_cast<uint64_t>(a) * b;
  hi = static_cast<uint32_t>(p >> 32);
  lo = static_cast<uint32_t>(p);
}

Block counter_of(const Key& k, uint32_t block) {
  DL_CHECK(k.step < (1ull << 32) && k.index < (1ull << 32),
           "rng key out of range: step " << k.step << ", index " << k.index << " (both must be < 2^32)");
  return {block, static_cast<uint32_t>(k.index), static_cast<uint32_t>(k.step),
          static_cast<uint32_t>(k.stream)};
}
std::array<uint32_t, 2> key_of(const Key& k) {
  return {static_cast<uint32_t>(k.seed), static_cast<uint32_t>(k.seed >> 32)};
}
inline double u32_to_open_unit(uint32_t u) { return (u + 0.5) * (1.0 / 4294967296.0); }
}  // namespace

Block philox4x32_10(Block c, std::array<uint32_t, 2> k) {
  for (int round = 0; round < 10; ++round) {
    if (round > 0) {
      k[0] += kW0;
      k[1] += kW1;
    }
    uint32_t hi0, lo0, hi1, lo1;
    mulhilo(kM0, c[0], hi0, lo0);
    mulhilo(kM1, c[2], hi1, lo1);
    c = {hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0};
  }
  return c;
}

Draw::Draw(const Key& key) : counter_(counter_of(key, 0)), key_(key_of(key)) {}

uint32_t Draw::next_u32() {
  if (pos_ == 4) {
    buf_ = philox4x32_10(counter_, key_);
    ++counter_[0];
    DL_CHECK(counter_[0] != 0, "rng stream of one key exhausted (2^34 values)");
    pos_ = 0;
  }
  return buf_[pos_++];
}

uint64_t Draw::next_u64() {
  uint64_t hi = next_u32();
  return (hi << 32) | next_u32();
}

double Draw::uniform() { return ((next_u64() >> 11) + 0.5) * (1.0 / 9007199254740992.0); }

float Draw::uniform_float() { return ((next_u32() >> 8) + 0.5f) * (1.0f / 16777216.0f); }

uint64_t Draw::below(uint64_t n) {
  DL_CHECK(n > 0, "Draw::below(0)");
  // Rejection keeps the result exactly uniform: values in the top partial range are redrawn.
  const uint64_t limit = UINT64_MAX - (UINT64_MAX % n);
  for (;;) {
    uint64_t v = next_u64();
    if (v < limit) return v % n;
  }
}

double Draw::normal() {
  double u1 = u32_to_open_unit(next_u32()), u2 = u32_to_open_unit(next_u32());
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(kTwoPi * u2);
}

void fill_normal(const Key& key, float* out, int64_t n) {
  Block c = counter_of(key, 0);
  const auto k = key_of(key);
  for (int64_t j = 0; j < n; j += 4, ++c[0]) {
    const Block b = philox4x32_10(c, k);
    for (int pair = 0; pair < 2; ++pair) {
      const double r = std::sqrt(-2.0 * std::log(u32_to_open_unit(b[2 * pair])));
      const double theta = kTwoPi * u32_to_open_unit(b[2 * pair + 1]);
      const int64_t at = j + 2 * pair;
      if (at < n) out[at] = static_cast<float>(r * std::cos(theta));
      if (at + 1 < n) out[at + 1] = static_cast<float>(r * std::sin(theta));
    }
  }
}

void fill_uniform(const Key& key, float* out, int64_t n) {
  Block c = counter_of(key, 0);
  const auto k = key_of(key);
  for (int64_t j = 0; j < n; j += 4, ++c[0]) {
    const Block b = philox4x32_10(c, k);
    for (int e = 0; e < 4 && j + e < n; ++e) out[j + e] = ((b[e] >> 8) + 0.5f) * (1.0f / 16777216.0f);
  }
}

torch::Tensor normal_rows(uint64_t seed, Stream stream, uint64_t step, int64_t first_index,
                          int64_t rows, at::IntArrayRef row_shape) {
  DL_CHECK(rows >= 0 && first_index >= 0, "normal_rows: rows " << rows << ", first " << first_index);
  std::vector<int64_t> shape{rows};
  shape.insert(shape.end(), row_shape.begin(), row_shape.end());
  torch::Tensor t = torch::empty(shape, torch::kFloat32);
  const int64_t per_row = rows == 0 ? 0 : t.numel() / rows;
  float* data = t.data_ptr<float>();
  at::parallel_for(0, rows, 16, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r)
      fill_normal(Key{seed, stream, step, static_cast<uint64_t>(first_index + r)}, data + r * per_row, per_row);
  });
  return t;
}

}  // namespace driftlab::rng
