// drift_eval compare (see compare.h).
#include "eval/compare.h"

#include <torch/torch.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <iomanip>
#include <sstream>
#include <utility>
#include <vector>

#include "common/check.h"         // DL_REQUIRE
#include "common/image.h"         // write_png, image_grid for --png
#include "common/rng.h"           // the subsampling permutation
#include "data/picture.h"         // the 2-D scatter of --png
#include "data/sample_files.h"    // open_sample_set: shard sets, PNG folders, .npz
#include "eval/classifier.h"      // load_classifier, classifier_features, classifier_accuracy
#include "eval/metrics.h"         // the metrics

namespace driftlab::eval {
namespace {

// Seeds of the evaluation's random draws (rng::Stream::kEval): fixed, so a table is reproducible.
constexpr uint64_t kPermutationSeed = 1, kFeaturePermutationSeed = 2, kResampleSeed = 3, kKidSeed = 4;
// MMD^2 bandwidths, as multiples of the median pairwise distance.
constexpr double kBandwidthFactors[] = {0.5, 1.0, 2.0};
// p below this: the generated set is told apart from real data; a real-data gap beyond this many sd is flagged.
constexpr double kDistinguishableP = 0.01, kGapSd = 3.0;

// One line of the table. What "real data" means depends on the kind:
// kTest: a permutation test (null = the U-statistic over random re-splits of generated + reference);
// kResampled: the same metric for a held-out real set against the same reference half, with the
// sd of the gap between two real sets over re-splits of the generated + real rows;
// kExpected: the V-statistic kept for older figures, next to its expectation for two real sets.
enum class Kind { kTest, kResampled, kExpected };
struct Row {
  Row(std::string m, Kind k, double v) : metric(std::move(m)), kind(k), value(v) {}
  std::string metric;
  Kind kind;
  double value;
  double null_mean = NAN, null_sd = NAN, p_value = NAN, z = NAN;
  double expected = NAN;  // kExpected
  double sd = NAN;        // KID: standard deviation over subsets
  std::string note;
};

Row test_row(const std::string& metric, const PermutationTest& t, int permutations, const std::string& note) {
  Row r{metric, Kind::kTest, t.value};
  if (permutations > 0) r.null_mean = t.null_mean, r.null_sd = t.null_sd, r.p_value = t.p_value, r.z = t.z;
  r.note = note;
  return r;
}

// A metric of a query set against a reference set, as computed for the generated set and for
// every real-data resample.
struct Value {
  std::string metric;
  double value;
  std::string note;
  double sd = NAN;  // KID only
};

// One side of a comparison: rows, their labels (may be empty) and classifier features (may be undefined).
struct SetView {
  torch::Tensor x, labels, features;
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

std::string fmt(double v, int precision = 4) {
  if (std::isnan(v)) return "-";
  std::ostringstream o;
  o << std::setprecision(precision) << v;
  return o.str();
}

torch::Tensor flat(const torch::Tensor& t) { return t.reshape({t.size(0), -1}); }

SetView rows_of(const SetView& s, const std::vector<int64_t>& idx) {  // labels: empty when s has none
  auto i = torch::tensor(idx, torch::kLong);
  SetView out{s.x.index_select(0, i), s.labels.numel() ? s.labels.index_select(0, i) : s.labels, {}};
  if (s.features.defined()) out.features = s.features.index_select(0, i);
  return out;
}

// Everything drift_eval compares that is not a two-sample test: the same list, in the same order,
// for the generated set and for each real-data resample. `mode_text` (generated only) receives
// the per-mode shares.
struct SupportContext {
  const CompareConfig& config;
  int64_t modes;  // > 0: a labelled 2-D reference, whose labels are the modes
  bool accuracy;   // labelled samples and reference: the share classified as their label
  Classifier* clf;  // null: no classifier
  int64_t kid_subset;
};
std::vector<Value> support_metrics(const SetView& q, const SetView& ref, const SupportContext& c, std::string* mode_text) {
  std::vector<Value> out;
  auto pr = knn_precision_recall(flat(q.x), flat(ref.x), c.config.knn_k);
  out.push_back({"precision (k-NN)", pr.precision, "share of samples inside the real data's support; higher is better"});
  out.push_back({"recall (k-NN)", pr.recall, "share of real data inside the samples' support; higher is better"});
  if (c.modes > 0) {
    const int64_t k = c.modes;
    std::vector<torch::Tensor> centers;
    double spread = 0;
    for (int64_t m = 0; m < k; ++m) {
      auto pts = flat(ref.x).index({ref.labels == m});
      if (pts.size(0) == 0) continue;
      auto mu = pts.mean(0);
      centers.push_back(mu);
      spread += (pts - mu).square().sum(1).mean().item<double>() / k;
    }
    const double radius = c.config.mode_radius > 0 ? c.config.mode_radius : 3 * std::sqrt(spread);
    auto cs = torch::stack(centers);
    auto mc = mode_coverage(flat(q.x), cs, radius);
    out.push_back({"modes missed (of " + std::to_string(cs.size(0)) + ")", static_cast<double>(mc.missed),
                   "mode = class mean, radius " + fmt(radius, 3)});
    out.push_back({"share off every mode", mc.off_mode, "farther than the radius from every mode"});
    // Mode weights: each sample takes the mode of its nearest labelled reference sample.
    auto mw = mode_weights(flat(q.x), flat(ref.x), ref.labels, k);
    out.push_back({"modes missed (nearest sample)", static_cast<double>(mw.missed), "share < 0.1 x the mode's data share"});
    out.push_back({"largest mode-weight gap (points)", 100 * mw.max_gap, "max over modes |share - data share|"});
    if (mode_text) {
      std::ostringstream shares;
      shares << std::fixed << std::setprecision(1);
      for (int64_t m = 0; m < k; ++m) shares << (m ? " " : "") << 100 * mw.share[m] << "/" << 100 * mw.data_share[m];
      *mode_text = shares.str();
    }
  }
  if (c.clf) {
    out.push_back({"classifier Frechet distance", frechet_distance(q.features, ref.features),
                   "project classifier features, not Inception FID"});
    auto kid = kernel_distance(q.features, ref.features, c.config.kid_subsets, c.kid_subset, kKidSeed);
    out.push_back({"KID (classifier features)", kid.mean,
                   "cubic-kernel MMD^2, mean of " + std::to_string(c.config.kid_subsets) + " subsets of " +
                       std::to_string(c.kid_subset) + " (sd " + fmt(kid.sd, 3) + ")",
                   kid.sd});
    if (c.accuracy)
      out.push_back({"classified as asked class", classifier_accuracy(*c.clf, q.x, q.labels),
                     "real data: the classifier's accuracy"});
  }
  return out;
}

void write_json(const std::string& path, const data::SampleSet& gen, const data::SampleSet& ref, int64_t gn, int64_t half,
                const CompareConfig& config, const std::vector<Row>& rows) {
  std::ofstream f(path);
  DL_REQUIRE(f, "cannot write --json file '" << path << "'");
  f << std::setprecision(9) << "{\"generated\": \"" << json_escape(gen.path()) << "\", \"reference\": \""
    << json_escape(ref.path()) << "\", \"samples\": " << gn << ", \"reference_samples\": " << half
    << ", \"permutations\": " << config.permutations << ", \"resamples\": " << config.resamples << ", \"metrics\": [";
  auto field = [&f](const char* name, double v) {
    if (!std::isnan(v)) f << ", \"" << name << "\": " << v;
  };
  for (size_t i = 0; i < rows.size(); ++i) {
    const Row& r = rows[i];
    const char* kind = r.kind == Kind::kTest ? "permutation test" : r.kind == Kind::kResampled ? "real data" : "V-statistic";
    // "floor": what real data scores (the null mean, or the V-statistic's expectation).
    const double floor = r.kind == Kind::kExpected ? r.expected : r.null_mean;
    f << (i ? ", " : "") << "{\"metric\": \"" << json_escape(r.metric) << "\", \"value\": " << r.value;
    field("floor", floor);
    f << ", \"kind\": \"" << kind << "\"";
    field("null_mean", r.null_mean);
    field("null_sd", r.null_sd);
    field("z", r.z);
    field("p_value", r.p_value);
    field("sd", r.sd);
    f << "}";
  }
  f << "]}\n";
}

}  // namespace

void validate(const CompareConfig& c) {
  DL_REQUIRE(!c.generated.empty() && !c.reference.empty(), "compare needs --generated and --reference data sets");
  DL_REQUIRE(c.max_samples >= 10, "--max_samples must be >= 10, got " << c.max_samples);
  DL_REQUIRE(c.permutations >= 0 && c.permutations <= 100000,
             "--permutations must be in [0, 100000] (0: no permutation test), got " << c.permutations);
  DL_REQUIRE(c.resamples == 0 || (c.resamples >= 2 && c.resamples <= 1000),
             "--resamples must be 0 (none) or in [2, 1000], got " << c.resamples);
  DL_REQUIRE(c.kid_subsets >= 1, "--kid_subsets must be >= 1, got " << c.kid_subsets);
  DL_REQUIRE(c.kid_subset_size >= 2, "--kid_subset_size must be >= 2, got " << c.kid_subset_size);
  DL_REQUIRE(c.knn_k >= 1, "--knn_k must be >= 1, got " << c.knn_k);
  DL_REQUIRE(c.mode_radius >= 0, "--mode_radius must be >= 0 (0: automatic), got " << c.mode_radius);
  DL_REQUIRE(c.threads >= 0, "--eval_threads must be >= 0 (0: all cores), got " << c.threads);
}

int compare(const CompareConfig& config) {
  validate(config);
  auto ref = data::open_sample_set(config.reference);
  auto gen = data::open_sample_set(config.generated);
  DL_REQUIRE(gen->spec().decoded_shape() == ref->spec().decoded_shape(),
             "--generated holds " << gen->spec().describe() << " but --reference holds " << ref->spec().describe());
  const int64_t half = std::min(ref->size() / 2, config.max_samples);
  const int64_t gn = std::min(gen->size(), half);
  DL_REQUIRE(half >= 10 && gn >= 10, "compare needs at least 20 reference and 10 generated samples");
  const bool images = gen->spec().decoded_shape().size() == 3;
  // The reference's first half is what the generated set is compared with; both halves together
  // are the pool the real-data resamples split.
  auto [a, a_lab] = subsample(*ref, 0, half, 1);
  auto [b, b_lab] = subsample(*ref, half, half, 1);
  auto [g, g_lab] = subsample(*gen, 0, gn, 2);
  SetView gs{g, g_lab, {}}, pool{torch::cat({a, b}), b_lab.numel() ? torch::cat({a_lab, b_lab}) : b_lab, {}};
  Classifier clf{nullptr};
  const bool with_clf = images && !config.classifier.empty();
  if (with_clf) {
    clf = load_classifier(config.classifier);
    gs.features = classifier_features(clf, g);
    pool.features = classifier_features(clf, pool.x);
  }
  const SetView as{a, a_lab, with_clf ? pool.features.slice(0, 0, half) : torch::Tensor()};  // the first half
  std::vector<Row> rows;

  // Two-sample tests: generated against the first half, in pixels (or 2-D) and on classifier features.
  std::fprintf(stderr, "two-sample tests: %d permutations of %lld + %lld rows...\n", config.permutations,
               static_cast<long long>(gn), static_cast<long long>(half));
  // `space`: what the rows are (empty for 2-D points), shown in the metric's name.
  auto add_tests = [&](const torch::Tensor& x, const torch::Tensor& y, const std::string& space, uint64_t seed) {
    const double med = median_pairwise_distance(x, y);
    std::vector<double> bandwidths;
    for (double f : kBandwidthFactors) bandwidths.push_back(f * med);
    auto t = permutation_tests(x, y, bandwidths, config.permutations, seed);
    rows.push_back(test_row(space.empty() ? "energy distance" : "energy distance (" + space + ")", t.energy,
                            config.permutations, "U-statistic"));
    for (size_t i = 0; i < bandwidths.size(); ++i)
      rows.push_back(test_row("MMD^2 (" + (space.empty() ? "" : space + ", ") + "h = " + fmt(kBandwidthFactors[i]) +
                                  " x median " + fmt(med, 3) + ")",
                              t.mmd[i], config.permutations, "U-statistic, Gaussian kernel"));
    return t;
  };
  const auto pixel_tests = add_tests(flat(g), flat(a), images ? "pixels" : "", kPermutationSeed);
  if (with_clf) add_tests(gs.features, as.features, "classifier features", kFeaturePermutationSeed);

  // Support, mode and feature metrics, all against the reference's first half `as`: the
  // generated set, and real data = the reference's other half cut to the generated set's size.
  // Their noise: the generated and the real set are pooled and re-split --resamples times into two
  // sets of that size; the sd of the difference of the two sets' scores is what a gap between the
  // generated and the real set is made of when both come from one distribution (the reference
  // half stays fixed, as it does for the generated set).
  const SupportContext ctx{config,
                           !images && ref->labelled() ? ref->spec().num_classes : 0,
                           gen->labelled() && ref->labelled(),
                           with_clf ? &clf : nullptr,
                           std::min<int64_t>({config.kid_subset_size, gn, half})};
  std::string mode_text;
  const auto gen_values = support_metrics(gs, as, ctx, &mode_text);
  // The reference's second half, cut to the generated set's size (pool rows half .. half + gn).
  const SetView bs{b.slice(0, 0, gn), b_lab.numel() ? b_lab.slice(0, 0, gn) : b_lab,
                   with_clf ? pool.features.slice(0, half, half + gn) : torch::Tensor()};
  const auto real_values = support_metrics(bs, as, ctx, nullptr);
  const bool both_labelled = gs.labels.numel() > 0 && bs.labels.numel() > 0;
  const SetView queries{torch::cat({gs.x, bs.x}), both_labelled ? torch::cat({gs.labels, bs.labels}) : torch::Tensor(),
                        with_clf ? torch::cat({gs.features, bs.features}) : torch::Tensor()};
  std::vector<std::vector<double>> diffs(gen_values.size());
  for (int r = 0; r < config.resamples; ++r) {
    std::fprintf(stderr, "real-data re-split %d of %d...\r", r + 1, config.resamples);
    const auto first = random_subset(2 * gn, gn, kResampleSeed, r);
    std::vector<bool> in_first(2 * gn, false);
    for (int64_t i : first) in_first[i] = true;
    std::vector<int64_t> second;
    for (int64_t i = 0; i < 2 * gn; ++i)
      if (!in_first[i]) second.push_back(i);
    const auto v1 = support_metrics(rows_of(queries, first), as, ctx, nullptr);
    const auto v2 = support_metrics(rows_of(queries, second), as, ctx, nullptr);
    for (size_t i = 0; i < v1.size(); ++i) diffs[i].push_back(v1[i].value - v2[i].value);
  }
  if (config.resamples > 0) std::fprintf(stderr, "\n");
  for (size_t i = 0; i < gen_values.size(); ++i) {
    Row r{gen_values[i].metric, Kind::kResampled, gen_values[i].value};
    r.null_mean = real_values[i].value;
    if (config.resamples > 0) {
      // The re-splits' differences have mean 0 by symmetry: their root mean square is the sd.
      double ss = 0;
      for (double d : diffs[i]) ss += d * d;
      r.null_sd = std::sqrt(ss / diffs[i].size());
      if (r.null_sd > 0) r.z = (r.value - r.null_mean) / r.null_sd;
    }
    r.sd = gen_values[i].sd;
    r.note = gen_values[i].note;
    rows.push_back(r);
  }
  Row v{images ? "energy distance (V-statistic, pixels)" : "energy distance (V-statistic)", Kind::kExpected,
        pixel_tests.energy.v_value};
  v.expected = pixel_tests.energy.v_expected;
  v.note = "self pairs included; real data: its expectation";
  rows.push_back(v);

  // The table.
  std::printf("generated: %s (%s, %lld samples, %lld used)\nreference: %s (%lld samples: %lld are the reference half, "
              "%lld others the real set)\n",
              gen->path().c_str(), gen->format().c_str(), static_cast<long long>(gen->size()), static_cast<long long>(gn),
              ref->path().c_str(), static_cast<long long>(ref->size()), static_cast<long long>(half), static_cast<long long>(gn));
  std::printf("\nTwo-sample tests (U-statistics, 0 in expectation for one distribution; the null: %d random re-splits of "
              "the pooled rows)\n%-44s %11s %22s %8s %7s  %s\n",
              config.permutations, "metric", "generated", "null mean +- sd", "z", "p", "verdict");
  std::vector<std::string> told;
  for (const auto& r : rows) {
    if (r.kind != Kind::kTest) continue;
    std::string verdict = "-";
    if (!std::isnan(r.p_value)) {
      const bool yes = r.p_value < kDistinguishableP;
      verdict = yes ? "distinguishable" : r.p_value < 0.05 ? "weak evidence" : "not distinguishable";
      if (yes) told.push_back(r.metric + " (p " + fmt(r.p_value, 2) + ")");
    }
    std::printf("%-44s %11.4g %22s %8s %7s  %s\n", r.metric.c_str(), r.value,
                (fmt(r.null_mean, 3) + " +- " + fmt(r.null_sd, 3)).c_str(), fmt(r.z, 3).c_str(), fmt(r.p_value, 2).c_str(),
                verdict.c_str());
  }
  std::printf("\nAgainst real data (the same metric for %lld held-out real rows, both against the same %lld reference rows;\n"
              "sd: of the difference between two real sets' scores, over %d re-splits of the generated + real rows)\n"
              "%-44s %11s %22s %8s  %s\n",
              static_cast<long long>(gn), static_cast<long long>(half), config.resamples, "metric", "generated",
              "real +- sd", "gap/sd", "note");
  std::vector<std::string> gaps;
  for (const auto& r : rows) {
    if (r.kind != Kind::kResampled) continue;
    std::string flag;
    const bool differs = config.resamples > 0 && std::fabs(r.value - r.null_mean) > 1e-12 * (1 + std::fabs(r.null_mean));
    if (differs && (r.null_sd == 0 || std::fabs(r.value - r.null_mean) > kGapSd * r.null_sd)) {
      flag = r.value > r.null_mean ? "!! above real data by > 3 sd" : "!! below real data by > 3 sd";
      gaps.push_back(r.metric + " (" + (r.null_sd > 0 ? fmt(r.z, 3) + " sd" : "real data always " + fmt(r.null_mean)) + ")");
    }
    std::printf("%-44s %11.4g %22s %8s  %s\n", r.metric.c_str(), r.value,
                (fmt(r.null_mean, 4) + " +- " + fmt(r.null_sd, 2)).c_str(), fmt(r.z, 3).c_str(),
                (flag.empty() ? r.note : flag + "; " + r.note).c_str());
  }
  std::printf("\n%-44s %11.4g  real data: %.4g (expected value), ratio %.3g  [older figures' unit]\n", v.metric.c_str(), v.value,
              v.expected, v.value / v.expected);
  if (!mode_text.empty()) std::printf("\nmode shares, generated %% / data %%: %s\n", mode_text.c_str());
  auto join = [](const std::vector<std::string>& l) {
    std::string s;
    for (size_t i = 0; i < l.size(); ++i) s += (i ? ", " : "") + l[i];
    return s;
  };
  std::printf("\nVerdict at %lld generated vs %lld real samples:\n", static_cast<long long>(gn), static_cast<long long>(half));
  if (config.permutations > 0)
    std::printf("  %s\n", told.empty() ? "no two-sample test tells the generated set from real data (every p >= 0.01)"
                                       : ("told apart from real data by: " + join(told)).c_str());
  if (config.resamples > 0)
    std::printf("  %s\n", gaps.empty() ? "every other metric is within 3 sd of real data's spread"
                                       : ("beyond 3 sd of real data: " + join(gaps)).c_str());
  std::printf("(p: the share of random re-splits of the pooled sets that score at least the observed statistic; z: the\n"
              " statistic in null standard deviations; the null sd shrinks as 1/n, so z of a fixed mismatch grows about\n"
              " linearly with the sample size: p >= 0.01 says the difference is too small to see at this size.)\n");

  if (!config.json.empty()) write_json(config.json, *gen, *ref, gn, half, config, rows);
  if (!config.png.empty()) {
    if (images) {
      const int64_t n = std::min<int64_t>(32, std::min(g.size(0), b.size(0)));
      write_png(config.png, image_grid(torch::cat({g.slice(0, 0, n), b.slice(0, 0, n)}), 8));
    } else if (g.size(1) == 2) {
      write_png(config.png, data::picture(gen->spec(), g, a, 0, "drift_eval compare (data: the reference)"));
    }
  }
  return 0;
}

}  // namespace driftlab::eval
