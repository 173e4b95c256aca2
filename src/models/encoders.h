// Feature encoders phi: samples -> the list of feature maps in which the drift is computed
// (docs/DRIFTING.md section 3). Used at training time only; frozen (parameters get no gradient) but
// differentiable with respect to the input, so the drift loss reaches the generator through them.
// Turning the maps into drift keys (per location, mean/std, patch stats) is src/drift's job.
//   identity     returns the input itself: the raw keys for vectors and 2-D toys.
//   resnet       multi-scale ResNet (3x3 stem without downsampling, basic blocks, GroupNorm);
//                pretrained with MAE by `drift_encoder pretrain` (models/mae.h).
//   torchscript  an external module file whose forward(x) returns a list/tuple of [B,C,H,W].
#pragma once

#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "models/config.h"

namespace driftlab::models {

class EncoderImpl : public torch::nn::Module {
 public:
  // x [B, ...] in the data's own normalisation. Returns the feature maps, each [B, C, H, W]
  // (identity: the input unchanged, whatever its shape).
  virtual std::vector<torch::Tensor> forward(const torch::Tensor& x) = 0;
  // One line for logs: kind, sizes, where the weights came from.
  virtual std::string describe() const = 0;
  // No parameter takes a gradient and the module is in eval mode; inputs still get gradients.
  virtual void freeze();
};

using EncoderPtr = std::shared_ptr<EncoderImpl>;

class IdentityEncoderImpl : public EncoderImpl {
 public:
  std::vector<torch::Tensor> forward(const torch::Tensor& x) override { return {x}; }
  std::string describe() const override { return "identity (raw samples as the only key)"; }
};

class BasicBlockImpl : public torch::nn::Module {
 public:
  BasicBlockImpl(int64_t cin, int64_t cout, int64_t stride, int64_t groups);
  torch::Tensor forward(const torch::Tensor& x);

 private:
  torch::nn::Conv2d c1_{nullptr}, c2_{nullptr}, proj_{nullptr};
  torch::nn::GroupNorm n1_{nullptr}, n2_{nullptr}, proj_norm_{nullptr};
};
TORCH_MODULE(BasicBlock);

// Stage s (s > 0) halves the resolution in its first block. Returned maps, in order: for each
// stage, the output of every second block (2nd, 4th, ...) and the stage output (last block),
// each once.
class ResNetEncoderImpl : public EncoderImpl {
 public:
  explicit ResNetEncoderImpl(EncoderConfig cfg);
  std::vector<torch::Tensor> forward(const torch::Tensor& x) override;
  std::string describe() const override;
  const EncoderConfig& config() const { return cfg_; }
  // Positions in forward()'s list of the stage outputs (what the MAE decoder reads).
  const std::vector<size_t>& stage_output_indices() const { return stage_outputs_; }
  // [B, C, H, W] of every returned map for an input of spatial size h x w.
  std::vector<std::vector<int64_t>> feature_shapes(int64_t batch, int64_t h, int64_t w) const;

 private:
  EncoderConfig cfg_;
  torch::nn::Conv2d stem_{nullptr};
  torch::nn::GroupNorm stem_norm_{nullptr};
  std::vector<std::vector<BasicBlock>> stages_;
  std::vector<size_t> stage_outputs_;
};
TORCH_MODULE(ResNetEncoder);

// Builds the encoder the config describes: identity; resnet (weights from cfg.path when given,
// which must be a drift_encoder file, else a seeded random init); torchscript (cfg.path).
// The result is NOT frozen: call freeze() for training use (make_frozen_encoder does both).
EncoderPtr make_encoder(const EncoderConfig& cfg);
EncoderPtr make_frozen_encoder(const EncoderConfig& cfg);

// Loads any encoder file: a drift_encoder file (config + weights) or a TorchScript module.
// The kind is detected from the file. UserError naming the file if it is neither, or if a
// TorchScript module does not return a list/tuple of 4-D tensors on a probe input (checked on
// the first forward).
EncoderPtr load_encoder_file(const std::string& path);

// "resnet" for a drift_encoder file, "torchscript" for any other TorchScript module; UserError
// naming the file when it is missing or neither.
std::string encoder_file_kind(const std::string& path);

// The encoder of a run: the request (--encoder and --enc_*) with in_channels defaulting to the
// data set's channel count. A file is opened to learn its kind. UserError naming the flag or file.
EncoderConfig resolve_encoder(const EncoderRequest& request, int64_t data_channels);

// A drift_encoder file: the config text and the ResNet's parameters (written to a temporary
// name, then renamed).
void save_resnet_encoder(const ResNetEncoderImpl& enc, const std::string& path);

// GroupNorm groups for `channels` channels when `wanted` are asked for: gcd, so it always divides.
int64_t norm_groups_for(int64_t channels, int64_t wanted);

}  // namespace driftlab::models
