// MAE pretraining and classifier fine-tuning of the ResNet encoder (see mae.h).
#include "models/mae.h"

#include <glog/logging.h>

#include <algorithm>
#include <cmath>
#include <iomanip>
#include <sstream>

#include "common/check.h"
#include "common/optim.h"
#include "common/progress.h"
#include "common/rng.h"
#include "common/timer.h"
#include "models/seeded_init.h"

namespace driftlab::models {
namespace {

double mean_of(const std::vector<double>& v, size_t begin, size_t end) {
  double s = 0;
  for (size_t i = begin; i < end; ++i) s += v[i];
  return end > begin ? s / static_cast<double>(end - begin) : 0.0;
}

std::string fmt(double v, int precision = 4) {
  std::ostringstream os;
  os << std::setprecision(precision) << v;
  return os.str();
}

void check_batch(const MaeBatch& b, const EncoderConfig& cfg, int64_t step) {
  DL_REQUIRE(b.images.defined() && b.images.dim() == 4 && b.images.size(1) == cfg.in_channels &&
                 b.images.is_floating_point() && b.images.size(0) > 0,
             "MAE batch of step " << step << ": expected float images [B, " << cfg.in_channels << ", H, W]");
}

}  // namespace

double heldout_loss(ResNetEncoderImpl& enc, MaeDecoderImpl& dec, const MaeOptions& o) {
  torch::NoGradGuard ng;
  const auto& x = o.eval_images;
  double sum = 0;
  for (int64_t i = 0; i < x.size(0); i += 256) {
    const int64_t n = std::min<int64_t>(256, x.size(0) - i);
    auto xb = x.narrow(0, i, n).to(o.device, torch::kFloat);
    // A step number no training step uses: the held-out masks are fixed for the whole run.
    auto mask = mae_mask(o.seed, kHeldoutMaskStep, i, n, xb.size(2), xb.size(3), o.mask_patch, o.mask_prob).to(o.device);
    sum += mae_loss(enc, dec, xb, mask).item<double>() * static_cast<double>(n);
  }
  return sum / static_cast<double>(std::max<int64_t>(1, x.size(0)));
}

MaeDecoderImpl::MaeDecoderImpl(const std::vector<int64_t>& stage_widths, int64_t width, int64_t out_channels) {
  for (size_t s = 0; s < stage_widths.size(); ++s)
    lateral_.push_back(register_module("lateral" + std::to_string(s),
                                       torch::nn::Conv2d(torch::nn::Conv2dOptions(stage_widths[s], width, 1))));
  head1_ = register_module("head1", torch::nn::Conv2d(torch::nn::Conv2dOptions(width, width, 3).padding(1)));
  head_norm_ = register_module("head_norm", torch::nn::GroupNorm(norm_groups_for(width, 8), width));
  head2_ = register_module("head2", torch::nn::Conv2d(torch::nn::Conv2dOptions(width, out_channels, 3).padding(1)));
}

torch::Tensor MaeDecoderImpl::forward(const std::vector<torch::Tensor>& stage_outputs, int64_t h, int64_t w) {
  DL_CHECK(stage_outputs.size() == lateral_.size(), "decoder expects one input per stage");
  torch::Tensor sum;
  for (size_t s = 0; s < stage_outputs.size(); ++s) {
    auto y = lateral_[s](stage_outputs[s]);
    if (y.size(2) != h || y.size(3) != w)
      y = torch::upsample_bilinear2d(y, {h, w}, /*align_corners=*/false);
    sum = sum.defined() ? sum + y : y;
  }
  return head2_(torch::relu(head_norm_(as_fp32(head1_(sum)))));
}

torch::Tensor mae_mask(uint64_t seed, uint64_t step, int64_t first_index, int64_t batch, int64_t h, int64_t w,
                       int64_t patch, double mask_prob) {
  const int64_t ph = (h + patch - 1) / patch, pw = (w + patch - 1) / patch;
  auto grid = torch::empty({batch, 1, ph, pw}, torch::kFloat);
  for (int64_t r = 0; r < batch; ++r) {
    rng::fill_uniform(rng::Key{seed, rng::Stream::kMask, step, static_cast<uint64_t>(first_index + r)},
                      grid[r].data_ptr<float>(), ph * pw);
  }
  grid = (grid < mask_prob).to(torch::kFloat);
  return grid.repeat_interleave(patch, 2).repeat_interleave(patch, 3).narrow(2, 0, h).narrow(3, 0, w).contiguous();
}

torch::Tensor mae_loss(ResNetEncoderImpl& enc, MaeDecoderImpl& dec, const torch::Tensor& images,
                       const torch::Tensor& mask, Precision precision) {
  torch::Tensor pred;
  {
    AutocastScope autocast(precision, images.device());
    auto maps = enc.forward(images * (1 - mask));
    std::vector<torch::Tensor> stages;
    for (auto i : enc.stage_output_indices()) stages.push_back(maps[i]);
    pred = as_fp32(dec.forward(stages, images.size(2), images.size(3)));
  }
  auto m = mask.expand_as(images);
  // Only hidden pixels count: reconstructing visible ones would teach the encoder nothing.
  return ((pred - images).pow(2) * m).sum() / m.sum().clamp_min(1.0);
}

void validate(const MaeOptions& o) {
  DL_REQUIRE(o.steps > 0, "MAE --steps=" << o.steps << ": expected > 0");
  DL_REQUIRE(o.mask_prob > 0 && o.mask_prob < 1, "MAE --mask_prob=" << o.mask_prob << ": expected in (0, 1)");
  DL_REQUIRE(o.mask_patch > 0, "MAE --mask_patch=" << o.mask_patch << ": expected > 0");
  DL_REQUIRE(o.ema_decay >= 0 && o.ema_decay < 1, "MAE --ema_decay=" << o.ema_decay << ": expected in [0, 1)");
}

MaeReport pretrain_mae(ResNetEncoderImpl& enc, const MaeOptions& o, const MaeBatchFn& batches, MaeDecoder* out_dec) {
  validate(o);
  DL_REQUIRE(o.finetune_steps == 0 || o.num_classes > 1,
             "MAE fine-tuning needs labels with >= 2 classes (num_classes=" << o.num_classes << ")");
  const auto& cfg = enc.config();
  Stopwatch clock;
  MaeReport report;

  enc.to(o.device);
  enc.train();
  for (auto& p : enc.parameters()) p.requires_grad_(true);
  MaeDecoder dec(nullptr);
  {
    SeededInit seeded(o.seed);  // the decoder's init is part of what --seed reproduces
    dec = MaeDecoder(cfg.widths, o.decoder_width, cfg.in_channels);
  }
  dec->to(o.device);
  std::vector<torch::Tensor> params = enc.parameters();
  for (const auto& p : dec->parameters()) params.push_back(p);
  AdamWOptions adam;
  adam.beta2 = 0.95;
  adam.weight_decay = o.weight_decay;
  AdamW opt(params, adam);
  Ema ema(enc.parameters(), o.ema_decay, /*warmup=*/true);
  if (o.eval_images.defined()) report.heldout_before = heldout_loss(enc, *dec, o);

  {
    ProgressBar bar("mae pretrain", o.steps, o.progress);
    double window = 0;
    for (int64_t step = 0; step < o.steps; ++step) {
      MaeBatch b = batches(step);
      check_batch(b, cfg, step);
      auto images = b.images.to(o.device, torch::kFloat);
      auto mask = mae_mask(o.seed, static_cast<uint64_t>(step), b.first_index, images.size(0), images.size(2),
                           images.size(3), o.mask_patch, o.mask_prob)
                      .to(o.device);
      auto loss = mae_loss(enc, *dec, images, mask, o.precision);
      zero_grad(params);
      loss.backward();
      opt.step(o.lr);
      ema.update(enc.parameters());
      const double l = loss.item<double>();
      DL_REQUIRE(std::isfinite(l), "MAE loss became " << l << " at step " << step << "; lower --lr");
      report.losses.push_back(l);
      window += l;
      if (o.log_every > 0 && (step + 1) % o.log_every == 0) {
        LOG(INFO) << "mae step " << step + 1 << "/" << o.steps << " loss " << fmt(window / o.log_every);
        window = 0;
      }
      bar.set(step + 1, "loss " + fmt(l));
    }
    bar.finish("loss " + fmt(report.losses.back()));
  }
  const size_t n = report.losses.size(), k = std::max<size_t>(1, n / 10);
  report.first_loss = mean_of(report.losses, 0, k);
  report.last_loss = mean_of(report.losses, n - k, n);
  ema.copy_to(enc.parameters());
  if (o.eval_images.defined()) report.heldout_after = heldout_loss(enc, *dec, o);
  if (out_dec) *out_dec = dec;

  if (o.finetune_steps > 0) {
    // Fine-tuning starts from the EMA weights and keeps its own EMA, which is what is kept.
    const int64_t feat = cfg.widths.back();
    torch::nn::Linear head(nullptr);
    {
      SeededInit seeded(o.seed + 1);
      head = torch::nn::Linear(feat, o.num_classes);
    }
    head->to(o.device);
    std::vector<torch::Tensor> fparams = enc.parameters();
    for (const auto& p : head->parameters()) fparams.push_back(p);
    AdamW fopt(fparams, adam);
    Ema fema(enc.parameters(), o.ema_decay, /*warmup=*/true);
    ProgressBar bar("classifier fine-tune", o.finetune_steps, o.progress);
    const int64_t tail = std::max<int64_t>(1, o.finetune_steps / 10);
    int64_t correct = 0, seen = 0;
    for (int64_t step = 0; step < o.finetune_steps; ++step) {
      MaeBatch b = batches(o.steps + step);
      check_batch(b, cfg, o.steps + step);
      DL_REQUIRE(b.labels.defined() && b.labels.dim() == 1 && b.labels.size(0) == b.images.size(0),
                 "classifier fine-tuning needs labels [B] for every batch (step " << step << ")");
      auto images = b.images.to(o.device, torch::kFloat);
      auto labels = b.labels.to(o.device, torch::kLong);
      torch::Tensor logits;
      {
        AutocastScope autocast(o.precision, o.device);
        logits = as_fp32(head(enc.forward(images).back().mean({2, 3})));
      }
      auto loss = torch::nn::functional::cross_entropy(logits, labels);
      if (step >= o.finetune_steps - tail) {
        // Scored before the update on this batch: an estimate of accuracy on unseen data.
        correct += (logits.argmax(1) == labels).sum().item<int64_t>();
        seen += labels.size(0);
      }
      zero_grad(fparams);
      loss.backward();
      fopt.step(o.finetune_lr);
      fema.update(enc.parameters());
      if (o.log_every > 0 && (step + 1) % o.log_every == 0)
        LOG(INFO) << "fine-tune step " << step + 1 << "/" << o.finetune_steps << " loss " << fmt(loss.item<double>());
      bar.set(step + 1, "loss " + fmt(loss.item<double>()));
    }
    bar.finish();
    fema.copy_to(enc.parameters());
    report.finetune_accuracy = seen ? static_cast<double>(correct) / static_cast<double>(seen) : -1.0;
  }
  enc.to(torch::kCPU);
  for (auto& p : enc.parameters()) p.requires_grad_(false);
  enc.eval();
  report.seconds = clock.seconds();
  return report;
}

}  // namespace driftlab::models
