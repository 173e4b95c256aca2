// Gradient buckets against the mean of per-rank gradients computed in the test, parameter
// broadcast from rank 0, and the replica sync check (including that it catches divergence).
#include <gflags/gflags.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <set>

#include "comm/grad_buckets.h"
#include "comm/replica_sync.h"
#include "comm_test_env.h"

namespace driftlab::comm {
namespace {

using testing::comm;

// Several parameter shapes (matrices, vectors, a 4-d conv kernel, a 3-d free tensor), a float64
// parameter, a frozen parameter, buffers (batch norm), and a parameter that only rank 0 uses.
struct NetImpl : torch::nn::Module {
  NetImpl() {
    conv = register_module("conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(2, 4, 3).padding(1)));
    norm = register_module("norm", torch::nn::BatchNorm2d(4));
    fc1 = register_module("fc1", torch::nn::Linear(4 * 5 * 5, 33));
    fc2 = register_module("fc2", torch::nn::Linear(torch::nn::LinearOptions(33, 6).bias(false)));
    cube = register_parameter("cube", torch::randn({2, 3, 6}));
    wide = register_parameter("wide", torch::randn({6}, torch::kDouble));
    frozen = register_parameter("frozen", torch::randn({6}), /*requires_grad=*/false);
    only_rank0 = register_parameter("only_rank0", torch::randn({6}));
  }
  torch::Tensor forward(const torch::Tensor& x, int as_rank) {
    auto h = torch::relu(norm(conv(x))).flatten(1);
    auto y = fc2(torch::tanh(fc1(h)));                       // [B, 6]
    y = y + (cube.sum(0) * cube.sum(0)).sum(0) + frozen;     // [6] broadcast
    y = y * (1 + wide.to(torch::kFloat).tanh());
    if (as_rank == 0) y = y + only_rank0.sin();
    return y.pow(2).mean();
  }
  torch::nn::Conv2d conv{nullptr};
  torch::nn::BatchNorm2d norm{nullptr};
  torch::nn::Linear fc1{nullptr}, fc2{nullptr};
  torch::Tensor cube, wide, frozen, only_rank0;
};
TORCH_MODULE(Net);

torch::Tensor batch_of(int rank) {
  torch::manual_seed(1000 + rank);
  return torch::randn({3 + rank, 2, 5, 5});
}

// Gradients of the loss on rank q's batch, computed here (same parameters on every rank).
std::vector<torch::Tensor> grads_as(Net& net, int q) {
  net->zero_grad();
  net->eval();  // batch-norm statistics stay fixed so every simulated rank sees the same model
  net->forward(batch_of(q), q).backward();
  std::vector<torch::Tensor> g;
  for (auto& p : net->parameters())
    g.push_back(p.grad().defined() ? p.grad().clone() : torch::zeros_like(p));
  return g;
}

// A replicated net: each rank builds it from a different seed, then takes rank 0's values.
Net replicated_net() {
  torch::manual_seed(7 + 31 * comm().rank());
  Net net;
  broadcast_module(comm(), *net, 0);
  return net;
}

TEST(ReplicaSync, BroadcastMakesRanksIdenticalAndTheCheckSeesDivergence) {
  torch::manual_seed(7 + 31 * comm().rank());
  Net net;
  net->norm->running_mean.fill_(comm().rank());
  SyncReport before = check_replicas_in_sync(comm(), *net);
  EXPECT_EQ(before.tensors, static_cast<int64_t>(replica_tensors(*net).size()));
  if (comm().world_size() > 1) { EXPECT_FALSE(before.in_sync()); }  // different seeds: every tensor differs
  broadcast_module(comm(), *net, 0);
  EXPECT_TRUE(check_replicas_in_sync(comm(), *net).in_sync());
  EXPECT_EQ(net->norm->running_mean[0].item<float>(), 0.0f);  // buffers come from rank 0 too

  // One bit of one parameter on the last rank: exactly that tensor is reported, on every rank.
  if (comm().world_size() > 1 && comm().rank() == comm().world_size() - 1) {
    torch::NoGradGuard no_grad;
    auto bits = net->fc1->weight.view(torch::kInt);
    bits.view({-1})[5].add_(1);
  }
  SyncReport after = check_replicas_in_sync(comm(), *net);
  if (comm().world_size() > 1) {
    ASSERT_EQ(after.differing, std::vector<std::string>{"fc1.weight"});
    EXPECT_FALSE(maybe_check_sync(comm(), *net, 7, 3));  // not a multiple of 3: does not run
    EXPECT_THROW(maybe_check_sync(comm(), *net, 9, 3), std::runtime_error);
  } else {
    EXPECT_TRUE(after.in_sync());
    EXPECT_TRUE(maybe_check_sync(comm(), *net, 9, 3));
  }
  EXPECT_FALSE(maybe_check_sync(comm(), *net, 0, 0));
}

TEST(ReplicaSync, DifferentModelsOnDifferentRanksAreAClearError) {
  if (comm().world_size() == 1) GTEST_SKIP() << "needs several ranks";
  torch::nn::Linear lin(3, comm().rank() == 1 ? 5 : 4);
  try {
    broadcast_module(comm(), *lin, 0);
    FAIL() << "no throw";
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("weight"), std::string::npos) << e.what();
  }
  std::vector<int64_t> values = {1, 2, comm().rank() == 1 ? 9 : 3, 4};
  RankComparison cmp = compare_across_ranks(comm(), values);
  EXPECT_EQ(cmp.differing, std::vector<size_t>{2});
  EXPECT_TRUE(compare_across_ranks(comm(), std::vector<int64_t>(comm().rank() + 1, 0)).length_differs);
}

// Invariants of the bucket layout that hold for any options.
void expect_valid_layout(const GradientBuckets& gb, const std::vector<torch::Tensor>& params) {
  std::set<size_t> seen;
  std::map<std::pair<int, bool>, int> buckets_per_dtype;
  size_t previous_first = params.size();
  for (const auto& b : gb.buckets()) {
    ASSERT_FALSE(b.params.empty());
    int64_t numel = 0;
    for (size_t k = 0; k < b.params.size(); ++k) {
      const auto& p = params[b.params[k]];
      EXPECT_TRUE(p.requires_grad());
      EXPECT_EQ(p.scalar_type(), b.dtype);  // one dtype per bucket
      EXPECT_EQ(b.offsets[k], numel);
      numel += p.numel();
      EXPECT_TRUE(seen.insert(b.params[k]).second) << "parameter in two buckets";
      if (k > 0) { EXPECT_LT(b.params[k], b.params[k - 1]); }  // reverse registration order inside
    }
    EXPECT_EQ(b.numel, numel);
    EXPECT_EQ(b.flat.numel(), numel);
    // Buckets start in the order their first gradient appears (reverse registration).
    EXPECT_LT(b.params[0], previous_first);
    previous_first = b.params[0];
    // A bucket closes at the first parameter that reaches its limit: without its last
    // parameter it was below the limit.
    const int64_t elem = c10::elementSize(b.dtype);
    const int64_t limit = buckets_per_dtype[{static_cast<int>(b.dtype), true}]++ == 0 ? gb.options().first_bucket_bytes
                                                                                      : gb.options().bucket_cap_bytes;
    EXPECT_LT((numel - params[b.params.back()].numel()) * elem, limit);
  }
  size_t trainable = 0;
  for (const auto& p : params) trainable += p.requires_grad() ? 1 : 0;
  EXPECT_EQ(seen.size(), trainable);
}

class GradSync : public ::testing::TestWithParam<BucketOptions> {};

TEST_P(GradSync, EqualsTheMeanOfPerRankGradients) {
  Net net = replicated_net();
  const int n = comm().world_size();
  std::vector<torch::Tensor> expected;
  for (int q = 0; q < n; ++q) {
    auto g = grads_as(net, q);
    if (expected.empty()) expected = g;
    else
      for (size_t i = 0; i < g.size(); ++i) expected[i] += g[i];
  }
  for (auto& e : expected) e /= n;

  std::vector<torch::Tensor> params = net->parameters();
  GradientBuckets buckets(comm(), params, GetParam());
  expect_valid_layout(buckets, params);
  grads_as(net, comm().rank());  // this rank's own gradients (only_rank0's grad undefined off rank 0)
  if (comm().rank() != 0) net->only_rank0.mutable_grad() = torch::Tensor();
  buckets.synchronize();
  for (size_t i = 0; i < params.size(); ++i) {
    if (!params[i].requires_grad()) {
      EXPECT_FALSE(params[i].grad().defined());
      continue;
    }
    ASSERT_TRUE(params[i].grad().defined()) << i;
    EXPECT_TRUE(torch::allclose(params[i].grad(), expected[i], 1e-5, 1e-7))
        << "parameter " << i << " max diff " << (params[i].grad() - expected[i]).abs().max().item<double>();
  }
  // A second step through the same (reused) buffers: with bucket views, backward accumulates
  // straight into the buckets (zero_grad zeroes in place) and the result is the same.
  grads_as(net, comm().rank());
  if (comm().rank() != 0) net->only_rank0.mutable_grad() = torch::Tensor();
  buckets.synchronize();
  for (size_t i = 0; i < params.size(); ++i) {
    if (!params[i].requires_grad()) continue;
    EXPECT_TRUE(torch::allclose(params[i].grad(), expected[i], 1e-5, 1e-7)) << "second step, parameter " << i;
  }
  for (const auto& b : buckets.buckets()) {
    for (size_t k = 0; k < b.params.size(); ++k) {
      const auto& g = params[b.params[k]].grad();
      const bool view = g.data_ptr() == b.flat.narrow(0, b.offsets[k], 1).data_ptr();
      EXPECT_EQ(view, GetParam().grads_as_bucket_views) << "parameter " << b.params[k];
    }
  }
  // An optimizer step: replicas agree bitwise.
  torch::optim::SGD sgd(net->parameters(), torch::optim::SGDOptions(0.1));
  sgd.step();
  EXPECT_TRUE(check_replicas_in_sync(comm(), *net).in_sync());
}

BucketOptions opts(int64_t first, int64_t cap, bool overlap, bool views = true) {
  BucketOptions o;
  o.grads_as_bucket_views = views;
  o.first_bucket_bytes = first;
  o.bucket_cap_bytes = cap;
  o.overlap = overlap;
  return o;
}

INSTANTIATE_TEST_SUITE_P(Caps, GradSync,
                         ::testing::Values(opts(int64_t{1} << 20, int64_t{25} << 20, true),  // defaults: one bucket per dtype
                                           opts(100, 1000, true),      // many buckets, several spanning parameters
                                           opts(100, 1000, false),
                                           opts(100, 1000, false, /*views=*/false),
                                           opts(1, 1, true)),          // one parameter per bucket
                         [](const auto& info) {
                           return "first" + std::to_string(info.param.first_bucket_bytes) + "_cap" +
                                  std::to_string(info.param.bucket_cap_bytes) + (info.param.overlap ? "_overlap" : "_serial") +
                                  (info.param.grads_as_bucket_views ? "_views" : "_copies");
                         });

TEST(GradSync, BucketCountsFollowTheCaps) {
  Net net = replicated_net();
  auto params = net->parameters();
  size_t trainable = 0;
  for (const auto& p : params) trainable += p.requires_grad() ? 1 : 0;
  EXPECT_EQ(GradientBuckets(comm(), params).buckets().size(), 2u);  // float32 and float64
  EXPECT_EQ(GradientBuckets(comm(), params, opts(1, 1, true)).buckets().size(), trainable);
  GradientBuckets small(comm(), params, opts(100, 1000, true));
  bool spans = false;
  for (const auto& b : small.buckets()) spans = spans || b.params.size() > 1;
  EXPECT_TRUE(spans) << "expected a bucket holding several parameters";
  EXPECT_GT(small.buckets().size(), 3u);
  EXPECT_LT(small.buckets().size(), trainable);
  EXPECT_THROW(GradientBuckets(comm(), params, opts(0, 1, true)), UserError);
}

}  // namespace
}  // namespace driftlab::comm
