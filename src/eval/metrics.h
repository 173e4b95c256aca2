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

// --- Two-sample permutation tests -------------------------------------------------------------
// Whether two sets come from one distribution, told apart from sampling noise. The statistic is
// the U-statistic (unbiased: zero in expectation when both sets share a distribution); its null
// distribution comes from re-splitting the pooled rows at random into sets of the same sizes.

// Rows of a pool of `total` rows that form a random subset of `count` rows: draw `r` of `seed`
// (a partial Fisher-Yates shuffle keyed by (seed, r), in the order drawn). The permutation test's
// r-th re-split puts these rows in the first set; the real-data resamples take their reference
// and query rows from the same kind of draw.
std::vector<int64_t> random_subset(int64_t total, int64_t count, uint64_t seed, uint64_t r);

struct PermutationTest {
  double value = 0;       // the U-statistic between the two sets
  double null_mean = 0;   // mean and sample standard deviation of the U-statistic over the re-splits
  double null_sd = 0;
  double z = 0;           // (value - null_mean) / null_sd
  double p_value = 1;     // (1 + #{re-splits scoring >= value}) / (1 + re-splits)
  double v_value = 0;     // the V-statistic of the same two sets (self pairs included)
  double v_expected = 0;  // E[V-statistic] for two sets of these sizes drawn from y's distribution,
                          // (1/n + 1/m) E|Y-Y'| or (1/n + 1/m)(1 - E k(Y, Y')), from y's pairs
  std::vector<double> null;  // the U-statistic of re-split r = 0..permutations-1
};
struct TwoSampleTests {
  PermutationTest energy;
  std::vector<PermutationTest> mmd;  // one per bandwidth, in the order given
};
// Energy distance and Gaussian-kernel MMD^2 (one per bandwidth) between x (n rows) and y (m rows)
// with `permutations` re-splits of the pooled n + m rows: re-split r takes random_subset(n + m, n,
// seed, r) as its first set. One pass over the pooled pairs serves every statistic and every
// re-split: each block of pair values multiplies the membership matrix of all splits at once, so
// the cost is that of the distance matrix plus a matrix product with (permutations + 1) columns.
TwoSampleTests permutation_tests(const torch::Tensor& x, const torch::Tensor& y, const std::vector<double>& bandwidths,
                                 int permutations, uint64_t seed);

// --- Real-data spread --------------------------------------------------------------------------
struct Spread {
  double mean = 0, sd = 0;  // sample standard deviation (n - 1); 0 for a single draw
  std::vector<double> draws;
};
Spread spread_of(std::vector<double> draws);

// Kernel distance (KID as in clean-fid and torch-fidelity): the unbiased MMD^2 with the cubic
// polynomial kernel k(a, b) = (a.b / D + 1)^3 between random subsets of `subset_size` rows of x
// and of y (each drawn without replacement), over `subsets` subsets: mean and standard deviation.
Spread kernel_distance(const torch::Tensor& x, const torch::Tensor& y, int subsets, int64_t subset_size, uint64_t seed);

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
