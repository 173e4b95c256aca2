// Tests of the drifting field against docs/DRIFTING.md: a float64 reference written plainly with
// loops, the section 8 sanity checks, the dense / tiled / fake-distributed paths, extreme inputs
// and error messages.
#include <gtest/gtest.h>

#include <cmath>
#include <condition_variable>
#include <mutex>
#include <thread>

#include <torch/torch.h>

#include "common/check.h"
#include "drift/cpu_loops.h"
#include "drift/field.h"
#include "drift_test_util.h"

namespace driftlab::drift {
namespace {

using torch::Tensor;

struct Ref {
  std::vector<double> V;  // [G, N, D] flattened
  double s = 0, loss = 0;
  std::vector<double> lambda, raw_sq, entropy;
};

// docs/DRIFTING.md section 2, literally: loops over pairs, two softmaxes, float64.
Ref reference(const Tensor& x_, const Tensor& yp_, const Tensor& yn_, const Tensor& wp_, const Tensor& wn_,
              const FieldOptions& o, int64_t offset = 0) {
  Tensor x = x_.to(torch::kDouble).contiguous(), yp = yp_.to(torch::kDouble).contiguous(),
         yn = yn_.to(torch::kDouble).contiguous();
  const int64_t G = x.size(0), N = x.size(1), D = x.size(2), P = yp.size(1), Q = yn.size(1), C = P + Q;
  auto X = x.accessor<double, 3>();
  auto YP = yp.accessor<double, 3>();
  auto YN = yn.accessor<double, 3>();
  auto y = [&](int64_t g, int64_t j, int64_t k) { return j < P ? YP[g][j][k] : YN[g][j - P][k]; };
  std::vector<double> w(G * C, 1.0);
  if (wp_.defined() || wn_.defined())
    for (int64_t g = 0; g < G; ++g)
      for (int64_t j = 0; j < C; ++j) {
        if (j < P && wp_.defined()) w[g * C + j] = (wp_.dim() == 1 ? wp_[j] : wp_[g][j]).item<double>();
        if (j >= P && wn_.defined()) w[g * C + j] = (wn_.dim() == 1 ? wn_[j - P] : wn_[g][j - P]).item<double>();
      }
  auto masked = [&](int64_t i, int64_t j) { return o.mask_self && j == P + offset + i; };
  std::vector<double> d(G * N * C);
  double num = 0, den = 0;
  for (int64_t g = 0; g < G; ++g)
    for (int64_t i = 0; i < N; ++i)
      for (int64_t j = 0; j < C; ++j) {
        double acc = 0;
        for (int64_t k = 0; k < D; ++k) acc += (X[g][i][k] - y(g, j, k)) * (X[g][i][k] - y(g, j, k));
        d[(g * N + i) * C + j] = std::sqrt(acc);
        if (!masked(i, j)) num += w[g * C + j] * std::sqrt(acc), den += w[g * C + j];
      }
  Ref r;
  r.s = num / den;
  const double f = std::sqrt(double(D)) / r.s;
  std::vector<double> V(G * N * D, 0.0);
  for (double tau : o.taus) {
    std::vector<double> Vt(G * N * D, 0.0);
    double ent_sum = 0;
    for (int64_t g = 0; g < G; ++g) {
      std::vector<double> L(N * C), ar(N * C, 0.0), ac(N * C, 0.0), A(N * C, 0.0);
      for (int64_t i = 0; i < N; ++i)
        for (int64_t j = 0; j < C; ++j) L[i * C + j] = -d[(g * N + i) * C + j] / r.s / tau;
      for (int64_t i = 0; i < N; ++i) {  // softmax over columns of row i
        double m = -1e300, z = 0;
        for (int64_t j = 0; j < C; ++j) if (!masked(i, j)) m = std::max(m, L[i * C + j]);
        for (int64_t j = 0; j < C; ++j) if (!masked(i, j)) z += std::exp(L[i * C + j] - m);
        for (int64_t j = 0; j < C; ++j) if (!masked(i, j)) ar[i * C + j] = std::exp(L[i * C + j] - m) / z;
      }
      for (int64_t j = 0; j < C; ++j) {  // softmax over rows of column j
        double m = -1e300, z = 0;
        for (int64_t i = 0; i < N; ++i) if (!masked(i, j)) m = std::max(m, L[i * C + j]);
        for (int64_t i = 0; i < N; ++i) if (!masked(i, j)) z += std::exp(L[i * C + j] - m);
        for (int64_t i = 0; i < N; ++i) if (!masked(i, j)) ac[i * C + j] = std::exp(L[i * C + j] - m) / z;
      }
      for (int64_t i = 0; i < N; ++i) {
        double sa = 0, sal = 0;
        for (int64_t j = 0; j < C; ++j) {
          if (masked(i, j)) continue;
          const double prod = ar[i * C + j] * ac[i * C + j];
          const double a = o.floor ? std::sqrt(std::max(prod, o.floor_value)) : std::sqrt(prod);
          sa += a, sal += a > 0 ? a * std::log(a) : 0.0;
          A[i * C + j] = a * w[g * C + j];
        }
        ent_sum += std::log(sa) - sal / sa;
      }
      for (int64_t i = 0; i < N; ++i) {
        double sp = 0, sn = 0;
        for (int64_t j = 0; j < C; ++j) (j < P ? sp : sn) += A[i * C + j];
        for (int64_t k = 0; k < D; ++k) {
          double ap = 0, an = 0;
          for (int64_t j = 0; j < C; ++j) (j < P ? ap : an) += A[i * C + j] * y(g, j, k) * f;
          Vt[(g * N + i) * D + k] = sn * ap - sp * an;
        }
      }
    }
    double sq = 0;
    for (double v : Vt) sq += v * v;
    const double raw = sq / double(G * N);
    const double lambda = std::sqrt(raw / double(D));
    r.raw_sq.push_back(raw);
    r.lambda.push_back(lambda);
    r.entropy.push_back(ent_sum / double(G * N));
    for (size_t q = 0; q < V.size(); ++q) V[q] += Vt[q] / std::max(lambda, o.drift_eps);
  }
  for (double v : V) r.loss += v * v;
  r.loss /= double(G * N * D);
  r.V = V;
  return r;
}

Tensor ref_tensor(const Ref& r, const Tensor& like) {
  return torch::tensor(r.V, torch::kDouble).view(as_3d(like).sizes());
}

void expect_matches(const FieldResult& f, const Ref& r, const Tensor& x, double tol) {
  Tensor V = f.V.to(torch::kDouble).reshape(as_3d(x).sizes());
  Tensor R = ref_tensor(r, x);
  const double err = (V - R).abs().max().item<double>();
  const double mag = R.abs().max().item<double>();
  EXPECT_LE(err, tol * std::max(1.0, mag)) << "max |V - V_ref| = " << err << " (max |V_ref| = " << mag << ")";
  EXPECT_NEAR(f.scale, r.s, tol * r.s);
  ASSERT_EQ(f.lambda.size(), r.lambda.size());
  for (size_t t = 0; t < r.lambda.size(); ++t) {
    EXPECT_NEAR(f.lambda[t], r.lambda[t], tol * std::max(1e-12, r.lambda[t])) << "tau " << t;
    EXPECT_NEAR(f.raw_drift_sq[t], r.raw_sq[t], tol * std::max(1e-12, r.raw_sq[t])) << "tau " << t;
  }
}

// A random problem whose first N negatives are x itself, then `extra` other negatives.
struct Case {
  Tensor x, yp, yn, wp, wn;
};
Case random_case(int64_t G, int64_t N, int64_t P, int64_t extra, int64_t D, bool weights, torch::Dtype dt,
                 uint64_t seed) {
  torch::manual_seed(seed);
  Case c;
  c.x = torch::randn({G, N, D}, torch::kDouble);
  c.yp = torch::randn({G, P, D}, torch::kDouble) * 1.2 + 0.3;
  Tensor ex = torch::randn({G, extra, D}, torch::kDouble) * 0.8 - 0.2;
  c.yn = torch::cat({c.x, ex}, 1);
  c.x = c.x.to(dt), c.yp = c.yp.to(dt), c.yn = c.yn.to(dt);
  if (weights) {
    c.wp = torch::rand({G, P}, torch::kDouble).add_(0.5).to(dt);
    c.wn = torch::cat({torch::ones({G, N}, torch::kDouble), torch::rand({G, extra}, torch::kDouble) * 3}, 1).to(dt);
  }
  return c;
}

Problem problem_of(const Case& c) { return prob(c.x, c.yp, c.yn, c.wp, c.wn, 0); }

FieldOptions with_path(Path p, int64_t tile_bytes = 12 << 20, int64_t dense_tile = 1 << 18) {
  FieldOptions o;
  o.path = p;
  o.tile_bytes = tile_bytes;
  o.dense_tile_elems = dense_tile;
  return o;
}

TEST(DriftField, DenseMatchesReferenceFloat64) {
  Case c = random_case(3, 7, 5, 4, 6, true, torch::kDouble, 1);
  FieldOptions o = with_path(Path::kDense);
  FieldResult f = drift_field(problem_of(c), o);
  EXPECT_EQ(f.path, Path::kDense);
  expect_matches(f, reference(c.x, c.yp, c.yn, c.wp, c.wn, o), c.x, 1e-9);
}

TEST(DriftField, DenseSmallTilesMatchReference) {
  Case c = random_case(2, 9, 6, 3, 5, false, torch::kDouble, 2);
  FieldOptions o = with_path(Path::kDense, 12 << 20, /*dense_tile=*/40);  // 2 rows per tile, ragged
  expect_matches(drift_field(problem_of(c), o), reference(c.x, c.yp, c.yn, c.wp, c.wn, o), c.x, 1e-9);
}

TEST(DriftField, TiledMatchesReferenceAcrossTileShapes) {
  Case c = random_case(4, 9, 7, 5, 8, true, torch::kDouble, 3);
  const Ref r = reference(c.x, c.yp, c.yn, c.wp, c.wn, FieldOptions{});
  // One row per tile, several rows, whole problems, several problems per tile.
  for (int64_t bytes : {int64_t(1), int64_t(3000), int64_t(20000), int64_t(60000), int64_t(1) << 24}) {
    FieldOptions o = with_path(Path::kTiled, bytes);
    FieldResult f = drift_field(problem_of(c), o);
    EXPECT_EQ(f.path, Path::kTiled);
    SCOPED_TRACE("tile_bytes " + std::to_string(bytes));
    expect_matches(f, r, c.x, 1e-9);
  }
}

TEST(DriftField, Float32AgreesWithFloat64Reference) {
  Case c = random_case(2, 16, 12, 6, 10, true, torch::kFloat, 4);
  const Ref r = reference(c.x, c.yp, c.yn, c.wp, c.wn, FieldOptions{});
  for (Path p : {Path::kDense, Path::kTiled}) {
    SCOPED_TRACE(path_name(p));
    expect_matches(drift_field(problem_of(c), with_path(p, 5000)), r, c.x, 2e-4);
  }
}

TEST(DriftField, FloorOffAndNoSelfMaskMatchReference) {
  torch::manual_seed(5);
  Tensor x = torch::randn({2, 6, 4}, torch::kDouble);
  Tensor yp = torch::randn({2, 5, 4}, torch::kDouble), yn = torch::randn({2, 7, 4}, torch::kDouble) + 0.5;
  FieldOptions o;
  o.floor = false;
  o.mask_self = false;
  o.taus = {0.1, 0.7};
  for (Path p : {Path::kDense, Path::kTiled}) {
    o.path = p;
    o.tile_bytes = 2000;
    expect_matches(drift_field(prob(x, yp, yn), o), reference(x, yp, yn, {}, {}, o), x, 1e-9);
  }
}

// The fused CPU loops (the default on CPU) against the chain of tensor operations (what CUDA
// runs): the same field, scale, lambdas and entropies, across paths, tile shapes, weights, floor,
// self-mask and both precisions.
TEST(DriftField, FusedCpuLoopsEqualTheTensorOperationPath) {
  for (auto dt : {torch::kDouble, torch::kFloat}) {
    const double tol = dt == torch::kDouble ? 1e-11 : 2e-5;
    int variant = 0;
    // D = 4: the loops' scalar remainders only; 8: a half register block; 24 and 37: whole
    // blocks, then a half block or a remainder (the register-blocked sums and distances).
    for (int64_t D : {4, 8, 24, 37})
    for (Path p : {Path::kDense, Path::kTiled})
      for (bool weights : {false, true})
        for (bool floor : {false, true}) {
          SCOPED_TRACE(std::string(path_name(p)) + " weights " + std::to_string(weights) + " floor " +
                       std::to_string(floor) + (dt == torch::kDouble ? " double" : " float") + " D " +
                       std::to_string(D));
          Case c = random_case(5, 9, 7, 3, D, weights, dt, 70 + variant++);
          FieldOptions o = with_path(p, 3000, 50);  // several tiles, some splitting a problem's rows
          o.floor = floor;
          o.floor_value = 1e-3;
          o.compute_entropy = true;
          o.fused_cpu_loops = false;
          FieldResult ref = drift_field(problem_of(c), o);
          o.fused_cpu_loops = true;
          FieldResult got = drift_field(problem_of(c), o);
          const double mag = ref.V.abs().max().item<double>();
          EXPECT_LE((got.V - ref.V).abs().max().item<double>(), tol * std::max(1.0, mag));
          EXPECT_NEAR(got.scale, ref.scale, tol * ref.scale);
          EXPECT_NEAR(got.distances.max, ref.distances.max, tol * ref.distances.max);
          EXPECT_NEAR(got.distances.nn_mean, ref.distances.nn_mean, tol * ref.distances.nn_mean);
          for (size_t t = 0; t < ref.lambda.size(); ++t) {
            EXPECT_NEAR(got.lambda[t], ref.lambda[t], tol * ref.lambda[t]);
            EXPECT_NEAR(got.entropy[t], ref.entropy[t], tol * std::max(1.0, ref.entropy[t]));
          }
        }
  }
}

// Many small whole problems per tile (the keys' shape): the threads take whole tiles and the
// per-tile sums are added in tile order, so V and the statistics are bitwise the same for any
// thread count (and equal to the tensor-operation path to rounding).
TEST(DriftField, ManySmallProblemsGiveTheSameBitsOnOneAndTwoThreads) {
  const int saved = at::get_num_threads();
  Case c = random_case(300, 8, 6, 2, 16, true, torch::kFloat, 77);
  FieldOptions o = with_path(Path::kDense, 12 << 20, 2000);  // several tiles of whole problems
  o.compute_entropy = true;
  at::set_num_threads(1);
  const FieldResult one = drift_field(problem_of(c), o);
  at::set_num_threads(2);
  const FieldResult two = drift_field(problem_of(c), o);
  at::set_num_threads(saved);
  EXPECT_TRUE(torch::equal(one.V, two.V));
  EXPECT_EQ(one.scale, two.scale);
  EXPECT_EQ(one.lambda, two.lambda);
  EXPECT_EQ(one.entropy, two.entropy);
  o.fused_cpu_loops = false;
  const FieldResult ref = drift_field(problem_of(c), o);
  EXPECT_LE((two.V - ref.V).abs().max().item<double>(), 2e-5 * std::max(1.0, ref.V.abs().max().item<double>()));
}

TEST(DriftField, FusedExpMatchesStdExp) {
  double worst = 0;
  for (int i = 0; i <= 200000; ++i) {
    const float x = -86.0f * static_cast<float>(i) / 200000.0f;
    const double want = std::exp(static_cast<double>(x));
    worst = std::max(worst, std::fabs(cpu::exp_nonpositive(x) - want) / want);
  }
  EXPECT_LT(worst, 3e-7);  // a couple of ulp of float
  EXPECT_EQ(cpu::exp_nonpositive(0.0f), 1.0f);
  EXPECT_EQ(cpu::exp_nonpositive(-86.5f), 0.0f);
  EXPECT_EQ(cpu::exp_nonpositive(-std::numeric_limits<float>::infinity()), 0.0f);
}

TEST(DriftField, TwoDimensionalInputsAreOneProblem) {
  Case c = random_case(1, 8, 6, 2, 3, false, torch::kDouble, 6);
  FieldResult f3 = drift_field(problem_of(c), FieldOptions{});
  FieldResult f2 = drift_field(prob(c.x[0], c.yp[0], c.yn[0]), FieldOptions{});
  ASSERT_EQ(f2.V.dim(), 2);
  EXPECT_TRUE(torch::allclose(f2.V, f3.V[0], 1e-12, 1e-12));
}

// ---- section 8 sanity checks ----------------------------------------------------------------

TEST(DriftSanity, SwappingPositivesAndNegativesFlipsTheSign) {
  torch::manual_seed(7);
  Tensor x = torch::randn({2, 10, 5}, torch::kDouble);
  Tensor a = torch::randn({2, 8, 5}, torch::kDouble) + 0.4, b = torch::randn({2, 11, 5}, torch::kDouble) - 0.3;
  Tensor wa = torch::rand({8}, torch::kDouble) + 0.5, wb = torch::rand({11}, torch::kDouble) + 0.5;
  FieldOptions o;
  o.mask_self = false;
  for (Path p : {Path::kDense, Path::kTiled}) {
    o.path = p;
    Tensor v1 = drift_field(prob(x, a, b, wa, wb), o).V;
    Tensor v2 = drift_field(prob(x, b, a, wb, wa), o).V;
    EXPECT_GT(v1.abs().max().item<double>(), 0.1);
    EXPECT_TRUE(torch::allclose(v1, -v2, 1e-9, 1e-9)) << (v1 + v2).abs().max().item<double>();
  }
}

TEST(DriftSanity, PositivesEqualNegativesGiveZeroField) {
  torch::manual_seed(8);
  // D 24: the register-blocked weighted sums (a block and a half). R targets per side: 2R columns,
  // 24 a whole number of 8-float blocks, 20 and 26 not (the last columns of the direct
  // distances, which must match the others bit for bit).
  for (int64_t R : {12, 10, 13})
  for (int64_t D : {4, 24}) {
  Tensor x = torch::randn({3, 9, D});
  Tensor y = torch::randn({3, R, D}) * 1.5;
  Tensor w = torch::rand({3, R}) + 0.2;
  FieldOptions o;
  o.mask_self = false;
  for (Path p : {Path::kDense, Path::kTiled}) {
    o.path = p;
    FieldResult f = drift_field(prob(x, y, y.clone(), w, w.clone()), o);
    EXPECT_LE(f.V.abs().max().item<double>(), 1e-6);
    for (double r : f.raw_drift_sq) EXPECT_LE(r, 1e-10);
  }
  // A field that is not zero in the same geometry: the check above can fail.
  FieldResult g = drift_field(prob(x, y, y * 0.5, w, w), o);
  EXPECT_GT(g.V.abs().max().item<double>(), 0.1);
  }
}

TEST(DriftSanity, LargerTemperatureGivesHigherEntropyAssignments) {
  Case c = random_case(2, 20, 16, 8, 6, false, torch::kDouble, 9);
  FieldOptions o;
  o.taus = {0.01, 0.02, 0.05, 0.2, 1.0, 10.0};
  o.compute_entropy = true;
  o.floor = false;
  FieldResult f = drift_field(problem_of(c), o);
  const Ref r = reference(c.x, c.yp, c.yn, {}, {}, o);
  ASSERT_EQ(f.entropy.size(), o.taus.size());
  for (size_t t = 0; t < f.entropy.size(); ++t) {
    EXPECT_NEAR(f.entropy[t], r.entropy[t], 1e-9);
    if (t > 0) {
      EXPECT_GT(f.entropy[t], f.entropy[t - 1]) << "tau " << o.taus[t];
    }
  }
  EXPECT_LE(f.entropy.back(), std::log(16.0 + 28.0 - 1.0) + 1e-9);
  EXPECT_GT(f.entropy.back(), std::log(43.0) - 0.05);  // nearly uniform at tau = 10
}

TEST(DriftSanity, GradientEqualsMinusTwoVOverND) {
  for (Path p : {Path::kDense, Path::kTiled}) {
    Case c = random_case(2, 7, 6, 3, 5, true, torch::kDouble, 10);
    Tensor x = c.x.clone().requires_grad_(true);
    FieldOptions o = with_path(p, 3000);
    LossResult r = drift_loss(prob(x, c.yp, c.yn, c.wp, c.wn), o);
    r.loss.backward();
    const double G = 2, N = 7, D = 5;
    // x~ = x sqrt(D) / s, so dL/dx~ = dL/dx * s / sqrt(D).
    Tensor grad_tilde = x.grad() * (r.field.scale / std::sqrt(D));
    Tensor expected = -2.0 * r.field.V / (G * N * D);
    EXPECT_TRUE(torch::allclose(grad_tilde, expected, 1e-10, 1e-12))
        << (grad_tilde - expected).abs().max().item<double>();
    EXPECT_NEAR(r.loss.item<double>(), r.field.V.pow(2).sum().item<double>() / (G * N * D), 1e-12);
    EXPECT_NEAR(r.value, r.loss.item<double>(), 1e-12);
    EXPECT_NEAR(r.value, reference(c.x, c.yp, c.yn, c.wp, c.wn, o).loss, 1e-9);
  }
}

// ---- distributed form with a fake collective: W threads in one process ----------------------

class ThreadHub {
 public:
  explicit ThreadHub(int world) : world_(world), slots_(world) {}
  void reduce(int rank, Tensor& t, bool max) {
    std::unique_lock<std::mutex> lock(mu_);
    const int64_t gen = generation_;
    slots_[rank] = t.clone();
    if (++arrived_ == world_) {
      Tensor acc = slots_[0].clone();
      for (int r = 1; r < world_; ++r) acc = max ? torch::maximum(acc, slots_[r]) : acc + slots_[r];
      result_ = acc;
      arrived_ = 0;
      ++generation_;
      ++calls_;
      cv_.notify_all();
    } else {
      cv_.wait(lock, [&] { return generation_ != gen; });
    }
    t.copy_(result_);
  }
  int64_t calls() const { return calls_; }

