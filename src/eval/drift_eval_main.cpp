// drift_eval: how good are generated samples? Every metric is printed next to its floor: the
// same metric between two disjoint halves of real data (what a perfect generator would score).
#include <gflags/gflags.h>
#include <glog/logging.h>
#include <torch/torch.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <iomanip>
#include <sstream>
#include <thread>

#include "common/check.h"
#include "common/image.h"
#include "common/rng.h"
#include "common/tool_main.h"
#include "data/reader.h"
#include "data/sample_files.h"
#include "eval/classifier.h"
#include "eval/metrics.h"

DEFINE_string(generated, "", "compare: the generated samples, in any format drift_sample writes: a shard data set, a folder "
              "of PNG files (one subfolder per class), an .npz file (arr_0, optional labels) or a folder holding samples.npz");
DEFINE_string(reference, "", "compare: the real data to compare with (ideally held out: a test split), in any of the "
              "formats --generated accepts");
DEFINE_int64(max_samples, 5000, "compare: at most this many samples per set (pairwise metrics are quadratic)");
DEFINE_string(classifier, "", "compare (images): a classifier file from train-classifier, for the Frechet distance of its "
              "features and the class accuracy of conditional samples");
DEFINE_int32(knn_k, 3, "compare: k of the k-NN precision and recall");
DEFINE_double(mode_radius, 0, "compare: radius around each mode for mode coverage (0: 3 x the RMS spread of the "
              "reference's classes); modes are the class means of a labelled reference");
DEFINE_string(json, "", "compare: also write the results as JSON to this file");
DEFINE_string(png, "", "compare: also draw generated vs reference samples to this PNG");
DEFINE_string(data, "", "train-classifier: the labelled image training set");
DEFINE_string(out, "", "train-classifier: where to write the classifier file");
DEFINE_int64(epochs, 3, "train-classifier: passes over the training set");
DEFINE_int64(batch, 128, "train-classifier: batch size");
DEFINE_double(lr, 2e-3, "train-classifier: Adam learning rate");
DEFINE_string(test_data, "", "train-classifier: a labelled test set to report the classifier's accuracy on");
DEFINE_int32(eval_threads, 0, "intra-op threads (0: all cores)");

