// The --gen_* and --encoder/--enc_* flags (see flags.h).
#include "models/flags.h"

#include <gflags/gflags.h>

#include "common/check.h"
#include "models/encoders.h"

DEFINE_string(gen_arch, "mlp", "generator architecture: mlp (vectors, 2-D toys), conv (small images), "
                               "dit (the paper's transformer; implied by --gen_preset)");
DEFINE_string(gen_preset, "", "dit size preset: tiny, S/2, B/2 (~131M params on 4x32x32, 1000 classes), "
                              "L/2 (~459M), B/4, B/16, L/16; explicit --gen_* flags override it");
DEFINE_string(gen_sample_shape, "", "shape of one sample, D or C,H,W (default: the data set's)");
DEFINE_int64(gen_num_classes, -1, "number of classes; id num_classes means unconditional (default: the data set's)");
DEFINE_int64(gen_noise_dim, 32, "mlp/conv: length of the input noise vector (dit: noise has the sample shape)");
DEFINE_int64(gen_width, 256, "mlp hidden width / conv base channels / dit hidden size");
DEFINE_int64(gen_depth, 3, "mlp hidden layers / dit transformer blocks");
DEFINE_int64(gen_cond_dim, 64, "mlp/conv: size of the class + alpha embedding");
DEFINE_int64(gen_heads, 4, "dit attention heads (head size must be divisible by 4 for 2-D RoPE)");
DEFINE_int64(gen_patch, 2, "dit patch size (must divide H and W)");
DEFINE_double(gen_mlp_ratio, 4.0, "dit: SwiGLU hidden size = int(2/3 * ratio * width)");
DEFINE_int64(gen_context_tokens, 16, "dit: in-context conditioning tokens prepended to the patches");
DEFINE_int64(gen_style_tokens, 32, "dit: random style tokens per sample (0: none)");
DEFINE_int64(gen_style_codebook, 64, "dit: learnable embeddings in each style token's codebook");
DEFINE_int64(gen_init_seed, 0, "seed of the generator's parameter initialisation");

DEFINE_string(encoder, "identity", "feature encoder: identity (raw samples; vectors, toys), resnet (random-init "
                                   "ResNet sized by --enc_*), or a file: a drift_encoder pretrain output or a "
                                   "TorchScript module returning a list of [B,C,H,W] feature maps");
DEFINE_string(enc_widths, "16,32,64", "resnet encoder: channels per stage");
DEFINE_string(enc_blocks, "2,2,2", "resnet encoder: basic blocks per stage");
DEFINE_int64(enc_groups, 8, "resnet encoder: GroupNorm groups");
DEFINE_int64(enc_in_channels, 0, "resnet encoder: input channels (0: the data set's)");
DEFINE_int64(enc_init_seed, 0, "resnet encoder: seed of the random initialisation (--encoder=resnet)");

namespace driftlab::models {
namespace {

bool given(const char* name) {
  gflags::CommandLineFlagInfo info;
  return gflags::GetCommandLineFlagInfo(name, &info) && !info.is_default;
}

// Sets the flags to the resolved values, so the run's flag snapshot (project_flag_values, what a
// checkpoint manifest records) describes the model exactly, preset and data-set values included.
void write_back(const FlagMap& resolved) {
  for (const auto& [name, value] : resolved) {
    const std::string set = gflags::SetCommandLineOption(name.c_str(), value.c_str());
    DL_CHECK(!set.empty(), "cannot set --" << name << "=" << value);
  }
}

}  // namespace

GeneratorConfig generator_config_from_flags(const std::vector<int64_t>& data_sample_shape, int64_t data_num_classes) {
  // Only flags set on the command line (or in a flagfile) go in, so a preset is not overwritten
  // by the defaults of the flags it fills.
  FlagMap m;
  m["gen_sample_shape"] = given("gen_sample_shape") ? FLAGS_gen_sample_shape : format_int_list(data_sample_shape);
  m["gen_num_classes"] = std::to_string(given("gen_num_classes") ? FLAGS_gen_num_classes : data_num_classes);
  if (!FLAGS_gen_preset.empty()) m["gen_preset"] = FLAGS_gen_preset;
  if (given("gen_arch") || FLAGS_gen_preset.empty()) m["gen_arch"] = FLAGS_gen_arch;
  DL_REQUIRE(FLAGS_gen_preset.empty() || !given("gen_arch") || FLAGS_gen_arch == "dit",
             "--gen_preset=" << FLAGS_gen_preset << " is a dit preset but --gen_arch=" << FLAGS_gen_arch);
  auto put = [&](const char* name, const std::string& value) {
    if (given(name)) m[name] = value;
  };
  // Size flags of the small generators keep their flag defaults when no preset is used.
  auto put_or_default = [&](const char* name, const std::string& value) {
    if (given(name) || FLAGS_gen_preset.empty()) m[name] = value;
  };
  put_or_default("gen_width", std::to_string(FLAGS_gen_width));
  put_or_default("gen_depth", std::to_string(FLAGS_gen_depth));
  put_or_default("gen_heads", std::to_string(FLAGS_gen_heads));
  put_or_default("gen_patch", std::to_string(FLAGS_gen_patch));
  m["gen_noise_dim"] = std::to_string(FLAGS_gen_noise_dim);
  m["gen_cond_dim"] = std::to_string(FLAGS_gen_cond_dim);
  m["gen_context_tokens"] = std::to_string(FLAGS_gen_context_tokens);
  m["gen_style_tokens"] = std::to_string(FLAGS_gen_style_tokens);
  m["gen_style_codebook"] = std::to_string(FLAGS_gen_style_codebook);
  m["gen_init_seed"] = std::to_string(FLAGS_gen_init_seed);
  put("gen_mlp_ratio", std::to_string(FLAGS_gen_mlp_ratio));
  auto cfg = GeneratorConfig::from_map(m);
  write_back(cfg.to_map());
  return cfg;
}

EncoderConfig encoder_config_from_flags(int64_t data_channels) {
  FlagMap m;
  if (FLAGS_encoder == "identity" || FLAGS_encoder == "resnet") {
    m["enc_kind"] = FLAGS_encoder;
  } else {
    m["enc_kind"] = encoder_file_kind(FLAGS_encoder);
    m["enc_path"] = FLAGS_encoder;
  }
  m["enc_widths"] = FLAGS_enc_widths;
  m["enc_blocks"] = FLAGS_enc_blocks;
  m["enc_groups"] = std::to_string(FLAGS_enc_groups);
  m["enc_in_channels"] = std::to_string(FLAGS_enc_in_channels > 0 ? FLAGS_enc_in_channels : data_channels);
  m["enc_init_seed"] = std::to_string(FLAGS_enc_init_seed);
  auto cfg = EncoderConfig::from_map(m);
  FlagMap resolved = cfg.to_map();
  resolved.erase("enc_kind");  // --encoder keeps naming the file (or identity / resnet)
  resolved.erase("enc_path");
  write_back(resolved);
  return cfg;
}

}  // namespace driftlab::models