 private:
  int world_;
  std::vector<Tensor> slots_;
  Tensor result_;
  int arrived_ = 0;
  int64_t generation_ = 0, calls_ = 0;
  std::mutex mu_;
  std::condition_variable cv_;
};

class FakeReducer final : public Reducer {
 public:
  FakeReducer(ThreadHub& hub, int rank) : hub_(hub), rank_(rank) {}
  void all_reduce_sum(Tensor& t) override { hub_.reduce(rank_, t, false); }
  void all_reduce_max(Tensor& t) override { hub_.reduce(rank_, t, true); }

 private:
  ThreadHub& hub_;
  int rank_;
};

void check_distributed(int W, Path path) {
  SCOPED_TRACE("W = " + std::to_string(W) + ", " + path_name(path));
  const int64_t G = 3, N = 8, D = 5;
  Case c = random_case(G, N, 6, 4, D, true, torch::kDouble, 20 + W);
  FieldOptions o = with_path(path, 2500);
  // Single-process result and gradient.
  Tensor x1 = c.x.clone().requires_grad_(true);
  LossResult one = drift_loss(prob(x1, c.yp, c.yn, c.wp, c.wn), o);
  one.loss.backward();
  const Ref ref = reference(c.x, c.yp, c.yn, c.wp, c.wn, o);
  expect_matches(one.field, ref, c.x, 1e-9);

  // Uneven split of the N rows of every problem.
  std::vector<int64_t> start{0};
  for (int r = 0; r < W; ++r) start.push_back(start.back() + N / W + (r < N % W ? 1 : 0));
  ThreadHub hub(W);
  std::vector<LossResult> out(W);
  std::vector<Tensor> xs(W);
  std::vector<std::thread> threads;
  for (int r = 0; r < W; ++r) {
    xs[r] = c.x.narrow(1, start[r], start[r + 1] - start[r]).clone().requires_grad_(true);
    threads.emplace_back([&, r] {
      FakeReducer red(hub, r);
      out[r] = drift_loss(prob(xs[r], c.yp, c.yn, c.wp, c.wn, start[r]), o, &red);
      out[r].loss.backward();
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(hub.calls(), 5);
  std::vector<Tensor> vs, gs;
  double loss_sum = 0;
  for (int r = 0; r < W; ++r) {
    vs.push_back(out[r].field.V);
    gs.push_back(xs[r].grad());
    loss_sum += out[r].loss.item<double>();
    EXPECT_NEAR(out[r].field.scale, one.field.scale, 1e-12);
    EXPECT_NEAR(out[r].value, one.value, 1e-12);
    EXPECT_EQ(out[r].field.total_rows, G * N);
    for (size_t t = 0; t < o.taus.size(); ++t) EXPECT_NEAR(out[r].field.lambda[t], one.field.lambda[t], 1e-10);
  }
  Tensor V = torch::cat(vs, 1), grad = torch::cat(gs, 1);
  EXPECT_TRUE(torch::allclose(V, one.field.V, 1e-10, 1e-10)) << (V - one.field.V).abs().max().item<double>();
  EXPECT_TRUE(torch::allclose(grad, x1.grad(), 1e-10, 1e-14));
  EXPECT_NEAR(loss_sum, one.loss.item<double>(), 1e-12);
}

TEST(DriftDistributed, TwoRanksEqualOneProcess) {
  check_distributed(2, Path::kDense);
  check_distributed(2, Path::kTiled);
}

TEST(DriftDistributed, ThreeRanksEqualOneProcess) {
  check_distributed(3, Path::kDense);
  check_distributed(3, Path::kTiled);
}

// ---- extreme inputs -------------------------------------------------------------------------

void expect_finite(const FieldResult& f) {
  EXPECT_TRUE(torch::isfinite(f.V).all().item<bool>());
  for (double v : f.lambda) EXPECT_TRUE(std::isfinite(v));
  EXPECT_TRUE(std::isfinite(f.scale));
}

TEST(DriftExtreme, TinyAndHugeTemperatures) {
  Case c = random_case(2, 12, 10, 3, 4, true, torch::kFloat, 30);
  FieldOptions o;
  o.taus = {1e-5, 1e-3, 1e3, 1e6};
  for (bool fl : {true, false})
    for (Path p : {Path::kDense, Path::kTiled}) {
      o.floor = fl;
      o.path = p;
      FieldResult f = drift_field(problem_of(c), o);
      expect_finite(f);
      // Each temperature's field is normalized to unit RMS per dimension (when it is not zero).
      EXPECT_GT(f.V.abs().max().item<double>(), 0.0);
    }
  // float64 agrees with the reference at the extremes too.
  Case d = random_case(1, 6, 5, 2, 3, false, torch::kDouble, 31);
  o.floor = false;
  o.path = Path::kDense;
  o.taus = {1e-3, 1e4};
  expect_matches(drift_field(problem_of(d), o), reference(d.x, d.yp, d.yn, {}, {}, o), d.x, 1e-7);
}

TEST(DriftExtreme, AllPointsFarApartAndFarFromOrigin) {
  // A sparse grid with spacing 1e4, offset 1e6: every kernel value underflows without the
  // max-subtraction, and ||x||^2 + ||y||^2 - 2xy would cancel without centering.
  Tensor grid = torch::arange(0, 30, torch::kFloat).view({30, 1}) * 1e4;
  Tensor pts = torch::cat({grid, grid.flip(0) * 0.5}, 1) + 1e6;
  Tensor x = pts.narrow(0, 0, 10), yp = pts.narrow(0, 10, 20);
  FieldOptions o;
  for (Path p : {Path::kDense, Path::kTiled}) {
    o.path = p;
    FieldResult f = drift_field(prob(x, yp, x.clone()), o);
    expect_finite(f);
    EXPECT_GT(f.distances.min, 0.9e4);
  }
  // Same in float64 against the reference (relative geometry is what matters).
  Tensor xd = x.to(torch::kDouble).unsqueeze(0), yd = yp.to(torch::kDouble).unsqueeze(0);
  o.path = Path::kDense;
  expect_matches(drift_field(prob(xd, yd, xd.clone()), o), reference(xd, yd, xd, {}, {}, o), xd, 1e-6);
}

// Positives far from every generated row (the start of training, samples between far modes):
// at tau 0.02 their affinities are ~1e-17 of the negatives', and so is the raw field; each
// temperature's field is then normalised to unit size, so it must be the tiny field itself,
// not the rounding error of the O(1) negative terms. float32 (fused loops and the tensor-op
// chain) against the float64 reference; also with the sides swapped (negatives far).
TEST(DriftExtreme, PositivesFarFromEveryGeneratedRow) {
  torch::manual_seed(41);
  const Tensor near = torch::randn({2, 24, 6}, torch::kDouble);
  const Tensor x = near.narrow(1, 0, 12), close = near.narrow(1, 12, 12);
  const Tensor far = torch::randn({2, 10, 6}, torch::kDouble) + 3.0;
  FieldOptions o;
  o.floor = false;
  o.mask_self = false;  // the generated rows are not among these negatives
  o.taus = {0.02, 0.05, 0.2};
  for (bool swap : {false, true}) {
    const Tensor yp = swap ? close : far, yn = swap ? far : close;
    const Ref r = reference(x, yp, yn, {}, {}, o);
    for (bool fused : {true, false})
      for (Path p : {Path::kDense, Path::kTiled}) {
        SCOPED_TRACE(std::string(swap ? "negatives far, " : "positives far, ") + (fused ? "fused " : "tensor ops ") +
                     path_name(p));
        FieldOptions f = with_path(p, 3000, 50);
        f.floor = false;
        f.mask_self = false;
        f.taus = o.taus;
        f.fused_cpu_loops = fused;
        expect_matches(drift_field(prob(x.to(torch::kFloat), yp.to(torch::kFloat), yn.to(torch::kFloat)), f), r, x, 2e-3);
      }
  }
}

// The field on CUDA tensors (the tensor-operation path; the fused loops are CPU only) equals the
// CPU field: V, scale and lambdas, across paths, weights and the floor, loss and gradient too.
// Skipped without a CUDA device (scripts/gpu-check.sh runs it on the GPU machine).
TEST(DriftCuda, FieldOnCudaEqualsTheCpuField) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  const torch::Device gpu(torch::kCUDA);
  auto on = [&](const Tensor& t) { return t.defined() ? t.to(gpu) : t; };
  int variant = 0;
  for (Path p : {Path::kDense, Path::kTiled})
    for (bool weights : {false, true})
      for (bool floor : {false, true}) {
        SCOPED_TRACE(std::string(path_name(p)) + " weights " + std::to_string(weights) + " floor " +
                     std::to_string(floor));
        Case c = random_case(3, 40, 30, 10, 16, weights, torch::kFloat, 90 + variant++);
        FieldOptions o = with_path(p, 20000, 500);
        o.floor = floor;
        const FieldResult cpu = drift_field(problem_of(c), o);
        const FieldResult cuda = drift_field(prob(on(c.x), on(c.yp), on(c.yn), on(c.wp), on(c.wn), 0), o);
        ASSERT_TRUE(cuda.V.is_cuda());
        const double mag = cpu.V.abs().max().item<double>();
        EXPECT_LE((cuda.V.cpu() - cpu.V).abs().max().item<double>(), 1e-4 * std::max(1.0, mag));
        EXPECT_NEAR(cuda.scale, cpu.scale, 1e-5 * cpu.scale);
        for (size_t t = 0; t < cpu.lambda.size(); ++t) EXPECT_NEAR(cuda.lambda[t], cpu.lambda[t], 1e-4 * cpu.lambda[t]);
      }
  // The loss and its gradient through x.
  Case c = random_case(2, 24, 20, 6, 8, false, torch::kFloat, 99);
  Tensor xc = c.x.clone().requires_grad_(true), xg = c.x.to(gpu).requires_grad_(true);
  Problem pc = problem_of(c), pg = prob(xg, on(c.yp), on(c.yn), {}, {}, 0);
  pc.x = xc;
  const auto lc = drift_loss(pc, FieldOptions{}), lg = drift_loss(pg, FieldOptions{});
  lc.loss.backward();
  lg.loss.backward();
  EXPECT_NEAR(lg.value, lc.value, 1e-5 * std::abs(lc.value));
  EXPECT_LE((xg.grad().cpu() - xc.grad()).abs().max().item<double>(), 1e-4 * xc.grad().abs().max().item<double>());
}

TEST(DriftExtreme, DuplicatedPoints) {
  torch::manual_seed(32);
  Tensor base = torch::randn({4, 3});
  Tensor x = torch::cat({base, base, base});           // every generated point three times
  Tensor yp = torch::cat({base, base, torch::randn({2, 3})});  // positives on top of them
  for (Path p : {Path::kDense, Path::kTiled}) {
    FieldOptions o;
    o.path = p;
    FieldResult f = drift_field(prob(x, yp, x.clone()), o);
    expect_finite(f);
    EXPECT_NEAR(f.distances.min, 0.0, 1e-3);
  }
  // All points identical: zero distances, scale clamped; the field is finite.
  Tensor same = torch::ones({5, 2});
  FieldResult f = drift_field(prob(same, same.clone(), same.clone()), FieldOptions{});
  expect_finite(f);
}

TEST(DriftExtreme, SingleGeneratedRow) {
  Case c = random_case(2, 1, 4, 0, 3, false, torch::kDouble, 33);  // y_neg is x alone: masked
  FieldOptions o;
  for (Path p : {Path::kDense, Path::kTiled}) {
    o.path = p;
    FieldResult f = drift_field(problem_of(c), o);
    expect_finite(f);
    expect_matches(f, reference(c.x, c.yp, c.yn, {}, {}, o), c.x, 1e-9);
  }
  Case d = random_case(1, 1, 3, 2, 2, true, torch::kFloat, 34);
  expect_finite(drift_field(problem_of(d), o));
}

TEST(DriftPath, AutoFollowsTheBudget) {
  Case c = random_case(2, 10, 8, 2, 4, false, torch::kFloat, 40);
  FieldOptions o;
  EXPECT_EQ(dense_matrix_bytes(problem_of(c)), 2 * 10 * 20 * 4);
  o.dense_budget_bytes = 2 * 10 * 20 * 4;
  EXPECT_EQ(drift_field(problem_of(c), o).path, Path::kDense);
  o.dense_budget_bytes -= 1;
  EXPECT_EQ(drift_field(problem_of(c), o).path, Path::kTiled);
  EXPECT_EQ(parse_path("tiled"), Path::kTiled);
  EXPECT_THROW(parse_path("fast"), UserError);
}

// ---- errors ---------------------------------------------------------------------------------

TEST(DriftErrors, BadInputsNameTheProblem) {
  Case c = random_case(2, 5, 4, 1, 3, false, torch::kFloat, 50);
  FieldOptions o;
  auto expect_error = [&](const Problem& p, const FieldOptions& opt, const std::string& needle) {
    SCOPED_TRACE(needle);
    expect_user_error([&] { drift_field(p, opt); }, needle);
  };
  expect_error(prob(c.x, c.yp, {}), o, "must all be given");
  expect_error(prob(c.x, c.yp.narrow(2, 0, 2), c.yn), o, "feature dimension D");
  expect_error(prob(c.x, c.yp.narrow(0, 0, 1), c.yn), o, "number of problems G");
  expect_error(prob(c.x[0], c.yp, c.yn), o, "same number of dimensions");
  expect_error(prob(c.x.narrow(1, 0, 0), c.yp, c.yn), o, "non-empty");
  expect_error(prob(c.x, c.yp.narrow(1, 0, 0), c.yn), o, "at least one positive");
  expect_error(prob(c.x, c.yp, c.yn.narrow(1, 0, 3)), o, "self-mask");
  expect_error(prob(c.x, c.yp, c.yn, {}, {}, 2), o, "self-mask");
  expect_error(prob(c.x, c.yp.to(torch::kDouble), c.yn), o, "one dtype");
  expect_error(prob(c.x.to(torch::kInt), c.yp, c.yn), o, "float32 or float64");
  expect_error(prob(c.x, c.yp, c.yn, torch::ones({3})), o, "w_pos");
  expect_error(prob(c.x, c.yp, c.yn, {}, -torch::ones({6})), o, "non-negative");
  expect_error(prob(c.x, c.yp, c.yn, torch::zeros({4}), torch::zeros({6})), o, "sum to zero");
  Tensor bad = c.yp.clone();
  bad[0][0][0] = std::nan("");
  expect_error(prob(c.x, bad, c.yn), o, "y_pos contains NaN");
  Tensor x1 = c.x.unsqueeze(0);
  expect_error(prob(x1, x1, x1), o, "[N, D] or [G, N, D]");
  FieldOptions t = o;
  t.taus = {};
  expect_error(problem_of(c), t, "at least one temperature");
  t.taus = {0.1, -1.0};
  expect_error(problem_of(c), t, "temperatures must be finite and > 0");
  FieldOptions fl = o;
  fl.floor_value = 0;
  expect_error(problem_of(c), fl, "floor_value");
}

}  // namespace
}  // namespace driftlab::drift
