// drift_eval compare: every sample-quality metric of a generated set against held-out real data,
// each next to what real data scores. Energy distance and MMD^2 (unbiased U-statistics) come with a
// permutation test (p-value, null mean and sd, z); every other metric (k-NN precision and recall,
// mode coverage and weights, classifier Frechet distance, KID, class accuracy) comes with the value
// of a held-out real set of the same size against the same reference half, and the sd of the
// difference between two such sets over re-splits of the generated and real rows. The tool parses its flags into a CompareConfig (drift_eval_main.cpp);
// nothing here reads flags.
//
//   eval::CompareConfig c;
//   c.generated = "runs/mnist/samples";
//   c.reference = "data/mnist_test";
//   eval::validate(c);            // UserError naming the flag
//   eval::compare(c);             // prints the table; optional JSON and picture
//
// Not here: the metrics themselves (metrics.h), the classifier (classifier.h), reading the sample
// formats (data/sample_files.h).
#pragma once

#include <cstdint>
#include <string>

namespace driftlab::eval {

struct CompareConfig {
  std::string generated;     // generated samples: shard set, PNG folder, .npz or a folder with samples.npz
  std::string reference;     // real data to compare with (ideally held out), same formats
  int64_t max_samples = 5000;  // at most this many samples per set (pairwise metrics are quadratic); >= 10
  std::string classifier;    // images: classifier file for the Frechet distance and class accuracy; empty: none
  int permutations = 200;    // re-splits of the permutation tests (energy distance, MMD^2); 0: no test; <= 100000
  int resamples = 10;        // re-splits of the generated + real query rows giving the noise of every other
                             // metric's gap to real data; 0 or >= 2
  int kid_subsets = 100;     // images with a classifier: KID's subsets (clean-fid's default)
  int64_t kid_subset_size = 1000;  // rows per KID subset (at most the samples used)
  int knn_k = 3;             // k of the k-NN precision and recall; >= 1
  double mode_radius = 0;    // radius around each mode for mode coverage; 0: 3 x the RMS class spread
  std::string json;          // also write the results as JSON here; empty: no
  std::string png;           // also draw generated vs reference samples here; empty: no
  int threads = 0;           // LibTorch intra-op threads, set by the tool before the work; 0: all cores
};

// UserError naming the flag (--generated, --max_samples, ...) and the bad value.
void validate(const CompareConfig& config);

// Reads both sets (only the rows used), prints the table of metrics and floors, writes the JSON and
// the picture when asked. Validates `config` first. Returns the exit code (0).
int compare(const CompareConfig& config);

}  // namespace driftlab::eval
