// The distributed drift field on the real MPI communicator equals the single-process field on
// the concatenated batch (docs/DRIFTING.md section 5), and a data-parallel step through the field
// and the gradient buckets reproduces the single-process gradient of a small generator.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "comm/drift_reducer.h"
#include "comm/grad_buckets.h"
#include "comm/replica_sync.h"
#include "comm_test_env.h"
#include "drift/field.h"

namespace driftlab::comm {
namespace {

using testing::comm;

constexpr int64_t kG = 2, kD = 5, kExtra = 4;

// Rank r owns 2 + r generated rows and 1 + 2r positives: unequal shares, as after an uneven split.
int64_t rows_of(int r) { return 2 + r; }
int64_t positives_of(int r) { return 1 + 2 * r; }
int64_t offset_of(int r) {
  int64_t o = 0;
  for (int q = 0; q < r; ++q) o += rows_of(q);
  return o;
}

drift::Problem make_problem(torch::Tensor x, torch::Tensor y_pos, torch::Tensor y_neg, int64_t self_offset) {
  drift::Problem p;
  p.x = std::move(x);
  p.y_pos = std::move(y_pos);
  p.y_neg = std::move(y_neg);
  p.self_offset = self_offset;
  return p;
}

// Gathers [G, n_r, D] row blocks of every rank along dim 1, in rank order.
torch::Tensor gather_rows(const torch::Tensor& mine) {
  return comm().all_gather_varying(mine.transpose(0, 1).contiguous()).transpose(0, 1).contiguous();
}

class DistributedDrift : public ::testing::TestWithParam<drift::Path> {};

TEST_P(DistributedDrift, EqualsTheSingleProcessFieldOnTheConcatenatedBatch) {
  const int n = comm().world_size(), r = comm().rank();
  const int64_t N = offset_of(n), P = [&] { int64_t s = 0; for (int q = 0; q < n; ++q) s += positives_of(q); return s; }();
  // Global data drawn identically on every rank, so each rank can compute the reference.
  torch::manual_seed(42);
  auto opt = torch::TensorOptions().dtype(torch::kDouble);
  torch::Tensor x_all = torch::randn({kG, N, kD}, opt);
  torch::Tensor pos_all = torch::randn({kG, P, kD}, opt) + 0.5;
  torch::Tensor extra = torch::randn({kG, kExtra, kD}, opt) * 2;
  drift::FieldOptions options;
  options.path = GetParam();
  options.tile_bytes = 4096;  // several tiles even for this small problem

  torch::Tensor x_ref = x_all.clone().requires_grad_();
  drift::LossResult ref =
      drift::drift_loss(make_problem(x_ref, pos_all, torch::cat({x_all, extra}, 1), 0), options);
  ref.loss.backward();

  // This rank's rows and positives; the neighbourhoods come from the real all-gathers.
  const int64_t off = offset_of(r);
  int64_t pos_off = 0;
  for (int q = 0; q < r; ++q) pos_off += positives_of(q);
  torch::Tensor x_mine = x_all.narrow(1, off, rows_of(r)).clone().requires_grad_();
  torch::Tensor pos_gathered = gather_rows(pos_all.narrow(1, pos_off, positives_of(r)));
  torch::Tensor neg_gathered = gather_rows(x_mine.detach());
  ASSERT_TRUE(torch::equal(pos_gathered, pos_all));
  CommunicatorReducer reducer(comm());
  drift::LossResult got = drift::drift_loss(
      make_problem(x_mine, pos_gathered, torch::cat({neg_gathered, extra}, 1), off), options, &reducer);
  got.loss.backward();

  EXPECT_TRUE(torch::allclose(got.field.V, ref.field.V.narrow(1, off, rows_of(r)), 1e-10, 1e-12));
  EXPECT_NEAR(got.field.scale, ref.field.scale, 1e-12 * ref.field.scale);
  ASSERT_EQ(got.field.lambda.size(), ref.field.lambda.size());
  for (size_t k = 0; k < ref.field.lambda.size(); ++k) EXPECT_NEAR(got.field.lambda[k], ref.field.lambda[k], 1e-12);
  EXPECT_NEAR(got.value, ref.value, 1e-12 * std::abs(ref.value));
  EXPECT_EQ(got.field.total_rows, ref.field.total_rows);
  // The shares of the loss sum to the global loss; their gradients are the global gradient's rows.
  torch::Tensor share = got.loss.detach().clone();
  comm().all_reduce_sum(share);
  EXPECT_NEAR(share.item<double>(), ref.loss.item<double>(), 1e-12 * std::abs(ref.value));
  EXPECT_TRUE(torch::allclose(x_mine.grad(), x_ref.grad().narrow(1, off, rows_of(r)), 1e-10, 1e-14));
}

INSTANTIATE_TEST_SUITE_P(Paths, DistributedDrift, ::testing::Values(drift::Path::kDense, drift::Path::kTiled),
                         [](const auto& info) { return std::string(drift::path_name(info.param)); });

// One data-parallel step as the trainer does it: each rank generates its rows from the global
// noise, gathers negatives, takes its loss share times W, and averages gradients in buckets. The
// result is the single-process gradient of the generator.
TEST(DataParallelDrift, StepMatchesSingleProcessGradient) {
  const int n = comm().world_size(), r = comm().rank();
  const int64_t N = offset_of(n);
  torch::manual_seed(5);
  torch::nn::Sequential gen(torch::nn::Linear(3, 8), torch::nn::Tanh(), torch::nn::Linear(8, kD));
  gen->to(torch::kDouble);
  broadcast_module(comm(), *gen, 0);
  auto opt = torch::TensorOptions().dtype(torch::kDouble);
  torch::Tensor noise = torch::randn({N, 3}, opt);
  torch::Tensor positives = torch::randn({1, 9, kD}, opt);
  drift::FieldOptions options;

  // Single process on all N rows.
  gen->zero_grad();
  torch::Tensor x_all = gen->forward(noise).unsqueeze(0);
  drift::drift_loss(make_problem(x_all, positives, x_all.detach(), 0), options).loss.backward();
  std::vector<torch::Tensor> expected;
  for (auto& p : gen->parameters()) expected.push_back(p.grad().clone());

  gen->zero_grad();
  const int64_t off = offset_of(r);
  torch::Tensor x = gen->forward(noise.narrow(0, off, rows_of(r))).unsqueeze(0);
  CommunicatorReducer reducer(comm());
  auto res = drift::drift_loss(make_problem(x, positives, gather_rows(x.detach()), off), options, &reducer);
  (res.loss * n).backward();  // the buckets average; the shares must be summed
  BucketOptions tiny;
  tiny.first_bucket_bytes = 64;
  tiny.bucket_cap_bytes = 256;
  GradientBuckets buckets(comm(), gen->parameters(), tiny);
  buckets.synchronize();
  auto params = gen->parameters();
  for (size_t i = 0; i < params.size(); ++i)
    EXPECT_TRUE(torch::allclose(params[i].grad(), expected[i], 1e-9, 1e-12)) << "parameter " << i;
}

}  // namespace
}  // namespace driftlab::comm
