// drift_eval: how good are generated samples, and is a difference from real data more than noise?
// Two-sample statistics come with a permutation test, every other metric with real data's spread.
// This file only turns the flags into the typed configs; the work is eval/compare.h (compare) and
// eval/classifier.h (train-classifier).
#include <gflags/gflags.h>
#include <torch/torch.h>

#include <thread>

#include "common/check.h"       // DL_REQUIRE, UserError
#include "common/tool_main.h"   // run_tool, tool_args
#include "eval/classifier.h"    // ClassifierTrainConfig, train_and_save_classifier
#include "eval/compare.h"       // CompareConfig, compare
#include "eval/nearest.h"       // NearestConfig, nearest

DEFINE_string(generated, "", "compare, nearest: the generated samples, in any format drift_sample writes: a shard data set, a folder "
              "of PNG files (one subfolder per class), an .npz file (arr_0, optional labels) or a folder holding samples.npz");
DEFINE_string(reference, "", "compare: the real data to compare with (ideally held out: a test split), in any of the "
              "formats --generated accepts; nearest: held-out real images, the baseline of the copy statistic (optional)");
DEFINE_int64(max_samples, 5000, "compare: at most this many samples per set (pairwise metrics are quadratic); nearest: "
             "generated and held-out images scored (default there: 1000 when this flag is left at 5000)");
DEFINE_string(classifier, "", "compare (images): a classifier file from train-classifier, for the Frechet distance of its "
              "features and the class accuracy of conditional samples");
DEFINE_int32(permutations, 200, "compare: random re-splits of the pooled generated + reference rows for the permutation "
             "tests of the energy distance and MMD^2 (p-value, null mean and sd, z; 0: no test). 200 at 10,000 x 10,000 "
             "points take about a minute on 2 cores");
DEFINE_int32(resamples, 10, "compare: every metric without a permutation test (precision, recall, modes, Frechet "
             "distance, KID, class accuracy) is also computed for held-out real rows as many as the generated ones, against "
             "the same reference half; its noise is the sd of the difference between two such sets over this many re-splits "
             "of the generated + real rows (0: none, else >= 2)");
DEFINE_int32(kid_subsets, 100, "compare (images with --classifier): subsets averaged by the kernel distance (KID)");
DEFINE_int64(kid_subset_size, 1000, "compare (images with --classifier): rows per KID subset (at most the samples used)");
DEFINE_int32(knn_k, 3, "compare: k of the k-NN precision and recall");
DEFINE_double(mode_radius, 0, "compare: radius around each mode for mode coverage (0: 3 x the RMS spread of the "
              "reference's classes); modes are the class means of a labelled reference");
DEFINE_string(json, "", "compare: also write the results as JSON to this file");
DEFINE_string(png, "", "compare: also draw generated vs reference samples to this PNG; nearest: the panel of samples, "
              "each row followed by the row of their nearest training images");
DEFINE_string(train, "", "nearest: the training set the generator learned from (any format --generated accepts)");
DEFINE_string(grid_png, "", "nearest: a grid of the samples, one row per class (unlabelled: the first ones)");
DEFINE_int32(per_class, 10, "nearest: samples per class in --grid_png");
DEFINE_int32(panel_rows, 2, "nearest: rows of samples in --png (up to 10 per row, one per class), each followed by "
             "their nearest training images");
DEFINE_string(data, "", "train-classifier: the labelled image training set");
DEFINE_string(out, "", "train-classifier: where to write the classifier file");
DEFINE_int64(epochs, 3, "train-classifier: passes over the training set");
DEFINE_int64(batch, 128, "train-classifier: batch size");
DEFINE_double(lr, 2e-3, "train-classifier: Adam learning rate");
DEFINE_string(test_data, "", "train-classifier: a labelled test set to report the classifier's accuracy on");
DEFINE_int32(eval_threads, 0, "intra-op threads (0: all cores)");

namespace {

using namespace driftlab;

// The only code of drift_eval that reads its flags: one typed config per subcommand.
eval::CompareConfig compare_config_from_flags() {
  eval::CompareConfig c;
  c.generated = FLAGS_generated;
  c.reference = FLAGS_reference;
  c.max_samples = FLAGS_max_samples;
  c.classifier = FLAGS_classifier;
  c.permutations = FLAGS_permutations;
  c.resamples = FLAGS_resamples;
  c.kid_subsets = FLAGS_kid_subsets;
  c.kid_subset_size = FLAGS_kid_subset_size;
  c.knn_k = FLAGS_knn_k;
  c.mode_radius = FLAGS_mode_radius;
  c.json = FLAGS_json;
  c.png = FLAGS_png;
  c.threads = FLAGS_eval_threads;
  return c;
}

eval::NearestConfig nearest_config_from_flags() {
  eval::NearestConfig c;
  c.generated = FLAGS_generated;
  c.train = FLAGS_train;
  c.reference = FLAGS_reference;
  c.png = FLAGS_png;
  c.grid_png = FLAGS_grid_png;
  c.per_class = FLAGS_per_class;
  c.panel_rows = FLAGS_panel_rows;
  c.max_samples = gflags::GetCommandLineFlagInfoOrDie("max_samples").is_default ? 1000 : FLAGS_max_samples;
  c.threads = FLAGS_eval_threads;
  return c;
}

eval::ClassifierTrainConfig classifier_train_config_from_flags() {
  eval::ClassifierTrainConfig c;
  c.data = FLAGS_data;
  c.out = FLAGS_out;
  c.test_data = FLAGS_test_data;
  c.training.epochs = FLAGS_epochs;
  c.training.batch = FLAGS_batch;
  c.training.lr = FLAGS_lr;
  c.threads = FLAGS_eval_threads;
  return c;
}

void set_threads(int threads) {
  torch::set_num_threads(threads > 0 ? threads : static_cast<int>(std::thread::hardware_concurrency()));
}

}  // namespace

int main(int argc, char** argv) {
  return driftlab::run_tool(argc, argv,
      "drift_eval: sample-quality metrics next to what real data scores: permutation tests (p, z) for the energy\n"
      "distance and MMD^2; precision, recall, modes, Frechet, KID next to a held-out real set and the noise of the gap.\n"
      "Usage:\n"
      "  drift_eval compare --generated=DIR --reference=DIR [--classifier=FILE] [--json=F] [--png=F]\n"
      "  drift_eval nearest --generated=DIR --train=TRAIN_DIR [--reference=TEST_DIR] [--grid_png=F] [--png=F]\n"
      "  drift_eval train-classifier --data=TRAIN_DIR --out=FILE [--test_data=TEST_DIR]\n",
      [] {
        const auto& a = tool_args();
        DL_REQUIRE(a.size() == 1, "expected one subcommand: compare, nearest or train-classifier; see --help");
        if (a[0] == "compare") {
          const auto config = compare_config_from_flags();
          set_threads(config.threads);
          return eval::compare(config);
        }
        if (a[0] == "nearest") {
          const auto config = nearest_config_from_flags();
          set_threads(config.threads);
          return eval::nearest(config);
        }
        if (a[0] == "train-classifier") {
          const auto config = classifier_train_config_from_flags();
          set_threads(config.threads);
          return eval::train_and_save_classifier(config);
        }
        throw UserError("unknown subcommand '" + a[0] + "' (expected compare, nearest or train-classifier)");
      });
}
