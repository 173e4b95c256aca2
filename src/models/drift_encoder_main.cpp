// drift_encoder: pretrains the multi-scale ResNet feature encoder with MAE (and optionally a
// classifier fine-tune) and writes the file drift_train loads with --encoder=<file>; `info`
// describes any encoder file.
#include <gflags/gflags.h>
#include <glog/logging.h>
#include <torch/torch.h>

#include <iomanip>
#include <iostream>
#include <thread>

#include "common/check.h"            // DL_REQUIRE, UserError
#include "common/rng.h"              // which images each step trains on
#include "common/tool_main.h"        // run_tool, tool_args
#include "data/reader.h"              // ShardSet: the training images (--data)
#include "models/encoders.h"         // ResNetEncoder, save/load of encoder files
#include "data/idx.h"              // the MNIST-style input files
#include "models/mae.h"              // pretrain_mae

DEFINE_string(data, "", "pretrain: an image data set in the shard format (folder, shard file or glob; see "
                        "README, 'Data sets'); labels are used when it has classes");
DEFINE_string(images, "", "pretrain: instead of --data, an IDX uint8 image file (e.g. .cache/data/mnist/train-images-idx3-ubyte); "
                          "decoded to [-1, 1] like src/data decodes images");
DEFINE_string(labels, "", "pretrain: IDX label file matching --images (enables --finetune_steps)");
DEFINE_int64(max_images, 0, "pretrain: use only the first N images (0: all)");
DEFINE_int64(holdout, 1000, "pretrain: the last N images are held out; the MAE loss on them is reported after training");
DEFINE_string(out, "encoder.pt", "pretrain: output encoder file (load it in drift_train with --encoder=<file>)");
DEFINE_int64(steps, 2000, "pretrain: MAE optimisation steps");
DEFINE_int64(batch_size, 64, "pretrain: images per step");
DEFINE_double(lr, 1e-3, "pretrain: AdamW learning rate (betas 0.9, 0.95)");
DEFINE_double(weight_decay, 0.05, "pretrain: AdamW weight decay");
DEFINE_double(ema_decay, 0.999, "pretrain: EMA decay of the encoder weights (the EMA is what is saved)");
DEFINE_double(mask_prob, 0.5, "pretrain: probability that a patch is hidden");
DEFINE_int64(mask_patch, 2, "pretrain: side of the square patches that are hidden");
DEFINE_int64(decoder_width, 32, "pretrain: channels of the MAE decoder (discarded after training)");
DEFINE_string(widths, "16,32,64", "pretrain: encoder channels per stage");
DEFINE_string(blocks, "2,2,2", "pretrain: encoder basic blocks per stage");
DEFINE_int64(groups, 8, "pretrain: GroupNorm groups");
DEFINE_int64(seed, 0, "pretrain: seed of initialisation, image choice and masks");
DEFINE_int64(log_every, 100, "pretrain: log the mean loss every N steps (0: never)");
DEFINE_int64(finetune_steps, 0, "pretrain: classifier fine-tuning steps after MAE (needs --labels)");
DEFINE_double(finetune_lr, 1e-3, "pretrain: fine-tuning learning rate");
DEFINE_int32(threads, 0, "CPU threads for LibTorch (0: all cores)");
DEFINE_string(device, "cpu", "cpu or cuda[:N]");