namespace driftlab::eval {
namespace {

struct Row {
  std::string metric;
  double value, floor;
  std::string note;
};

// The first min(n, size) rows of a deterministic permutation of the data set, decoded.
// Only those rows are read (from any format: shard set, PNG folder, .npz), so the set is never loaded whole.
std::pair<torch::Tensor, torch::Tensor> subsample(const data::SampleSet& s, int64_t begin, int64_t count, uint64_t salt) {
  std::vector<int64_t> order(s.size());
  for (int64_t i = 0; i < s.size(); ++i) order[i] = i;
  rng::Draw d(rng::Key{salt, rng::Stream::kTest, 0, 0});
  for (int64_t i = s.size() - 1; i > 0; --i) std::swap(order[i], order[d.below(i + 1)]);
  std::vector<int64_t> idx(order.begin() + begin, order.begin() + begin + count);
  return s.read(idx);
}

std::string json_escape(const std::string& s) {
  std::string o;
  for (char c : s) o += (c == '"' || c == '\\') ? std::string("\\") + c : std::string(1, c);
  return o;
}

int compare() {
  DL_REQUIRE(!FLAGS_generated.empty() && !FLAGS_reference.empty(), "compare needs --generated and --reference data sets");
  DL_REQUIRE(FLAGS_max_samples >= 10, "--max_samples must be >= 10, got " << FLAGS_max_samples);
  auto ref = data::open_sample_set(FLAGS_reference);
  auto gen = data::open_sample_set(FLAGS_generated, &ref->spec());
  DL_REQUIRE(gen->spec().decoded_shape() == ref->spec().decoded_shape(),
             "--generated holds " << gen->spec().describe() << " but --reference holds " << ref->spec().describe());
  const int64_t half = std::min(ref->size() / 2, FLAGS_max_samples);
  const int64_t gn = std::min(gen->size(), half);
  DL_REQUIRE(half >= 10 && gn >= 10, "compare needs at least 20 reference and 10 generated samples");
  auto [a, a_lab] = subsample(*ref, 0, half, 1);
  auto [b, b_lab] = subsample(*ref, half, half, 1);
  auto [g, g_lab] = subsample(*gen, 0, gn, 2);
  if (gn < half) {  // floor on the same sample size as the generated set
    b = b.slice(0, 0, gn);
    b_lab = b_lab.slice(0, 0, gn);
  }
  const bool images = gen->spec().decoded_shape().size() == 3;
  std::vector<Row> rows;
  std::string mode_share_text;  // per mode: generated % / data %
  auto flat = [](const torch::Tensor& t) { return t.reshape({t.size(0), -1}); };
  const auto V = Estimator::kV;
  rows.push_back({"energy distance", energy_distance(flat(g), flat(a), V), energy_distance(flat(b), flat(a), V),
                  images ? "V-statistic, pixels" : "V-statistic"});
  const double med = median_pairwise_distance(flat(a), flat(b));
  for (double f : {0.5, 1.0, 2.0}) {
    std::ostringstream name;
    name << "MMD^2 (h = " << f << " x median " << std::setprecision(3) << med << ")";
    rows.push_back({name.str(), mmd2(flat(g), flat(a), f * med, V), mmd2(flat(b), flat(a), f * med, V),
                    images ? "V-statistic, pixels" : "V-statistic"});
  }
  auto pr_g = knn_precision_recall(flat(g), flat(a), FLAGS_knn_k), pr_b = knn_precision_recall(flat(b), flat(a), FLAGS_knn_k);
  rows.push_back({"precision (k-NN)", pr_g.precision, pr_b.precision, "higher is better"});
  rows.push_back({"recall (k-NN)", pr_g.recall, pr_b.recall, "higher is better"});
  if (!images && ref->labelled()) {
    const int64_t k = ref->spec().num_classes;
    std::vector<torch::Tensor> centers;
    double spread = 0;
    for (int64_t c = 0; c < k; ++c) {
      auto pts = flat(a).index({a_lab == c});
      if (pts.size(0) == 0) continue;
      auto mu = pts.mean(0);
      centers.push_back(mu);
      spread += (pts - mu).square().sum(1).mean().item<double>() / k;
    }
    const double radius = FLAGS_mode_radius > 0 ? FLAGS_mode_radius : 3 * std::sqrt(spread);
    auto cs = torch::stack(centers);
    auto mc_g = mode_coverage(flat(g), cs, radius), mc_b = mode_coverage(flat(b), cs, radius);
    rows.push_back({"modes missed (of " + std::to_string(cs.size(0)) + ")", static_cast<double>(mc_g.missed),
                    static_cast<double>(mc_b.missed), "mode = class mean, radius " + std::to_string(radius).substr(0, 5)});
    rows.push_back({"share off every mode", mc_g.off_mode, mc_b.off_mode, ""});
    // Mode weights: each sample takes the mode of its nearest labelled reference sample.
    auto mw_g = mode_weights(flat(g), flat(a), a_lab, k), mw_b = mode_weights(flat(b), flat(a), a_lab, k);
    rows.push_back({"modes missed (nearest sample)", static_cast<double>(mw_g.missed), static_cast<double>(mw_b.missed),
                    "share < 0.1 x the mode's data share"});
    rows.push_back({"largest mode-weight gap (points)", 100 * mw_g.max_gap, 100 * mw_b.max_gap,
                    "max over modes |share - data share|"});
    std::string shares;
    for (int64_t c = 0; c < k; ++c) {
      std::ostringstream one;
      one << std::fixed << std::setprecision(1) << (c ? " " : "") << 100 * mw_g.share[c] << "/" << 100 * mw_g.data_share[c];
      shares += one.str();
    }
    mode_share_text = shares;
  }
  if (images && !FLAGS_classifier.empty()) {
    auto clf = load_classifier(FLAGS_classifier);
    auto fa = classifier_features(clf, a), fb = classifier_features(clf, b), fg = classifier_features(clf, g);
    rows.push_back({"classifier Frechet distance", frechet_distance(fg, fa), frechet_distance(fb, fa),
                    "project classifier features, not Inception FID"});
    if (gen->labelled() && ref->labelled())
      rows.push_back({"classified as asked class", classifier_accuracy(clf, g, g_lab), classifier_accuracy(clf, b, b_lab),
                      "floor = classifier accuracy on real data"});
  }
  std::printf("generated: %s (%s, %lld samples, %lld used)\nreference: %s (%lld samples, halves of %lld)\n\n",
              gen->path().c_str(), gen->format().c_str(), static_cast<long long>(gen->size()), static_cast<long long>(gn), ref->path().c_str(),
              static_cast<long long>(ref->size()), static_cast<long long>(half));
  std::printf("%-36s %14s %14s %9s  %s\n", "metric", "generated", "floor (real)", "ratio", "note");
  for (const auto& r : rows)
    std::printf("%-36s %14.6g %14.6g %9.3g  %s\n", r.metric.c_str(), r.value, r.floor,
                std::fabs(r.floor) > 0 ? r.value / r.floor : NAN, r.note.c_str());
  if (!mode_share_text.empty()) std::printf("\nmode shares, generated %% / data %%: %s\n", mode_share_text.c_str());
  std::printf("\nEnergy distance and MMD^2 are V-statistics (never negative): two sets drawn from one distribution\n"
              "score about the floor, so a ratio near 1 means the metric cannot tell the generated set from real\n"
              "data at this sample size.\n");
  if (!FLAGS_json.empty()) {
    std::ofstream f(FLAGS_json);
    DL_REQUIRE(f, "cannot write --json file '" << FLAGS_json << "'");
    f << "{\"generated\": \"" << json_escape(gen->path()) << "\", \"reference\": \"" << json_escape(ref->path())
      << "\", \"samples\": " << gn << ", \"metrics\": [";
    for (size_t i = 0; i < rows.size(); ++i)
      f << (i ? ", " : "") << "{\"metric\": \"" << json_escape(rows[i].metric) << "\", \"value\": " << std::setprecision(9)
        << rows[i].value << ", \"floor\": " << rows[i].floor << "}";
    f << "]}\n";
  }
  if (!FLAGS_png.empty()) {
    if (images) {
      const int64_t n = std::min<int64_t>(32, std::min(g.size(0), b.size(0)));
      write_png(FLAGS_png, image_grid(torch::cat({g.slice(0, 0, n), b.slice(0, 0, n)}), 8));
    } else if (g.size(1) == 2) {
      const auto bounds = Canvas::fit_bounds({g, a});
      Canvas c(640, 640, bounds[0], bounds[1], bounds[2], bounds[3]);
      c.points(a, {150, 150, 150}, 1, 0.35f);
      c.points(g, {30, 90, 200}, 1, 0.6f);
      write_png(FLAGS_png, c.image());
    }
  }
  return 0;
}

int train() {
  DL_REQUIRE(!FLAGS_data.empty() && !FLAGS_out.empty(), "train-classifier needs --data (labelled images) and --out");
  DL_REQUIRE(FLAGS_epochs >= 1 && FLAGS_batch >= 1, "--epochs and --batch must be >= 1");
  auto train = data::ShardSet::open(FLAGS_data);
  ClassifierTraining o;
  o.epochs = FLAGS_epochs;
  o.batch = FLAGS_batch;
  o.lr = FLAGS_lr;
  auto clf = train_classifier(*train, o);
  save_classifier(clf, FLAGS_out);
  std::printf("classifier written to %s\n", FLAGS_out.c_str());
  if (!FLAGS_test_data.empty()) {
    auto test = data::ShardSet::open(FLAGS_test_data);
    std::vector<int64_t> idx(test->size());
    for (int64_t i = 0; i < test->size(); ++i) idx[i] = i;
    std::printf("test accuracy on %s: %.4f\n", test->path().c_str(),
                classifier_accuracy(clf, test->read(idx), test->labels_of(idx)));
  }
  return 0;
}

}  // namespace
}  // namespace driftlab::eval

int main(int argc, char** argv) {
  return driftlab::run_tool(argc, argv,
      "drift_eval: sample-quality metrics, each next to its floor (the metric between two halves of real data).\n"
      "Usage:\n"
      "  drift_eval compare --generated=DIR --reference=DIR [--classifier=FILE] [--json=F] [--png=F]\n"
      "  drift_eval train-classifier --data=TRAIN_DIR --out=FILE [--test_data=TEST_DIR]\n",
      [] {
        using namespace driftlab;
        if (FLAGS_eval_threads > 0) torch::set_num_threads(FLAGS_eval_threads);
        else torch::set_num_threads(static_cast<int>(std::thread::hardware_concurrency()));
        const auto& a = tool_args();
        DL_REQUIRE(a.size() == 1, "expected one subcommand: compare or train-classifier; see --help");
        if (a[0] == "compare") return eval::compare();
        if (a[0] == "train-classifier") return eval::train();
        throw UserError("unknown subcommand '" + a[0] + "' (expected compare or train-classifier)");
      });
}
