// What a generator or an encoder IS (architecture and sizes), as plain values that survive a
// round trip through a flat string map or text. The map keys are drift_train's flag names
// (--gen_*, --enc_*; trainer/train_flags.cpp), so a checkpoint manifest that stores the resolved
// map (or the run's flag record) is enough for the sampler to rebuild the exact module. No
// tensors, no torch here.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace driftlab::models {

using FlagMap = std::map<std::string, std::string>;

struct GeneratorConfig {
  std::string arch = "mlp";               // mlp | conv | dit
  std::string preset;                     // dit size preset that filled width/depth/heads/patch
  std::vector<int64_t> sample_shape{2};   // one output sample: {D} or {C, H, W}
  int64_t num_classes = 0;                // class ids 0..num_classes-1; num_classes = unconditional
  int64_t noise_dim = 32;                 // mlp/conv: length of the noise vector (dit: sample shape)
  int64_t noise_categories = 0;           // mlp: one uniform index in [0, K) per sample besides the
                                          // Gaussian noise, through a learned embedding (0: none)
  int64_t width = 256;                    // mlp hidden width, conv base channels, dit hidden size
  int64_t depth = 3;                      // mlp hidden layers, dit blocks (conv: fixed layout)
  int64_t cond_dim = 64;                  // mlp/conv: class + alpha embedding size (dit: width)
  int64_t heads = 4;                      // dit attention heads
  int64_t patch = 2;                      // dit patch size
  double mlp_ratio = 4.0;                 // dit: SwiGLU hidden = int(2/3 * mlp_ratio * width)
  int64_t context_tokens = 16;            // dit in-context conditioning tokens
  int64_t style_tokens = 32;              // dit random style tokens per sample (0 = none)
  int64_t style_codebook = 64;            // entries in each style token's codebook
  uint64_t init_seed = 0;                 // parameter initialisation

  // Keys gen_arch, gen_preset, gen_sample_shape, ... (drift_train --help gives their meaning).
  FlagMap to_map() const;
  // Reads the gen_* keys of `m` (other keys are ignored, so a whole flag snapshot may be passed).
  // A preset named by gen_preset is applied first, then explicit keys override it. Throws
  // UserError naming the key on a malformed or inconsistent value.
  static GeneratorConfig from_map(const FlagMap& m);
  std::string to_text() const;                        // "key=value" lines
  static GeneratorConfig from_text(const std::string& text);
  void validate() const;                               // UserError on inconsistent sizes
  int64_t swiglu_hidden() const;                       // dit MLP hidden size
};

// The generator of a run: `request` holds the gen_* entries the user asked for (a preset and the
// keys given explicitly); gen_sample_shape and gen_num_classes default to the data set's.
// UserError naming the key on a bad or inconsistent value.
GeneratorConfig resolve_generator(FlagMap request, const std::vector<int64_t>& data_sample_shape,
                                  int64_t data_num_classes);

// Fills arch=dit and width/depth/heads/patch of a named size: tiny, S/2, B/2, L/2, B/4, B/16, L/16.
// UserError listing the known presets for an unknown name.
void apply_generator_preset(GeneratorConfig& cfg, const std::string& name);
std::vector<std::string> generator_preset_names();

struct EncoderConfig {
  std::string kind = "identity";           // identity | resnet | torchscript
  std::string path;                        // resnet: weights file from drift_encoder (optional);
                                           // torchscript: the module file (required)
  int64_t in_channels = 1;                 // resnet input channels
  std::vector<int64_t> widths{16, 32, 64};  // resnet channels per stage
  std::vector<int64_t> blocks{2, 2, 2};      // resnet basic blocks per stage
  int64_t groups = 8;                      // GroupNorm groups (clamped to divide each width)
  uint64_t init_seed = 0;

  FlagMap to_map() const;                  // keys enc_kind, enc_path, enc_in_channels, ...
  static EncoderConfig from_map(const FlagMap& m);
  std::string to_text() const;
  static EncoderConfig from_text(const std::string& text);
  void validate() const;
};

// The encoder as requested on the command line: --encoder names identity, resnet (random init,
// sizes below) or a file (a drift_encoder file or a TorchScript module); models/encoders.h
// resolves it against the data set (resolve_encoder).
struct EncoderRequest {
  std::string encoder = "identity";
  std::string widths = "16,32,64";
  std::string blocks = "2,2,2";
  int64_t groups = 8;
  int64_t in_channels = 0;  // 0: the data set's channels
  uint64_t init_seed = 0;
};

// "1,28,28" <-> {1, 28, 28}; `what` names the key or flag in the error message.
std::vector<int64_t> parse_int_list(const std::string& text, const std::string& what);
std::string format_int_list(const std::vector<int64_t>& v);

// "key=value" lines (blank lines and '#' comments skipped) <-> map.
FlagMap parse_key_values(const std::string& text, const std::string& what);
std::string format_key_values(const FlagMap& m);

}  // namespace driftlab::models
