// Sample-quality metrics between a generated set and a reference set of vectors ([n, D] float
// tensors; images are flattened or passed as classifier features). Pure tensor code, float64
// accumulation, memory bounded by blocking the pairwise distances.
#pragma once

#include <cstdint>
#include <vector>

#include <torch/types.h>

namespace driftlab::eval {

// Which estimator of a two-sample statistic: kUnbiased (U-statistic: within-set terms exclude
// self pairs; zero in expectation for one distribution, so it can come out negative) or kV
// (V-statistic: self pairs included; never negative, its expectation for one distribution is a
// small positive bias that shrinks as 1/n, so comparing it with the same statistic between two
// real sets of the same size gives a meaningful ratio).
enum class Estimator { kUnbiased, kV };

// Energy distance 2 E|X-Y| - E|X-X'| - E|Y-Y'|; grows with the mismatch of the two distributions.
double energy_distance(const torch::Tensor& x, const torch::Tensor& y, Estimator e = Estimator::kUnbiased);

// Squared MMD with a Gaussian kernel exp(-|a-b|^2 / (2 h^2)) for bandwidth h.
double mmd2(const torch::Tensor& x, const torch::Tensor& y, double bandwidth, Estimator e = Estimator::kUnbiased);

// Median of pairwise distances of the pooled sets (on at most 2000 points): the usual bandwidth scale.
double median_pairwise_distance(const torch::Tensor& x, const torch::Tensor& y);

struct ModeCoverage {
  std::vector<double> share;  // fraction of samples assigned to each mode
  double off_mode = 0;        // fraction farther than `radius` from every mode
  int missed = 0;             // modes holding less than `min_share_of_uniform` x 1/M of the samples
};
// Assigns each sample to its nearest mode centre if within `radius`.
ModeCoverage mode_coverage(const torch::Tensor& samples, const torch::Tensor& centers, double radius,
                           double min_share_of_uniform = 0.1);

// Mode weights by nearest neighbour: each sample takes the label of its nearest reference sample
// (any mode shape: rings and arms too, not only blobs around a centre).
struct ModeWeights {
  std::vector<double> share;       // fraction of the samples assigned to each mode
  std::vector<double> data_share;  // fraction of the reference in each mode
  double max_gap = 0;              // max over modes of |share - data_share|
  int missed = 0;                  // modes whose share is below `min_fraction_of_data` x data_share
};
ModeWeights mode_weights(const torch::Tensor& samples, const torch::Tensor& reference,
                         const torch::Tensor& reference_labels, int64_t num_modes, double min_fraction_of_data = 0.1);

struct PrecisionRecall {
  double precision = 0, recall = 0;
};
// k-NN precision and recall (Kynkaanniemi et al. 2019): a sample is "inside" a set when it lies
// within the k-th-neighbour radius of some point of that set.
PrecisionRecall knn_precision_recall(const torch::Tensor& generated, const torch::Tensor& real, int k = 3);

// Frechet distance between Gaussians fitted to two feature sets:
// |mu1 - mu2|^2 + Tr(S1 + S2 - 2 (S1^1/2 S2 S1^1/2)^1/2).
double frechet_distance(const torch::Tensor& x, const torch::Tensor& y);

}  // namespace driftlab::eval
