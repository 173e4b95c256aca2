// MAE pretraining of the multi-scale ResNet encoder (docs/DRIFTING.md section 3: the drift needs a
// feature space; no pretrained weights can be downloaded here, so we pretrain our own on the data
// set).
// Random 2x2 patches of the input are zeroed with probability 0.5 (counter RNG, stream kMask, so a
// mask depends only on (seed, step, sample)); a light decoder reads the encoder's stage outputs and
// reconstructs the image; the loss is the mean squared error over the masked pixels only. AdamW,
// an EMA of the encoder weights (the EMA is what is kept), progress and loss logging. Optionally a
// classifier head is then fine-tuned with the encoder when labels exist.
// Data comes from a batch-provider callback, so this file does no I/O of its own.
#pragma once

#include <torch/torch.h>

#include <functional>
#include <string>
#include <vector>

#include "common/precision.h"
#include "models/encoders.h"

namespace driftlab::models {

struct MaeBatch {
  torch::Tensor images;  // [B, C, H, W] float, in the normalisation the trainer will use
  torch::Tensor labels;  // [B] int64, or undefined (no fine-tuning possible)
  int64_t first_index = 0;  // global index of row 0 (keys the masks of this batch)
};
// Returns the batch of optimisation step `step` (pretraining and fine-tuning count separately).
using MaeBatchFn = std::function<MaeBatch(int64_t step)>;

struct MaeOptions {
  int64_t steps = 2000;
  double lr = 1e-3;
  double weight_decay = 0.05;
  double ema_decay = 0.999;      // with warm-up: min(decay, (1 + t) / (10 + t)) at update t
  double mask_prob = 0.5;
  int64_t mask_patch = 2;
  int64_t decoder_width = 32;
  uint64_t seed = 0;
  int64_t log_every = 100;       // INFO line with the mean loss of the last log_every steps
  bool progress = true;          // ProgressBar on the terminal / in the log
  int64_t finetune_steps = 0;    // > 0: classifier fine-tuning after MAE (needs labels)
  double finetune_lr = 1e-3;
  int64_t num_classes = 0;       // classifier outputs (fine-tuning only)
  torch::Device device = torch::kCPU;
  Precision precision = Precision::kFp32;  // forward passes under bf16 autocast; the losses in fp32
  torch::Tensor eval_images;     // optional held-out [N, C, H, W]: MAE loss before and after
};

// UserError naming the flag (--steps, --mask_prob, --mask_patch, --ema_decay) and the bad value;
// pretrain_mae checks its options with it (and the fine-tuning labels, known only with the data).
void validate(const MaeOptions& options);

// The mask "step" of held-out evaluations (fixed masks, never used by a training step).
inline constexpr uint64_t kHeldoutMaskStep = uint64_t{1} << 30;

struct MaeReport {
  std::vector<double> losses;          // masked-pixel MSE per pretraining step
  double first_loss = 0, last_loss = 0;  // means over the first / last 10% of steps (>= 1 step)
  double heldout_before = -1, heldout_after = -1;  // MAE loss on eval_images (random init / EMA), -1 if none
  double finetune_accuracy = -1;       // accuracy over the last 10% of fine-tuning batches, -1 if none
  double seconds = 0;
};

// Reads the encoder's stage outputs, projects each to `width` channels, upsamples them to the
// input size, sums them and predicts the pixels.
class MaeDecoderImpl : public torch::nn::Module {
 public:
  MaeDecoderImpl(const std::vector<int64_t>& stage_widths, int64_t width, int64_t out_channels);
  torch::Tensor forward(const std::vector<torch::Tensor>& stage_outputs, int64_t h, int64_t w);

 private:
  std::vector<torch::nn::Conv2d> lateral_;
  torch::nn::Conv2d head1_{nullptr}, head2_{nullptr};
  torch::nn::GroupNorm head_norm_{nullptr};
};
TORCH_MODULE(MaeDecoder);

// [B, 1, H, W] float mask, 1 where a pixel is hidden. Patch (i, j) of row r is hidden when the
// k-th uniform of Key{seed, kMask, step, first_index + r} is below mask_prob (k = i * ceil(W/p) + j).
torch::Tensor mae_mask(uint64_t seed, uint64_t step, int64_t first_index, int64_t batch, int64_t h, int64_t w,
                       int64_t patch, double mask_prob);

// Mean squared error over the hidden pixels of `images` reconstructed from the masked input; the
// networks run in `precision`, the error in fp32.
torch::Tensor mae_loss(ResNetEncoderImpl& enc, MaeDecoderImpl& dec, const torch::Tensor& images,
                       const torch::Tensor& mask, Precision precision = Precision::kFp32);

// Masked-pixel MSE of enc + dec on o.eval_images with the fixed held-out masks, in fp32 whatever
// o.precision (comparable across precisions).
double heldout_loss(ResNetEncoderImpl& enc, MaeDecoderImpl& dec, const MaeOptions& o);

// Trains `enc` (and a fresh decoder) for opts.steps steps; on return `enc` holds the EMA weights.
// `decoder` receives the trained decoder when non-null (for evaluation).
MaeReport pretrain_mae(ResNetEncoderImpl& enc, const MaeOptions& opts, const MaeBatchFn& batches,
                       MaeDecoder* decoder = nullptr);

}  // namespace driftlab::models
