// The evaluation classifier (see classifier.h).
#include "eval/classifier.h"

#include <cstdio>
#include <filesystem>

#include "common/check.h"
#include "common/progress.h"
#include "common/rng.h"

namespace driftlab::eval {

ClassifierImpl::ClassifierImpl(int64_t c, int64_t h, int64_t w, int64_t k)
    : channels(c), height(h), width(w), num_classes(k) {
  DL_REQUIRE(c > 0 && h >= 8 && w >= 8 && k >= 2, "classifier: needs images of at least 8x8 and 2 classes, got "
                                                      << c << "x" << h << "x" << w << ", " << k << " classes");
  c1_ = register_module("c1", torch::nn::Conv2d(torch::nn::Conv2dOptions(c, 32, 3).padding(1)));
  c2_ = register_module("c2", torch::nn::Conv2d(torch::nn::Conv2dOptions(32, 64, 3).padding(1).stride(2)));
  c3_ = register_module("c3", torch::nn::Conv2d(torch::nn::Conv2dOptions(64, 128, 3).padding(1).stride(2)));
  c4_ = register_module("c4", torch::nn::Conv2d(torch::nn::Conv2dOptions(128, 128, 3).padding(1)));
  fc_ = register_module("fc", torch::nn::Linear(128 * 4 * 4, 128));
  head_ = register_module("head", torch::nn::Linear(128, k));
}

torch::Tensor ClassifierImpl::features(const torch::Tensor& x) {
  auto h = torch::silu(c1_->forward(x));
  h = torch::silu(c2_->forward(h));
  h = torch::silu(c3_->forward(h));
  h = torch::silu(c4_->forward(h));
  // Pooled to a 4x4 grid, not to one value per channel: the layout of the strokes is what tells
  // digits apart (global average pooling capped MNIST test accuracy at about 95%).
  h = torch::adaptive_avg_pool2d(h, {4, 4}).flatten(1);
  return torch::silu(fc_->forward(h));
}

torch::Tensor ClassifierImpl::forward(const torch::Tensor& x) { return head_->forward(features(x)); }

Classifier train_classifier(const data::ShardSet& train, const ClassifierTraining& o) {
  const auto& spec = train.spec();
  DL_REQUIRE(spec.decoded_shape().size() == 3 && spec.num_classes >= 2,
             "train-classifier: '" << train.path() << "' must hold labelled images, it holds " << spec.describe());
  const auto shape = spec.decoded_shape();
  torch::manual_seed(static_cast<uint64_t>(o.seed));
  Classifier clf(shape[0], shape[1], shape[2], spec.num_classes);
  torch::optim::Adam opt(clf->parameters(), torch::optim::AdamOptions(o.lr));
  const int64_t n = train.size(), steps_per_epoch = (n + o.batch - 1) / o.batch;
  ProgressBar bar("classifier", o.epochs * steps_per_epoch);
  double loss_avg = 0;
  for (int64_t epoch = 0; epoch < o.epochs; ++epoch) {
    // A fresh permutation per epoch from the counter RNG (Fisher-Yates).
    std::vector<int64_t> order(n);
    for (int64_t i = 0; i < n; ++i) order[i] = i;
    rng::Draw d(rng::Key{o.seed, rng::Stream::kTest, static_cast<uint64_t>(epoch), 77});
    for (int64_t i = n - 1; i > 0; --i) std::swap(order[i], order[d.below(i + 1)]);
    for (int64_t s = 0; s < steps_per_epoch; ++s) {
      std::vector<int64_t> idx(order.begin() + s * o.batch, order.begin() + std::min(n, (s + 1) * o.batch));
      auto x = train.read(idx);
      auto y = train.labels_of(idx);
      auto loss = torch::nn::functional::cross_entropy(clf->forward(x), y);
      opt.zero_grad();
      loss.backward();
      opt.step();
      loss_avg = 0.98 * loss_avg + 0.02 * loss.item<double>();
      char status[64];
      std::snprintf(status, sizeof status, "loss %.3f", loss_avg / (1 - std::pow(0.98, epoch * steps_per_epoch + s + 1)));
      bar.add(1, status);
    }
  }
  bar.finish();
  clf->eval();
  return clf;
}

torch::Tensor classifier_features(Classifier& clf, const torch::Tensor& images) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> out;
  for (int64_t b = 0; b < images.size(0); b += 512) out.push_back(clf->features(images.slice(0, b, b + 512)));
  return out.empty() ? torch::empty({0, 128}) : torch::cat(out);
}

