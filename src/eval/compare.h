// drift_eval compare: every sample-quality metric of a generated set against real data, each next
// to its floor (the same metric between two disjoint halves of the reference: what a perfect
// generator would score). The tool parses its flags into a CompareConfig (drift_eval_main.cpp);
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
