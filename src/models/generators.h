// Generators: (noise, class id, guidance scale alpha, style indices) -> one sample per row, in ONE
// forward pass. Three architectures behind one interface (GeneratorImpl):
//   mlp  vectors and 2-D toys; class and alpha embeddings concatenated to the noise.
//   conv small images (28x28, 32x32); FiLM conditioning in residual blocks, fast on CPU.
//   dit  the paper's transformer: patch embedding, RMSNorm, SwiGLU, 2-D RoPE, QK-norm,
//        adaLN-zero on class + alpha (+ style), in-context conditioning tokens, random style
//        tokens from learnable codebooks.
// Every generator is unconditional-capable: class id num_classes is the "null" class.
// How a model is built is fully described by GeneratorConfig (models/config.h).
#pragma once

#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "common/rng.h"
#include "models/config.h"

namespace driftlab::models {

class GeneratorImpl : public torch::nn::Module {
 public:
  explicit GeneratorImpl(GeneratorConfig cfg);
  const GeneratorConfig& config() const { return cfg_; }

  // Shape of one row of the noise input (without the batch dimension).
  virtual std::vector<int64_t> noise_shape() const = 0;
  // Number of style indices per row (0: the style argument is not used).
  virtual int64_t style_tokens() const { return 0; }
  // Each style index lies in [0, style_codebook()).
  virtual int64_t style_codebook() const { return cfg_.style_codebook; }
  int64_t null_class() const { return cfg_.num_classes; }

  // noise [B, noise_shape...] float; labels [B] int64 in [0, num_classes] (num_classes = no
  // class); alpha [B] float (1 = no guidance); style [B, style_tokens()] int64 in
  // [0, style_codebook()) or an undefined tensor when style_tokens() == 0.
  // Returns [B, sample_shape...]. Bad shapes or ids throw UserError.
  torch::Tensor forward(const torch::Tensor& noise, const torch::Tensor& labels,
                        const torch::Tensor& alpha, const torch::Tensor& style = {});

 protected:
  virtual torch::Tensor generate(const torch::Tensor& noise, const torch::Tensor& labels,
                                 const torch::Tensor& alpha, const torch::Tensor& style) = 0;
  GeneratorConfig cfg_;
};

using GeneratorPtr = std::shared_ptr<GeneratorImpl>;

// Builds the generator the config describes, initialised deterministically from cfg.init_seed
// (the same weights on every rank and every run). Throws UserError on an invalid config.
GeneratorPtr make_generator(const GeneratorConfig& cfg);

// Number of scalar parameters (all of them; generators have no frozen parts).
int64_t count_parameters(const torch::nn::Module& m);

// The random inputs of global rows [first_index, first_index + rows) at `step`: noise from
// `noise_stream` (kNoise in training, kSample in the sampler) and style indices from kStyle.
// Each row depends only on (seed, stream, step, global index): world-size invariant.
struct GeneratorInputs {
  torch::Tensor noise;  // [rows, noise_shape...] float32, CPU
  torch::Tensor style;  // [rows, style_tokens] int64, CPU; undefined when style_tokens() == 0
};
GeneratorInputs draw_generator_inputs(const GeneratorImpl& gen, uint64_t seed, rng::Stream noise_stream,
                                      uint64_t step, int64_t first_index, int64_t rows);

// Timestep-style sinusoidal embedding of a scalar per row ([B] -> [B, dim]), as in diffusion
// models; used for alpha. Exposed for the tests.
torch::Tensor sinusoidal_embedding(const torch::Tensor& t, int64_t dim, double max_period = 10000.0);

// One self-contained file: the config text plus every parameter and buffer. load_generator
// rebuilds the module from the stored config alone; outputs are bit-identical to the saved one.
void save_generator(const GeneratorImpl& gen, const std::string& path);
GeneratorPtr load_generator(const std::string& path);

}  // namespace driftlab::models
