// The drifting field of docs/DRIFTING.md sections 2, 5 and 6: affinities, multi-temperature field,
// regression loss; dense, tiled two-pass and distributed forms with one result.
//
// Pure tensor code (no I/O, no MPI): every tensor op follows the device and dtype of `x`, so the
// same call runs on CPU and CUDA tensors. Feature keys (section 3) live in features.h.
//
// Single process:
//   drift::Problem p{x, y_pos, y_neg};          // y_neg[:, :N] == x (detached), then extras
//   auto r = drift::drift_loss(p, drift::FieldOptions{});
//   r.loss.backward();                          // gradient w.r.t. x~ is -2 V / (G N D)
//
// Distributed (world of W ranks, rank r owns n_r of the N_total generated rows of each problem):
//   p.x          = this rank's rows             [G, n_r, D]      (with grad)
//   p.y_pos      = all-gathered positives       [G, P, D]        (identical on every rank)
//   p.y_neg      = all-gathered negatives       [G, Q, D]        (identical on every rank): the
//                  generated rows of ALL ranks in rank order, then the extra negatives
//   p.self_offset= sum of n of ranks before r   (rows of x sit at y_neg[:, self_offset + i])
//   p.w_pos/w_neg identical on every rank
//   drift_loss(p, options, &reducer) on every rank, with the same options. It issues five
//   collectives in a fixed order (sum, max, sum, sum, sum; the last only in drift_loss). The
//   result V, scale and lambdas equal the single-process ones on the concatenated rows.
//   `loss` is this rank's SHARE of the global loss (the shares sum to the global loss), so
//   summing parameter gradients over ranks gives the single-process gradient; a gradient sync
//   that AVERAGES must multiply the loss by W first.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <torch/types.h>

#include "drift/reducer.h"

namespace driftlab::drift {

// Large scratch buffers kept across calls. Pass one (per thread) in FieldOptions::workspace when
// the field is computed every step: a fresh allocation must be first-touched page by page, which
// on virtual machines costs tens of microseconds per page, more than the arithmetic on it. Not
// for concurrent calls. Holds at most what the largest call needed (see bytes()).
class Workspace {
 public:
  // A contiguous [numel] tensor with `options` (dtype and device), reusing the named buffer.
  torch::Tensor get(const std::string& name, int64_t numel, const torch::TensorOptions& options);
  int64_t bytes() const;
  void clear() { buffers_.clear(); }

 private:
  std::map<std::string, torch::Tensor> buffers_;
};

// kAuto: dense when its distance matrix fits dense_budget_bytes, otherwise tiled.
enum class Path { kAuto, kDense, kTiled };
const char* path_name(Path p);
Path parse_path(const std::string& name);  // "auto" | "dense" | "tiled"; UserError otherwise
// "0.02,0.05,0.2" -> {0.02, 0.05, 0.2}; UserError naming `flag` unless every item is a finite
// positive number and there is at least one.
std::vector<double> parse_taus(const std::string& text, const std::string& flag = "--taus");

// The paper's temperatures, in --taus syntax: the default of the field and of every tool's --taus.
inline constexpr char kDefaultTaus[] = "0.02,0.05,0.2";

struct FieldOptions {
  std::vector<double> taus = parse_taus(kDefaultTaus);
  // A = sqrt(max(a_row * a_col, floor_value)) as in the reference code; off: A = sqrt(a_row a_col).
  bool floor = true;
  double floor_value = 1e-6;
  double scale_eps = 1e-12;  // s is clamped to this before dividing (all points identical)
  double drift_eps = 1e-8;   // lambda_tau is clamped to this (a field that is already zero)
  // Mask the self pairs (k == self_offset + i). Off for problems whose negatives do not
  // contain x (e.g. the anti-symmetry check with disjoint sets).
  bool mask_self = true;
  Path path = Path::kAuto;
  // Dense keeps the [G, N, P+Q] distance matrix; auto picks it when it needs at most this.
  int64_t dense_budget_bytes = int64_t(1) << 30;
  // Tiled path: bytes of all per-tile buffers together (a tile holds whole rows).
  int64_t tile_bytes = int64_t(10) << 20;
  // Dense path: matrix entries per tile of its elementwise passes (cache-sized).
  int64_t dense_tile_elems = int64_t(1) << 18;
  // Also compute the mean entropy of each row's affinity distribution (one more pass).
  bool compute_entropy = false;
  // Reject NaN/Inf in the inputs (one reduction over the inputs).
  bool check_finite = true;
  // Scratch buffers reused across calls (nullptr: allocated for this call and freed after).
  Workspace* workspace = nullptr;
  // CPU tensors: run each pass as one fused loop over the tile (cpu_loops.h). Off: the chain of
  // tensor operations that CUDA tensors always use (same result to rounding).
  bool fused_cpu_loops = true;
};

// One set of G independent problems sharing N, P, Q and D (one feature key). 2-D tensors are
// taken as G = 1. Weights: [P] / [Q] (shared) or [G, P] / [G, Q]; undefined means all ones.
struct Problem {
  torch::Tensor x;      // [G, N, D] generated rows (gradients flow through these only)
  torch::Tensor y_pos;  // [G, P, D] positives
  torch::Tensor y_neg;  // [G, Q, D] negatives: generated rows (detached), then extra negatives
  torch::Tensor w_pos;  // column weights of the positives (optional)
  torch::Tensor w_neg;  // column weights of the negatives (optional; CFG: w_unc on the extras)
  int64_t self_offset = 0;  // x[:, i] is y_neg[:, self_offset + i] (distributed: rank offset)
};

// Distances between generated rows and targets (unmasked pairs, raw input units, global).
struct DistanceStats {
  double min = 0, max = 0;
  double mean = 0;     // weighted mean: this is the feature scale s
  double nn_mean = 0;  // mean over generated rows of the distance to the nearest target
};

struct FieldResult {
  torch::Tensor V;  // [G, n, D] (as x's rank): summed, per-temperature normalized field, in
                    // normalized-feature units; the target of x~ = x sqrt(D)/s is x~ + V
  double scale = 0;                       // s (raw input units)
  std::vector<double> lambda;             // per tau: sqrt(mean ||V_tau||^2 / D) before normalization
  std::vector<double> raw_drift_sq;       // per tau: mean ||V_tau||^2 before normalization
  std::vector<double> raw_drift_norm;     // per tau: mean ||V_tau|| before normalization
  std::vector<double> entropy;            // per tau: mean row entropy of A (compute_entropy)
  DistanceStats distances;
  Path path = Path::kDense;               // the path that ran
  int64_t total_rows = 0;                 // G * N over all ranks
};

// V for every row of x (no gradient). reducer == nullptr: world of one.
FieldResult drift_field(const Problem& problem, const FieldOptions& options, Reducer* reducer = nullptr);

struct LossResult {
  // mean_i ||x~_i - stopgrad(x~_i + V_i)||^2 / D over all rows of all ranks: this rank's share
  // (0-dim, differentiable w.r.t. problem.x). Its value equals this rank's sum of ||V||^2 / (rows D).
  torch::Tensor loss;
  double value = 0;  // the global loss (all ranks), for logging
  FieldResult field;
};

LossResult drift_loss(const Problem& problem, const FieldOptions& options, Reducer* reducer = nullptr);

// Bytes of the dense path's distance matrix for this problem (what the auto choice compares).
int64_t dense_matrix_bytes(const Problem& problem);

}  // namespace driftlab::drift
