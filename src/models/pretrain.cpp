// drift_encoder's work (see pretrain.h).
#include "models/pretrain.h"

#include <glog/logging.h>
#include <torch/torch.h>

#include <algorithm>
#include <iomanip>
#include <iostream>
#include <memory>
#include <sstream>

#include "common/check.h"     // DL_REQUIRE, DL_CHECK
#include "common/rng.h"       // which images each step trains on
#include "data/idx.h"         // the MNIST-style input files
#include "data/reader.h"      // ShardSet: the training images (--data)
#include "models/config.h"    // EncoderConfig, format_int_list
#include "models/encoders.h"  // ResNetEncoder, save/load of encoder files

namespace driftlab::models {
namespace {

std::string fmt(double v) {
  std::ostringstream os;
  os << std::setprecision(4) << v;
  return os.str();
}

torch::Device parse_device(const std::string& name) {
  try {
    torch::Device d(name);
    DL_REQUIRE(!d.is_cuda() || torch::cuda::is_available(), "--device=" << name << ": no CUDA device available");
    return d;
  } catch (const c10::Error&) {
    DL_REQUIRE(false, "--device=" << name << ": expected cpu or cuda[:N]");
  }
  return torch::kCPU;
}

}  // namespace

void validate(const EncoderPretrainConfig& c) {
  DL_REQUIRE(c.data.empty() != c.images.empty(),
             "pretrain needs exactly one of --data=<shard folder> or --images=<IDX image file>");
  DL_REQUIRE(c.batch_size > 0, "--batch_size=" << c.batch_size << ": expected > 0");
  DL_REQUIRE(c.max_images >= 0, "--max_images=" << c.max_images << ": expected >= 0 (0: all)");
  DL_REQUIRE(c.holdout >= 0, "--holdout=" << c.holdout << ": expected >= 0");
  DL_REQUIRE(c.threads >= 0, "--threads=" << c.threads << ": expected >= 0 (0: all cores)");
  resolve_precision(c.precision, parse_device(c.device));  // names --precision when it is not auto, fp32 or bf16
  validate(c.mae);
}

int pretrain_encoder(const EncoderPretrainConfig& c) {
  validate(c);
  const auto device = parse_device(c.device);

  // Two sources of images, one access path: rows(indices) -> decoded images [m, C, H, W] in
  // [-1, 1] and int64 labels (undefined when the source has none).
  std::shared_ptr<data::ShardSet> set;
  torch::Tensor all, all_labels;
  int64_t total = 0, num_classes = 0;
  std::string source;
  if (!c.data.empty()) {
    set = data::ShardSet::open(c.data);
    DL_REQUIRE(set->spec().kind == data::SampleKind::kImage,
               "--data=" << c.data << ": " << set->spec().describe() << "; MAE pretraining needs an image data set");
    total = set->size();
    num_classes = set->spec().num_classes;
    source = c.data + " (" + set->spec().describe() + ")";
  } else {
    all = data::load_idx_images(c.images, c.max_images);
    if (!c.labels.empty()) {
      all_labels = data::load_idx_labels(c.labels, c.max_images);
      DL_REQUIRE(all_labels.size(0) == all.size(0), "--labels=" << c.labels << " has " << all_labels.size(0)
                                                                << " labels for " << all.size(0) << " images");
      num_classes = all_labels.max().item<int64_t>() + 1;
    }
    total = all.size(0);
    source = c.images;
  }
  if (c.max_images > 0) total = std::min(total, c.max_images);
  DL_REQUIRE(c.mae.finetune_steps == 0 || num_classes > 1,
             "--finetune_steps needs labels: --labels=<IDX label file> or a --data set with classes");
  auto rows = [&](const std::vector<int64_t>& idx) {
    std::pair<torch::Tensor, torch::Tensor> out;
    if (set) {
      out.first = set->read(idx);
      if (num_classes > 0) out.second = set->labels_of(idx);
    } else {
      auto t = torch::tensor(idx, torch::kLong);
      out.first = all.index_select(0, t);
      if (all_labels.defined()) out.second = all_labels.index_select(0, t);
    }
    return out;
  };
  const int64_t holdout = std::clamp<int64_t>(c.holdout, 0, total / 2);
  const int64_t n_train = total - holdout;
  std::vector<int64_t> held_idx;
  for (int64_t i = n_train; i < total; ++i) held_idx.push_back(i);
  auto held = rows(held_idx).first;
  auto shape = rows({0}).first.sizes().slice(1).vec();
  LOG(INFO) << "images " << source << ": " << total << " x " << format_int_list(shape) << " (" << n_train
            << " train, " << holdout << " held out), " << torch::get_num_threads() << " threads, device " << device;

  EncoderConfig cfg;
  cfg.kind = "resnet";
  cfg.in_channels = shape[0];
  cfg.widths = c.widths;
  cfg.blocks = c.blocks;
  cfg.groups = c.groups;
  cfg.init_seed = c.mae.seed;
  auto enc_base = make_encoder(cfg);
  auto* enc = dynamic_cast<ResNetEncoderImpl*>(enc_base.get());
  DL_CHECK(enc != nullptr, "make_encoder(resnet) returned another kind");
  LOG(INFO) << "encoder: " << enc->describe() << ", " << [&] {
    int64_t n = 0;
    for (const auto& p : enc->parameters()) n += p.numel();
    return n;
  }() << " parameters";

  MaeOptions o = c.mae;
  o.num_classes = num_classes;
  o.device = device;
  const PrecisionChoice precision = resolve_precision(c.precision, device);
  o.precision = precision.precision;
  LOG(INFO) << "precision: " << precision.reason;
  if (holdout > 0) o.eval_images = held;

  const int64_t bs = c.batch_size;
  auto batches = [&](int64_t step) {
    rng::Draw draw(rng::Key{o.seed, rng::Stream::kData, static_cast<uint64_t>(step), 0});
    std::vector<int64_t> idx(static_cast<size_t>(bs));
    for (auto& i : idx) i = static_cast<int64_t>(draw.below(static_cast<uint64_t>(n_train)));
    auto [images, labels] = rows(idx);
    MaeBatch b;
    b.images = images;
    b.labels = labels;
    b.first_index = step * bs;
    return b;
  };

  auto report = pretrain_mae(*enc, o, batches);
  std::cout << "mae: " << o.steps << " steps in " << fmt(report.seconds) << " s, training loss " << fmt(report.first_loss)
            << " (first 10%) -> " << fmt(report.last_loss) << " (last 10%)\n";
  if (holdout > 0) {
    // Reference: predicting 0 (mid-grey) for every hidden pixel.
    auto mask = mae_mask(o.seed, kHeldoutMaskStep, 0, held.size(0), held.size(2), held.size(3), o.mask_patch,
                         o.mask_prob);
    const double zero = (held.pow(2) * mask).sum().item<double>() / mask.sum().clamp_min(1.0).item<double>() /
                        static_cast<double>(held.size(1));
    std::cout << "held-out masked-pixel MSE (" << holdout << " images): " << fmt(report.heldout_before)
              << " at init -> " << fmt(report.heldout_after) << " after MAE (EMA weights); predicting 0: " << fmt(zero)
              << "\n";
  }
  if (report.finetune_accuracy >= 0)
    std::cout << "fine-tune accuracy (last 10% of batches, before their update): " << fmt(report.finetune_accuracy)
              << "\n";
  save_resnet_encoder(*enc, c.out);
  std::cout << "wrote " << c.out << " (load with --encoder=" << c.out << ")\n";
  return 0;
}

int describe_encoder_file(const EncoderInfoConfig& c) {
  DL_REQUIRE(c.threads >= 0, "--threads=" << c.threads << ": expected >= 0 (0: all cores)");
  auto enc = load_encoder_file(c.path);
  std::cout << c.path << ": " << enc->describe() << "\n";
  if (auto* r = dynamic_cast<ResNetEncoderImpl*>(enc.get())) {
    int64_t n = 0;
    for (const auto& p : r->parameters()) n += p.numel();
    std::cout << "parameters: " << n << "\nfeature maps for a 28x28 input:";
    for (const auto& s : r->feature_shapes(1, 28, 28)) std::cout << " [" << format_int_list(s) << "]";
    std::cout << "\n";
  }
  return 0;
}

}  // namespace driftlab::models
