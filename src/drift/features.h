// Feature keys and the total loss (docs/DRIFTING.md sections 3 and 4): turn encoder feature maps
// and raw generator outputs, grouped by class, into drift problem sets, and sum their losses.
//
// Layout convention (class-major): rows [k*m, (k+1)*m) of a batch belong to class k. With K
// classes, this rank's generated batch has K*n rows, the gathered generated batch K*N rows (in
// a single process gen_all is gen itself), positives K*P rows, unconditional negatives K*U rows.
// Each key of each class is its own problem; the unconditional rows follow the generated ones in
// the negatives with the CFG weight of their class. Not here: choosing classes, alpha, data.
#pragma once

#include <string>
#include <vector>

#include <torch/types.h>

#include "drift/field.h"

namespace driftlab::drift {

struct GroupedFeatures {
  torch::Tensor gen;         // [K*n, ...] this rank's generated features (gradients flow here)
  torch::Tensor gen_all;     // [K*N, ...] generated features of all ranks; undefined: gen (one process)
  int64_t self_offset = 0;   // where this rank's n rows start inside each class's N rows
  torch::Tensor pos;         // [K*P, ...] positives (real samples of each class)
  torch::Tensor unc;         // [K*U, ...] unconditional negatives (optional)
  torch::Tensor unc_weight;  // [K] weight of class k's unconditional negatives; undefined: 1
  int64_t classes = 1;       // K
};

struct FeatureKey {
  std::string name;
  Problem problem;
  int64_t generated_negatives = 0;  // the first this many negatives of each problem are generated rows (all ranks)
};

struct KeyOptions {
  bool per_location = true;  // C-dim vector at every location: H*W problems per class
  bool global_stats = true;  // mean and std over all locations
  bool patch2 = true;        // mean and std over 2x2 patches (each patch position a problem)
  bool patch4 = true;        // mean and std over 4x4 patches (skipped when H or W < 4)
  double std_eps = 1e-6;     // std = sqrt(var + std_eps): finite gradient at zero variance
};

// Keys of one encoder feature map [B, C, H, W]: "<prefix>.loc", ".mean", ".std", ".mean2x2",
// ".std2x2", ".mean4x4", ".std4x4" (as enabled).
std::vector<FeatureKey> feature_map_keys(const GroupedFeatures& f, const std::string& prefix,
                                         const KeyOptions& options = KeyOptions{});

// Keys of the raw generator output [B, ...]: "<prefix>.flat" (the flattened sample) and, for
// [B, C, H, W], "<prefix>.rms" (per-channel sqrt(mean(x^2) + 1e-6)).
std::vector<FeatureKey> output_keys(const GroupedFeatures& f, const std::string& prefix);

// Vectors [B, D] (toy data, identity encoder): one key "<prefix>".
FeatureKey vector_key(const GroupedFeatures& f, const std::string& prefix);

struct KeyLoss {
  std::string name;
  double value = 0;  // global loss of this key
  // Diversity: mean over the key's problems of (RMS distance of the generated rows to their mean) /
  // (the same for the positives), i.e. sqrt(mean pairwise squared distance) of generated over real.
  // 1 when the generated rows are as spread as the real ones; near 0 when they collapse. NaN when
  // no problem has spread positives (a single positive) or the key has no generated negatives.
  double spread = 0;
  FieldResult field;
};

struct TotalLoss {
  torch::Tensor loss;  // sum over keys of this rank's share (differentiable)
  double value = 0;    // global total, for logging
  std::vector<KeyLoss> keys;
};

// Sum over keys of the key's loss (each the mean over its problems); keys must come in the same
// order on every rank.
TotalLoss total_loss(const std::vector<FeatureKey>& keys, const FieldOptions& options,
                     Reducer* reducer = nullptr);

// Per problem of `key`: sqrt(var_gen / var_pos), where var is the mean squared distance of a set's
// rows to their mean (generated rows: the first key.generated_negatives negatives). [G], NaN where
// the positives have no spread. No communication: every rank holds all generated rows.
torch::Tensor spread_ratio(const FeatureKey& key);

// CFG weight of the unconditional negatives: (alpha - 1) * (n_neg - 1) / n_unc, where n_neg is
// the number of generated negatives of the class (all ranks). alpha >= 1.
double cfg_unconditional_weight(double alpha, int64_t n_neg, int64_t n_unc);
torch::Tensor cfg_unconditional_weight(const torch::Tensor& alpha, int64_t n_neg, int64_t n_unc);

}  // namespace driftlab::drift