namespace {

using namespace driftlab;

const char* kUsage =
    "drift_encoder: the feature encoder of the drift loss.\n"
    "  drift_encoder pretrain (--data=<shard folder> | --images=<idx3> [--labels=<idx1>]) --out=<file> [flags]\n"
    "      MAE pretraining of the multi-scale ResNet (2x2 patches hidden with p=0.5, L2 on hidden\n"
    "      pixels, AdamW, EMA); with --labels and --finetune_steps a classifier fine-tune follows.\n"
    "  drift_encoder info <file>\n"
    "      describes an encoder file (drift_encoder output or TorchScript module) and its feature maps.\n"
    "Example (MNIST):\n"
    "  drift_data ... (an MNIST shard set in data/mnist), then\n"
    "  drift_encoder pretrain --data=data/mnist --steps=2000 --finetune_steps=500 --out=mnist_enc.pt\n"
    "  or straight from the IDX files:\n"
    "  drift_encoder pretrain --images=.cache/data/mnist/train-images-idx3-ubyte \\\n"
    "      --labels=.cache/data/mnist/train-labels-idx1-ubyte --steps=2000 --finetune_steps=500 --out=mnist_enc.pt";

std::string fmt(double v) {
  std::ostringstream os;
  os << std::setprecision(4) << v;
  return os.str();
}

void set_threads() {
  const int n = FLAGS_threads > 0 ? FLAGS_threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  torch::set_num_threads(n);
}

torch::Device parse_device() {
  try {
    torch::Device d(FLAGS_device);
    DL_REQUIRE(!d.is_cuda() || torch::cuda::is_available(), "--device=" << FLAGS_device << ": no CUDA device available");
    return d;
  } catch (const c10::Error&) {
    DL_REQUIRE(false, "--device=" << FLAGS_device << ": expected cpu or cuda[:N]");
  }
  return torch::kCPU;
}

int pretrain() {
  DL_REQUIRE(FLAGS_data.empty() != FLAGS_images.empty(),
             "pretrain needs exactly one of --data=<shard folder> or --images=<IDX image file>");
  DL_REQUIRE(FLAGS_batch_size > 0, "--batch_size=" << FLAGS_batch_size << ": expected > 0");
  set_threads();
  const auto device = parse_device();

  // Two sources of images, one access path: rows(indices) -> decoded images [m, C, H, W] in
  // [-1, 1] and int64 labels (undefined when the source has none).
  std::shared_ptr<data::ShardSet> set;
  torch::Tensor all, all_labels;
  int64_t total = 0, num_classes = 0;
  std::string source;
  if (!FLAGS_data.empty()) {
    set = data::ShardSet::open(FLAGS_data);
    DL_REQUIRE(set->spec().kind == data::SampleKind::kImage,
               "--data=" << FLAGS_data << ": " << set->spec().describe() << "; MAE pretraining needs an image data set");
    total = set->size();
    num_classes = set->spec().num_classes;
    source = FLAGS_data + " (" + set->spec().describe() + ")";
  } else {
    all = data::load_idx_images(FLAGS_images, FLAGS_max_images);
    if (!FLAGS_labels.empty()) {
      all_labels = data::load_idx_labels(FLAGS_labels, FLAGS_max_images);
      DL_REQUIRE(all_labels.size(0) == all.size(0), "--labels=" << FLAGS_labels << " has " << all_labels.size(0)
                                                                << " labels for " << all.size(0) << " images");
      num_classes = all_labels.max().item<int64_t>() + 1;
    }
    total = all.size(0);
    source = FLAGS_images;
  }
  if (FLAGS_max_images > 0) total = std::min(total, FLAGS_max_images);
  DL_REQUIRE(FLAGS_finetune_steps == 0 || num_classes > 1,
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
  const int64_t holdout = std::clamp<int64_t>(FLAGS_holdout, 0, total / 2);
  const int64_t n_train = total - holdout;
  std::vector<int64_t> held_idx;
  for (int64_t i = n_train; i < total; ++i) held_idx.push_back(i);
  auto held = rows(held_idx).first;
  auto shape = rows({0}).first.sizes().slice(1).vec();
  LOG(INFO) << "images " << source << ": " << total << " x " << models::format_int_list(shape) << " (" << n_train
            << " train, " << holdout << " held out), " << torch::get_num_threads() << " threads, device " << device;

  models::EncoderConfig cfg;
  cfg.kind = "resnet";
  cfg.in_channels = shape[0];
  cfg.widths = models::parse_int_list(FLAGS_widths, "--widths");
  cfg.blocks = models::parse_int_list(FLAGS_blocks, "--blocks");
  cfg.groups = FLAGS_groups;
  cfg.init_seed = static_cast<uint64_t>(FLAGS_seed);
  auto enc_base = models::make_encoder(cfg);
  auto* enc = dynamic_cast<models::ResNetEncoderImpl*>(enc_base.get());
  DL_CHECK(enc != nullptr, "make_encoder(resnet) returned another kind");
  LOG(INFO) << "encoder: " << enc->describe() << ", " << [&] {
    int64_t n = 0;
    for (const auto& p : enc->parameters()) n += p.numel();
    return n;
  }() << " parameters";

  models::MaeOptions o;
  o.steps = FLAGS_steps;
  o.lr = FLAGS_lr;
  o.weight_decay = FLAGS_weight_decay;
  o.ema_decay = FLAGS_ema_decay;
  o.mask_prob = FLAGS_mask_prob;
  o.mask_patch = FLAGS_mask_patch;
  o.decoder_width = FLAGS_decoder_width;
  o.seed = static_cast<uint64_t>(FLAGS_seed);
  o.log_every = FLAGS_log_every;
  o.finetune_steps = FLAGS_finetune_steps;
  o.finetune_lr = FLAGS_finetune_lr;
  o.num_classes = num_classes;
  o.device = device;
  if (holdout > 0) o.eval_images = held;

  const int64_t bs = FLAGS_batch_size;
  auto batches = [&](int64_t step) {
    rng::Draw draw(rng::Key{o.seed, rng::Stream::kData, static_cast<uint64_t>(step), 0});
    std::vector<int64_t> idx(static_cast<size_t>(bs));
    for (auto& i : idx) i = static_cast<int64_t>(draw.below(static_cast<uint64_t>(n_train)));
    auto [images, labels] = rows(idx);
    models::MaeBatch b;
    b.images = images;
    b.labels = labels;
    b.first_index = step * bs;
    return b;
  };

  auto report = models::pretrain_mae(*enc, o, batches);
  std::cout << "mae: " << o.steps << " steps in " << fmt(report.seconds) << " s, training loss " << fmt(report.first_loss)
            << " (first 10%) -> " << fmt(report.last_loss) << " (last 10%)\n";
  if (holdout > 0) {
    // Reference: predicting 0 (mid-grey) for every hidden pixel.
    auto mask = models::mae_mask(o.seed, models::kHeldoutMaskStep, 0, held.size(0), held.size(2), held.size(3),
                                 o.mask_patch, o.mask_prob);
    const double zero = (held.pow(2) * mask).sum().item<double>() / mask.sum().clamp_min(1.0).item<double>() /
                        static_cast<double>(held.size(1));
    std::cout << "held-out masked-pixel MSE (" << holdout << " images): " << fmt(report.heldout_before)
              << " at init -> " << fmt(report.heldout_after) << " after MAE (EMA weights); predicting 0: " << fmt(zero)
              << "\n";
  }
  if (report.finetune_accuracy >= 0)
    std::cout << "fine-tune accuracy (last 10% of batches, before their update): " << fmt(report.finetune_accuracy)
              << "\n";
  models::save_resnet_encoder(*enc, FLAGS_out);
  std::cout << "wrote " << FLAGS_out << " (load with --encoder=" << FLAGS_out << ")\n";
  return 0;
}

int info(const std::string& path) {
  set_threads();
  auto enc = models::load_encoder_file(path);
  std::cout << path << ": " << enc->describe() << "\n";
  if (auto* r = dynamic_cast<models::ResNetEncoderImpl*>(enc.get())) {
    int64_t n = 0;
    for (const auto& p : r->parameters()) n += p.numel();
    std::cout << "parameters: " << n << "\nfeature maps for a 28x28 input:";
    for (const auto& s : r->feature_shapes(1, 28, 28)) std::cout << " [" << models::format_int_list(s) << "]";
    std::cout << "\n";
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return driftlab::run_tool(argc, argv, kUsage, [] {
    const auto& args = driftlab::tool_args();
    DL_REQUIRE(!args.empty(), "missing subcommand: expected `pretrain` or `info <file>` (see --help)");
    if (args[0] == "pretrain") {
      DL_REQUIRE(args.size() == 1, "pretrain takes flags only, got extra argument '" << args[1] << "'");
      return pretrain();
    }
    if (args[0] == "info") {
      DL_REQUIRE(args.size() == 2, "usage: drift_encoder info <encoder file>");
      return info(args[1]);
    }
    DL_REQUIRE(false, "unknown subcommand '" << args[0] << "': expected pretrain or info");
    return 2;
  });
}
