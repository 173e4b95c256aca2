// A small convolutional classifier trained by the project on an image data set. drift_eval uses
// its penultimate features for a Frechet distance (NOT the Inception FID: a different network,
// trained on the data set itself, so the numbers are comparable only with each other) and its
// predictions to check that class-conditional samples look like the class they were asked for.
#pragma once

#include <torch/torch.h>

#include <string>

#include "data/reader.h"

namespace driftlab::eval {

class ClassifierImpl : public torch::nn::Module {
 public:
  ClassifierImpl(int64_t channels, int64_t height, int64_t width, int64_t num_classes);
  torch::Tensor features(const torch::Tensor& x);  // [B, 128] penultimate activations
  torch::Tensor forward(const torch::Tensor& x);   // [B, num_classes] logits
  int64_t channels, height, width, num_classes;

 private:
  torch::nn::Conv2d c1_{nullptr}, c2_{nullptr}, c3_{nullptr}, c4_{nullptr};
  torch::nn::Linear fc_{nullptr}, head_{nullptr};
};
TORCH_MODULE(Classifier);

struct ClassifierTraining {
  int64_t epochs = 2;
  int64_t batch = 128;
  double lr = 2e-3;
  uint64_t seed = 0;
};

// Trains on every sample of `train` (labelled images, decoded to [-1, 1]); progress shown.
// Returns the classifier in eval mode.
Classifier train_classifier(const data::ShardSet& train, const ClassifierTraining& options);
// Accuracy of predictions against the labels of `set` (in batches).
double classifier_accuracy(Classifier& clf, const torch::Tensor& images, const torch::Tensor& labels);
// Penultimate features [n, 128] of decoded images, in batches, no gradient.
torch::Tensor classifier_features(Classifier& clf, const torch::Tensor& images);

// One file: the input shape and classes, then the weights (tmp + rename).
void save_classifier(Classifier& clf, const std::string& path);
Classifier load_classifier(const std::string& path);

// drift_eval train-classifier, typed (the tool fills it from its flags in drift_eval_main.cpp).
struct ClassifierTrainConfig {
  std::string data;          // the labelled image training set (shard format)
  std::string out;           // where to write the classifier file
  std::string test_data;     // a labelled test set to report the accuracy on; empty: none
  ClassifierTraining training;
  int threads = 0;           // LibTorch intra-op threads, set by the tool before the work; 0: all cores
};

// UserError naming the flag (--data, --out, --epochs, --batch, --lr) and the bad value.
void validate(const ClassifierTrainConfig& config);

// Validates, trains on every sample of config.data, writes config.out and prints the test accuracy
// when config.test_data is given. Returns the exit code (0).
int train_and_save_classifier(const ClassifierTrainConfig& config);

}  // namespace driftlab::eval