double classifier_accuracy(Classifier& clf, const torch::Tensor& images, const torch::Tensor& labels) {
  torch::NoGradGuard no_grad;
  int64_t correct = 0;
  for (int64_t b = 0; b < images.size(0); b += 512) {
    auto pred = clf->forward(images.slice(0, b, b + 512)).argmax(1);
    correct += (pred == labels.slice(0, b, b + 512)).sum().item<int64_t>();
  }
  return images.size(0) ? static_cast<double>(correct) / images.size(0) : 0.0;
}

void save_classifier(Classifier& clf, const std::string& path) {
  torch::serialize::OutputArchive ar;
  ar.write("shape", torch::tensor({clf->channels, clf->height, clf->width, clf->num_classes}, torch::kLong));
  clf->save(ar);
  const std::string tmp = path + ".tmp";
  ar.save_to(tmp);
  DL_REQUIRE(std::rename(tmp.c_str(), path.c_str()) == 0, "cannot rename '" << tmp << "' to '" << path << "'");
}

Classifier load_classifier(const std::string& path) {
  DL_REQUIRE(std::filesystem::is_regular_file(path), "classifier file '" << path << "' not found (make one with drift_eval train-classifier)");
  torch::serialize::InputArchive ar;
  try {
    ar.load_from(path);
    torch::Tensor shape;
    ar.read("shape", shape);
    DL_REQUIRE(shape.numel() == 4, "'" << path << "' is not a drift_eval classifier file");
    auto s = shape.to(torch::kLong);
    Classifier clf(s[0].item<int64_t>(), s[1].item<int64_t>(), s[2].item<int64_t>(), s[3].item<int64_t>());
    clf->load(ar);
    clf->eval();
    return clf;
  } catch (const c10::Error& e) {
    throw UserError("'" + path + "' is not a readable drift_eval classifier file: " + e.msg());
  }
}

void validate(const ClassifierTrainConfig& c) {
  DL_REQUIRE(!c.data.empty() && !c.out.empty(), "train-classifier needs --data (labelled images) and --out");
  DL_REQUIRE(c.training.epochs >= 1, "--epochs must be >= 1, got " << c.training.epochs);
  DL_REQUIRE(c.training.batch >= 1, "--batch must be >= 1, got " << c.training.batch);
  DL_REQUIRE(c.training.lr > 0, "--lr must be > 0, got " << c.training.lr);
  DL_REQUIRE(c.threads >= 0, "--eval_threads must be >= 0 (0: all cores), got " << c.threads);
}

int train_and_save_classifier(const ClassifierTrainConfig& c) {
  validate(c);
  auto train = data::ShardSet::open(c.data);
  auto clf = train_classifier(*train, c.training);
  save_classifier(clf, c.out);
  std::printf("classifier written to %s\n", c.out.c_str());
  if (!c.test_data.empty()) {
    auto test = data::ShardSet::open(c.test_data);
    std::vector<int64_t> idx(test->size());
    for (int64_t i = 0; i < test->size(); ++i) idx[i] = i;
    std::printf("test accuracy on %s: %.4f\n", test->path().c_str(),
                classifier_accuracy(clf, test->read(idx), test->labels_of(idx)));
  }
  return 0;
}

}  // namespace driftlab::eval
