// drift_encoder: pretrains the multi-scale ResNet feature encoder with MAE (and optionally a
// classifier fine-tune) and writes the file drift_train loads with --encoder=<file>; `info`
// describes any encoder file. This file only turns the flags into the typed configs of
// models/pretrain.h, where the work is.
#include <gflags/gflags.h>
#include <torch/torch.h>

#include <algorithm>
#include <string>
#include <thread>

#include "common/check.h"       // DL_REQUIRE, UserError
#include "common/tool_main.h"   // run_tool, tool_args
#include "models/config.h"      // parse_int_list for --widths, --blocks
#include "models/pretrain.h"    // EncoderPretrainConfig, pretrain_encoder, describe_encoder_file

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
DEFINE_string(precision, "auto", "pretrain: arithmetic of the encoder's and decoder's passes: auto (bf16 where the "
              "hardware computes in it: CPUs with AVX512-BF16 or AMX-BF16, GPUs of compute capability 8.0 or newer; "
              "else fp32), fp32, or bf16 (autocast; losses, weights, optimizer state and EMA stay fp32; the held-out "
              "loss is computed in fp32)");

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

// The only code of drift_encoder that reads its flags: one typed config per subcommand.
models::EncoderPretrainConfig pretrain_config_from_flags() {
  models::EncoderPretrainConfig c;
  c.data = FLAGS_data;
  c.images = FLAGS_images;
  c.labels = FLAGS_labels;
  c.max_images = FLAGS_max_images;
  c.holdout = FLAGS_holdout;
  c.out = FLAGS_out;
  c.batch_size = FLAGS_batch_size;
  c.widths = models::parse_int_list(FLAGS_widths, "--widths");
  c.blocks = models::parse_int_list(FLAGS_blocks, "--blocks");
  c.groups = FLAGS_groups;
  c.mae.steps = FLAGS_steps;
  c.mae.lr = FLAGS_lr;
  c.mae.weight_decay = FLAGS_weight_decay;
  c.mae.ema_decay = FLAGS_ema_decay;
  c.mae.mask_prob = FLAGS_mask_prob;
  c.mae.mask_patch = FLAGS_mask_patch;
  c.mae.decoder_width = FLAGS_decoder_width;
  c.mae.seed = static_cast<uint64_t>(FLAGS_seed);
  c.mae.log_every = FLAGS_log_every;
  c.mae.finetune_steps = FLAGS_finetune_steps;
  c.mae.finetune_lr = FLAGS_finetune_lr;
  c.device = FLAGS_device;
  c.precision = FLAGS_precision;
  c.threads = FLAGS_threads;
  return c;
}

models::EncoderInfoConfig info_config_from_flags(const std::string& path) {
  models::EncoderInfoConfig c;
  c.path = path;
  c.threads = FLAGS_threads;
  return c;
}

void set_threads(int threads) {
  torch::set_num_threads(threads > 0 ? threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
}

}  // namespace

int main(int argc, char** argv) {
  return driftlab::run_tool(argc, argv, kUsage, [] {
    const auto& args = driftlab::tool_args();
    DL_REQUIRE(!args.empty(), "missing subcommand: expected `pretrain` or `info <file>` (see --help)");
    if (args[0] == "pretrain") {
      DL_REQUIRE(args.size() == 1, "pretrain takes flags only, got extra argument '" << args[1] << "'");
      const auto config = pretrain_config_from_flags();
      set_threads(config.threads);
      return models::pretrain_encoder(config);
    }
    if (args[0] == "info") {
      DL_REQUIRE(args.size() == 2, "usage: drift_encoder info <encoder file>");
      const auto config = info_config_from_flags(args[1]);
      set_threads(config.threads);
      return models::describe_encoder_file(config);
    }
    DL_REQUIRE(false, "unknown subcommand '" << args[0] << "': expected pretrain or info");
    return 2;
  });
}
