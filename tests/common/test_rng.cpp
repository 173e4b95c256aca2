// Counter-based draws: known-answer vectors, call-order independence, key separation,
// distribution sanity.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <set>

#include "common/rng.h"

namespace driftlab::rng {
namespace {

// Known-answer vectors of Philox4x32-10 published with the Random123 library (kat_vectors).
TEST(Philox, KnownAnswers) {
  EXPECT_EQ(philox4x32_10({0, 0, 0, 0}, {0, 0}), (Block{0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u}));
  EXPECT_EQ(philox4x32_10({~0u, ~0u, ~0u, ~0u}, {~0u, ~0u}),
            (Block{0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu}));
  EXPECT_EQ(philox4x32_10({0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}, {0xa4093822u, 0x299f31d0u}),
            (Block{0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u}));
}

TEST(Rng, SameKeySameNumbersWhateverTheCallOrder) {
  const Key a{42, Stream::kNoise, 7, 123}, b{42, Stream::kNoise, 7, 124};
  std::vector<float> a1(37), b1(37), a2(37), b2(37);
  fill_normal(a, a1.data(), 37);
  fill_normal(b, b1.data(), 37);
  fill_normal(b, b2.data(), 37);  // reversed order
  fill_normal(a, a2.data(), 37);
  EXPECT_EQ(a1, a2);
  EXPECT_EQ(b1, b2);
  // Prefix stability: asking for fewer values gives the same leading values.
  std::vector<float> a3(5);
  fill_normal(a, a3.data(), 5);
  EXPECT_TRUE(std::equal(a3.begin(), a3.end(), a1.begin()));
  Draw d1(a), d2(a);
  for (int i = 0; i < 100; ++i) ASSERT_EQ(d1.next_u32(), d2.next_u32());
}

TEST(Rng, RowsDoNotDependOnHowTheBatchIsSplit) {
  // What world-size invariance rests on: rows [0, 10) drawn at once equal the concatenation of
  // rows drawn by three "ranks" with uneven slices.
  auto whole = normal_rows(5, Stream::kNoise, 3, 0, 10, {2, 3});
  auto parts = torch::cat({normal_rows(5, Stream::kNoise, 3, 0, 4, {2, 3}),
                           normal_rows(5, Stream::kNoise, 3, 4, 3, {2, 3}),
                           normal_rows(5, Stream::kNoise, 3, 7, 3, {2, 3})});
  EXPECT_TRUE(torch::equal(whole, parts));
  EXPECT_EQ(whole.sizes(), (std::vector<int64_t>{10, 2, 3}));
}

TEST(Rng, DistinctKeysGiveDistinctNumbers) {
  std::set<uint32_t> firsts;
  int n = 0;
  for (uint64_t seed : {0ull, 1ull, 1ull << 40})
    for (Stream s : {Stream::kNoise, Stream::kClass, Stream::kData})
      for (uint64_t step : {0ull, 1ull, 99ull})
        for (uint64_t index : {0ull, 1ull, 4000000000ull}) {
          Draw d(Key{seed, s, step, index});
          firsts.insert(d.next_u32());
          ++n;
        }
  EXPECT_EQ(static_cast<int>(firsts.size()), n);  // 81 keys, no collision of 32-bit values expected
  auto a = normal_rows(1, Stream::kNoise, 0, 0, 1, {64});
  auto b = normal_rows(2, Stream::kNoise, 0, 0, 1, {64});
  EXPECT_FALSE(torch::allclose(a, b));
}

TEST(Rng, NormalMomentsAndTails) {
  auto x = normal_rows(11, Stream::kTest, 0, 0, 1000, {100}).to(torch::kFloat64).flatten();
  const double n = x.numel();
  const double mean = x.mean().item<double>(), var = x.var().item<double>();
  EXPECT_NEAR(mean, 0.0, 5.0 / std::sqrt(n));
  EXPECT_NEAR(var, 1.0, 5.0 * std::sqrt(2.0 / n));
  const double skew = (x - mean).pow(3).mean().item<double>();
  EXPECT_NEAR(skew, 0.0, 5.0 * std::sqrt(6.0 / n));
  const double kurt = (x - mean).pow(4).mean().item<double>() / (var * var);
  EXPECT_NEAR(kurt, 3.0, 5.0 * std::sqrt(24.0 / n));
  // P(|x| > 2) = 0.0455.
  const double tail = (x.abs() > 2).to(torch::kFloat64).mean().item<double>();
  EXPECT_NEAR(tail, 0.0455, 5.0 * std::sqrt(0.0455 * 0.9545 / n));
}

TEST(Rng, UniformAndBelowAreUniform) {
  std::vector<float> u(100000);
  fill_uniform(Key{3, Stream::kTest, 0, 0}, u.data(), u.size());
  std::vector<int> bins(10, 0);
  for (float v : u) {
    ASSERT_GT(v, 0.f);
    ASSERT_LT(v, 1.f);
    ++bins[static_cast<int>(v * 10)];
  }
  double chi2 = 0;
  for (int c : bins) chi2 += (c - 10000.0) * (c - 10000.0) / 10000.0;
  EXPECT_LT(chi2, 27.9);  // chi-square, 9 dof, p = 0.001

  Draw d(Key{3, Stream::kTest, 1, 0});
  std::vector<int> counts(7, 0);
  for (int i = 0; i < 70000; ++i) {
    const uint64_t v = d.below(7);
    ASSERT_LT(v, 7u);
    ++counts[v];
  }
  chi2 = 0;
  for (int c : counts) chi2 += (c - 10000.0) * (c - 10000.0) / 10000.0;
  EXPECT_LT(chi2, 22.5);  // 6 dof, p = 0.001
  for (int i = 0; i < 1000; ++i) {
    const double v = d.uniform();
    ASSERT_GT(v, 0.0);
    ASSERT_LT(v, 1.0);
  }
}

}  // namespace
}  // namespace driftlab::rng
