// The three generator architectures, their factory, input drawing and file save/load.
#include "models/generators.h"

#include <cmath>
#include <cstdio>
#include <numeric>

#include "common/check.h"
#include "common/precision.h"
#include "models/seeded_init.h"

namespace driftlab::models {
namespace {

namespace F = torch::nn::functional;

// alpha lives in [1, ~10]; a diffusion timestep embedding expects values spread over [0, 1000],
// so alpha is scaled before the sinusoids or only the fastest frequencies would vary with it.
constexpr double kAlphaScale = 250.0;
constexpr int64_t kFreqDim = 256;      // sinusoid size of the alpha embedding (as DiT's timestep)
constexpr int64_t kMlpFreqDim = 64;    // the same for the small generators
constexpr double kRopeTheta = 10000.0;
constexpr double kNormEps = 1e-6;

const char* kConfigKey = "driftlab_generator_config";

int64_t product(const std::vector<int64_t>& v) {
  return std::accumulate(v.begin(), v.end(), int64_t{1}, std::multiplies<int64_t>());
}


void init_linear(torch::nn::Linear& l, bool zero = false) {
  torch::NoGradGuard ng;
  if (zero) {
    l->weight.zero_();
  } else {
    torch::nn::init::xavier_uniform_(l->weight);
  }
  if (l->bias.defined()) l->bias.zero_();
}

torch::Tensor rms_norm(const torch::Tensor& x, const torch::Tensor& weight = {}) {
  auto y = x * torch::rsqrt(x.pow(2).mean(-1, /*keepdim=*/true) + kNormEps);
  return weight.defined() ? y * weight : y;
}

// ---- mlp -------------------------------------------------------------------------------------

class MlpGeneratorImpl : public GeneratorImpl {
 public:
  explicit MlpGeneratorImpl(const GeneratorConfig& cfg) : GeneratorImpl(cfg) {
    class_emb_ = register_module("class_emb", torch::nn::Embedding(cfg.num_classes + 1, cfg.cond_dim));
    alpha_mlp_ = register_module(
        "alpha_mlp", torch::nn::Sequential(torch::nn::Linear(kMlpFreqDim, cfg.cond_dim), torch::nn::SiLU(),
                                           torch::nn::Linear(cfg.cond_dim, cfg.cond_dim)));
    if (cfg.noise_categories > 0)
      category_emb_ = register_module("category_emb", torch::nn::Embedding(cfg.noise_categories, cfg.cond_dim));
    int64_t in = cfg.noise_dim + cfg.cond_dim;
    for (int64_t i = 0; i < cfg.depth; ++i) {
      net_->push_back(torch::nn::Linear(in, cfg.width));
      net_->push_back(torch::nn::SiLU());
      in = cfg.width;
    }
    net_->push_back(torch::nn::Linear(in, product(cfg.sample_shape)));
    net_ = register_module("net", net_);
  }
  std::vector<int64_t> noise_shape() const override { return {cfg_.noise_dim}; }
  // The discrete part of the noise travels as one style index per row.
  int64_t style_tokens() const override { return cfg_.noise_categories > 0 ? 1 : 0; }
  int64_t style_codebook() const override { return cfg_.noise_categories; }

 protected:
  torch::Tensor generate(const torch::Tensor& noise, const torch::Tensor& labels, const torch::Tensor& alpha,
                         const torch::Tensor& style) override {
    auto cond = class_emb_(labels) + alpha_mlp_->forward(sinusoidal_embedding(alpha * kAlphaScale, kMlpFreqDim));
    // A learned vector per category added to the conditioning: the generator is a separate
    // continuous map per category, so K categories can land on K separated pieces of the data
    // without a bridge of samples between them.
    if (category_emb_) cond = cond + category_emb_(style.select(1, 0));
    // Every layer but the output one (in fp32 under bf16 autocast: see Fp32Scope).
    auto h = torch::cat({noise, cond}, 1);
    auto layer = net_->begin();
    for (size_t i = 0; i + 1 < net_->size(); ++i, ++layer) h = layer->forward(h);
    torch::Tensor out;
    {
      Fp32Scope fp32;
      out = layer->forward(as_fp32(h));
    }
    std::vector<int64_t> shape{noise.size(0)};
    shape.insert(shape.end(), cfg_.sample_shape.begin(), cfg_.sample_shape.end());
    return out.view(shape);
  }

 private:
  torch::nn::Embedding class_emb_{nullptr}, category_emb_{nullptr};
  torch::nn::Sequential alpha_mlp_{nullptr};
  torch::nn::Sequential net_;
};

// ---- conv ------------------------------------------------------------------------------------

int64_t norm_groups(int64_t channels, int64_t wanted = 8) { return std::gcd(channels, wanted); }

// Residual block whose first normalisation is scaled and shifted by the conditioning (FiLM).
class FilmResBlockImpl : public torch::nn::Module {
 public:
  FilmResBlockImpl(int64_t cin, int64_t cout, int64_t cond_dim)
      : n1_(register_module("n1", torch::nn::GroupNorm(norm_groups(cin), cin))),
        n2_(register_module("n2", torch::nn::GroupNorm(norm_groups(cout), cout))),
        c1_(register_module("c1", torch::nn::Conv2d(torch::nn::Conv2dOptions(cin, cout, 3).padding(1)))),
        c2_(register_module("c2", torch::nn::Conv2d(torch::nn::Conv2dOptions(cout, cout, 3).padding(1)))),
        film_(register_module("film", torch::nn::Linear(cond_dim, 2 * cin))) {
    if (cin != cout) skip_ = register_module("skip", torch::nn::Conv2d(torch::nn::Conv2dOptions(cin, cout, 1)));
    init_linear(film_, /*zero=*/true);  // starts as plain GroupNorm: conditioning is learned in
  }
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& cond) {
    auto ss = film_(cond).unsqueeze(-1).unsqueeze(-1).chunk(2, 1);
    auto h = n1_(as_fp32(x)) * (1 + ss[0]) + ss[1];  // GroupNorm in fp32 (see encoders.cpp)
    h = c1_(torch::silu(h));
    h = c2_(torch::silu(n2_(as_fp32(h))));
    return (skip_ ? skip_(x) : x) + h;
  }

 private:
  torch::nn::GroupNorm n1_, n2_;
  torch::nn::Conv2d c1_, c2_, skip_{nullptr};
  torch::nn::Linear film_;
};
TORCH_MODULE(FilmResBlock);

class ConvGeneratorImpl : public GeneratorImpl {
 public:
  explicit ConvGeneratorImpl(const GeneratorConfig& cfg) : GeneratorImpl(cfg) {
    const int64_t w = cfg.width, c = cfg.sample_shape[0];
    h4_ = cfg.sample_shape[1] / 4;
    w4_ = cfg.sample_shape[2] / 4;
    class_emb_ = register_module("class_emb", torch::nn::Embedding(cfg.num_classes + 1, cfg.cond_dim));
    alpha_mlp_ = register_module(
        "alpha_mlp", torch::nn::Sequential(torch::nn::Linear(kMlpFreqDim, cfg.cond_dim), torch::nn::SiLU(),
                                           torch::nn::Linear(cfg.cond_dim, cfg.cond_dim)));
    stem_ = register_module("stem", torch::nn::Linear(cfg.noise_dim + cfg.cond_dim, 2 * w * h4_ * w4_));
    b0_ = register_module("b0", FilmResBlock(2 * w, 2 * w, cfg.cond_dim));
    b1_ = register_module("b1", FilmResBlock(2 * w, w, cfg.cond_dim));
    b2_ = register_module("b2", FilmResBlock(w, w, cfg.cond_dim));
    out_norm_ = register_module("out_norm", torch::nn::GroupNorm(norm_groups(w), w));
    out_ = register_module("out", torch::nn::Conv2d(torch::nn::Conv2dOptions(w, c, 3).padding(1)));
  }
  std::vector<int64_t> noise_shape() const override { return {cfg_.noise_dim}; }

 protected:
  torch::Tensor generate(const torch::Tensor& noise, const torch::Tensor& labels, const torch::Tensor& alpha,
                         const torch::Tensor&) override {
    auto cond = class_emb_(labels) + alpha_mlp_->forward(sinusoidal_embedding(alpha * kAlphaScale, kMlpFreqDim));
    auto h = stem_(torch::cat({noise, cond}, 1)).view({noise.size(0), 2 * cfg_.width, h4_, w4_});
    h = b0_(h, cond);
    h = b1_(torch::upsample_nearest2d(h, {2 * h4_, 2 * w4_}), cond);
    h = b2_(torch::upsample_nearest2d(h, {4 * h4_, 4 * w4_}), cond);
    Fp32Scope fp32;  // the output layer in fp32 under bf16 autocast
    return out_(torch::silu(out_norm_(as_fp32(h))));
  }

 private:
  int64_t h4_ = 0, w4_ = 0;
  torch::nn::Embedding class_emb_{nullptr};
  torch::nn::Sequential alpha_mlp_{nullptr};
  torch::nn::Linear stem_{nullptr};
  FilmResBlock b0_{nullptr}, b1_{nullptr}, b2_{nullptr};
  torch::nn::GroupNorm out_norm_{nullptr};
  torch::nn::Conv2d out_{nullptr};
};

// ---- dit -------------------------------------------------------------------------------------

// Rotation of the 2-D rotary embedding: the head is split in quarters (a, b | c, d); (a, b) turn
// with the row position, (c, d) with the column position, each pair by the angle in cos/sin.
torch::Tensor rotate_2d(const torch::Tensor& x) {
  auto q = x.chunk(4, -1);
  return torch::cat({-q[1], q[0], -q[3], q[2]}, -1);
}

class AttentionImpl : public torch::nn::Module {
 public:
  AttentionImpl(int64_t dim, int64_t heads)
      : heads_(heads),
        head_dim_(dim / heads),
        qkv_(register_module("qkv", torch::nn::Linear(dim, 3 * dim))),
        proj_(register_module("proj", torch::nn::Linear(dim, dim))),
        q_norm_(register_parameter("q_norm", torch::ones({dim / heads}))),
        k_norm_(register_parameter("k_norm", torch::ones({dim / heads}))) {
    init_linear(qkv_);
    init_linear(proj_);
  }
  // x [B, N, D]; cos/sin [N, head_dim] (identity rows for tokens without a grid position).
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin) {
    const int64_t b = x.size(0), n = x.size(1);
    auto qkv = qkv_(x).view({b, n, 3, heads_, head_dim_}).permute({2, 0, 3, 1, 4});
    // QK-norm bounds the attention logits, which keeps large models stable without warm-up tricks.
    auto q = rms_norm(qkv[0], q_norm_), k = rms_norm(qkv[1], k_norm_), v = qkv[2];
    q = q * cos + rotate_2d(q) * sin;
    k = k * cos + rotate_2d(k) * sin;
    auto att = torch::softmax(torch::matmul(q, k.transpose(-2, -1)) / std::sqrt(static_cast<double>(head_dim_)), -1);
    auto y = torch::matmul(att, v).transpose(1, 2).reshape({b, n, heads_ * head_dim_});
    return proj_(y);
  }

 private:
  int64_t heads_, head_dim_;
  torch::nn::Linear qkv_, proj_;
  torch::Tensor q_norm_, k_norm_;
};
TORCH_MODULE(Attention);

class SwiGluImpl : public torch::nn::Module {
 public:
  SwiGluImpl(int64_t dim, int64_t hidden)
      : w12_(register_module("w12", torch::nn::Linear(dim, 2 * hidden))),
        w3_(register_module("w3", torch::nn::Linear(hidden, dim))) {
    init_linear(w12_);
    init_linear(w3_);
  }
  torch::Tensor forward(const torch::Tensor& x) {
    auto h = w12_(x).chunk(2, -1);
    return w3_(torch::silu(h[0]) * h[1]);
  }

 private:
  torch::nn::Linear w12_, w3_;
};
TORCH_MODULE(SwiGlu);

// Transformer block with adaLN-zero: the conditioning sets shift/scale of both norms and gates of
// both residual branches; the gates start at zero, so every block starts as the identity.
class DitBlockImpl : public torch::nn::Module {
 public:
  DitBlockImpl(int64_t dim, int64_t heads, int64_t mlp_hidden)
      : attn_(register_module("attn", Attention(dim, heads))),
        mlp_(register_module("mlp", SwiGlu(dim, mlp_hidden))),
        ada_(register_module("ada", torch::nn::Linear(dim, 6 * dim))) {
    init_linear(ada_, /*zero=*/true);
  }
  torch::Tensor forward(torch::Tensor x, const torch::Tensor& c, const torch::Tensor& cos, const torch::Tensor& sin) {
    auto m = ada_(torch::silu(c)).unsqueeze(1).chunk(6, -1);
    x = x + m[2] * attn_(rms_norm(x) * (1 + m[1]) + m[0], cos, sin);
    x = x + m[5] * mlp_(rms_norm(x) * (1 + m[4]) + m[3]);
    return x;
  }

 private:
  Attention attn_;
  SwiGlu mlp_;
  torch::nn::Linear ada_;
};
TORCH_MODULE(DitBlock);

class DitGeneratorImpl : public GeneratorImpl {
 public:
  explicit DitGeneratorImpl(const GeneratorConfig& cfg) : GeneratorImpl(cfg) {
    const int64_t d = cfg.width, c = cfg.sample_shape[0], p = cfg.patch;
    gh_ = cfg.sample_shape[1] / p;
    gw_ = cfg.sample_shape[2] / p;
    patch_embed_ = register_module("patch_embed", torch::nn::Conv2d(torch::nn::Conv2dOptions(c, d, p).stride(p)));
    class_emb_ = register_module("class_emb", torch::nn::Embedding(cfg.num_classes + 1, d));
    alpha_in_ = register_module("alpha_in", torch::nn::Linear(kFreqDim, d));
    alpha_out_ = register_module("alpha_out", torch::nn::Linear(d, d));
    if (cfg.style_tokens > 0)
      style_codebooks_ = register_parameter("style_codebooks", torch::zeros({cfg.style_tokens, cfg.style_codebook, d}));
    if (cfg.context_tokens > 0) {
      context_pos_ = register_parameter("context_pos", torch::zeros({cfg.context_tokens, d}));
      context_proj_ = register_module("context_proj", torch::nn::Linear(d, d));
      init_linear(context_proj_);
    }
    for (int64_t i = 0; i < cfg.depth; ++i)
      blocks_.push_back(register_module("block" + std::to_string(i), DitBlock(d, cfg.heads, cfg.swiglu_hidden())));
    final_ada_ = register_module("final_ada", torch::nn::Linear(d, 2 * d));
    final_linear_ = register_module("final_linear", torch::nn::Linear(d, p * p * c));

    torch::NoGradGuard ng;
    auto w = patch_embed_->weight.view({d, -1});
    torch::nn::init::xavier_uniform_(w);
    patch_embed_->bias.zero_();
    torch::nn::init::normal_(class_emb_->weight, 0.0, 0.02);
    torch::nn::init::normal_(alpha_in_->weight, 0.0, 0.02);
    torch::nn::init::normal_(alpha_out_->weight, 0.0, 0.02);
    alpha_in_->bias.zero_();
    alpha_out_->bias.zero_();
    if (style_codebooks_.defined()) torch::nn::init::normal_(style_codebooks_, 0.0, 0.02);
    if (context_pos_.defined()) torch::nn::init::normal_(context_pos_, 0.0, 0.02);
    init_linear(final_ada_, /*zero=*/true);
    init_linear(final_linear_, /*zero=*/true);
    build_rope_tables();
  }
  std::vector<int64_t> noise_shape() const override { return cfg_.sample_shape; }
  int64_t style_tokens() const override { return cfg_.style_tokens; }

 protected:
  torch::Tensor generate(const torch::Tensor& noise, const torch::Tensor& labels, const torch::Tensor& alpha,
                         const torch::Tensor& style) override {
    const int64_t b = noise.size(0), d = cfg_.width, p = cfg_.patch, ch = cfg_.sample_shape[0];
    auto x = patch_embed_(noise).flatten(2).transpose(1, 2);  // [B, T, D], row-major grid order
    auto c = class_emb_(labels) +
             alpha_out_(torch::silu(alpha_in_(sinusoidal_embedding(alpha * kAlphaScale, kFreqDim))));
    if (style_codebooks_.defined()) {
      // Token s picks row style[:, s] of its own codebook s; the picks are summed into c, so the
      // randomness enters every block through adaLN without lengthening the sequence.
      auto offsets = torch::arange(cfg_.style_tokens, style.options()) * cfg_.style_codebook;
      auto flat = style_codebooks_.view({-1, d}).index_select(0, (style + offsets).view(-1));
      c = c + flat.view({b, cfg_.style_tokens, d}).sum(1);
    }
    if (context_pos_.defined()) x = torch::cat({context_pos_.unsqueeze(0) + context_proj_(c).unsqueeze(1), x}, 1);
    auto cos = cos_.to(x.device(), x.scalar_type()), sin = sin_.to(x.device(), x.scalar_type());
    for (auto& blk : blocks_) x = blk(x, c, cos, sin);
    auto m = final_ada_(torch::silu(c)).unsqueeze(1).chunk(2, -1);
    {
      Fp32Scope fp32;  // the output layer in fp32 under bf16 autocast
      x = final_linear_(as_fp32(rms_norm(x) * (1 + m[1]) + m[0]));
    }
    x = x.narrow(1, cfg_.context_tokens, gh_ * gw_);  // drop the in-context tokens
    // [B, gh*gw, p*p*C] -> [B, C, gh*p, gw*p]
    return x.view({b, gh_, gw_, p, p, ch}).permute({0, 5, 1, 3, 2, 4}).reshape({b, ch, gh_ * p, gw_ * p});
  }

 private:
  void build_rope_tables() {
    const int64_t hd = cfg_.width / cfg_.heads, quarter = hd / 4, n = cfg_.context_tokens + gh_ * gw_;
    auto inv_freq = torch::pow(kRopeTheta, -torch::arange(quarter, torch::kDouble) / static_cast<double>(quarter));
    auto idx = torch::arange(gh_ * gw_, torch::kLong);
    auto row = (idx / gw_).to(torch::kDouble).unsqueeze(1) * inv_freq;  // [T, quarter]
    auto col = (idx % gw_).to(torch::kDouble).unsqueeze(1) * inv_freq;
    auto ang = torch::cat({row, row, col, col}, 1);                       // [T, hd]
    // In-context tokens have learned positions instead: angle 0, i.e. no rotation.
    ang = torch::cat({torch::zeros({cfg_.context_tokens, hd}, torch::kDouble), ang}, 0);
    DL_CHECK(ang.size(0) == n, "rope table rows");
    cos_ = ang.cos().to(torch::kFloat);
    sin_ = ang.sin().to(torch::kFloat);
  }

  int64_t gh_ = 0, gw_ = 0;
  torch::nn::Conv2d patch_embed_{nullptr};
  torch::nn::Embedding class_emb_{nullptr};
  torch::nn::Linear alpha_in_{nullptr}, alpha_out_{nullptr}, context_proj_{nullptr};
  torch::Tensor style_codebooks_, context_pos_;
  std::vector<DitBlock> blocks_;
  torch::nn::Linear final_ada_{nullptr}, final_linear_{nullptr};
  torch::Tensor cos_, sin_;  // not registered: derived from the config, never saved
};

}  // namespace

GeneratorImpl::GeneratorImpl(GeneratorConfig cfg) : cfg_(std::move(cfg)) {}

torch::Tensor GeneratorImpl::forward(const torch::Tensor& noise, const torch::Tensor& labels,
                                     const torch::Tensor& alpha, const torch::Tensor& style) {
  const auto ns = noise_shape();
  DL_REQUIRE(noise.defined() && noise.dim() == static_cast<int64_t>(ns.size()) + 1 &&
                 noise.sizes().slice(1).vec() == ns && noise.is_floating_point(),
             "generator (" << cfg_.arch << ") noise: expected float [B, " << format_int_list(ns) << "], got "
                           << (noise.defined() ? noise.sizes() : at::IntArrayRef{}));
  const int64_t b = noise.size(0);
  DL_REQUIRE(labels.defined() && labels.dim() == 1 && labels.size(0) == b && labels.scalar_type() == torch::kLong,
             "generator labels: expected int64 [" << b << "]");
  if (b > 0) {
    DL_REQUIRE(labels.min().item<int64_t>() >= 0 && labels.max().item<int64_t>() <= cfg_.num_classes,
               "generator labels: class ids must lie in [0, " << cfg_.num_classes << "] (" << cfg_.num_classes
                                                             << " = unconditional)");
  }
  DL_REQUIRE(alpha.defined() && alpha.dim() == 1 && alpha.size(0) == b && alpha.is_floating_point(),
             "generator alpha: expected float [" << b << "]");
  if (style_tokens() > 0) {
    DL_REQUIRE(style.defined() && style.dim() == 2 && style.size(0) == b && style.size(1) == style_tokens() &&
                   style.scalar_type() == torch::kLong,
               "generator style: expected int64 [" << b << ", " << style_tokens()
                                                   << "] (draw it with draw_generator_inputs)");
    if (b > 0) {
      DL_REQUIRE(style.min().item<int64_t>() >= 0 && style.max().item<int64_t>() < style_codebook(),
                 "generator style: indices must lie in [0, " << style_codebook() << ")");
    }
  }
  return generate(noise, labels, alpha.to(noise.scalar_type()), style);
}

torch::Tensor sinusoidal_embedding(const torch::Tensor& t, int64_t dim, double max_period) {
  const int64_t half = dim / 2;
  auto freqs = torch::exp(-std::log(max_period) * torch::arange(half, t.options().dtype(torch::kFloat)) /
                          static_cast<double>(half));
  auto args = t.to(torch::kFloat).unsqueeze(1) * freqs.unsqueeze(0);
  auto emb = torch::cat({torch::cos(args), torch::sin(args)}, 1);
  if (dim % 2) emb = torch::cat({emb, torch::zeros_like(emb.narrow(1, 0, 1))}, 1);
  return emb.to(t.scalar_type());
}

GeneratorPtr make_generator(const GeneratorConfig& cfg) {
  cfg.validate();
  SeededInit seeded(cfg.init_seed);
  if (cfg.arch == "mlp") return std::make_shared<MlpGeneratorImpl>(cfg);
  if (cfg.arch == "conv") return std::make_shared<ConvGeneratorImpl>(cfg);
  return std::make_shared<DitGeneratorImpl>(cfg);
}

int64_t count_parameters(const torch::nn::Module& m) {
  int64_t n = 0;
  for (const auto& p : m.parameters()) n += p.numel();
  return n;
}

GeneratorInputs draw_generator_inputs(const GeneratorImpl& gen, uint64_t seed, rng::Stream noise_stream,
                                      uint64_t step, int64_t first_index, int64_t rows) {
  DL_REQUIRE(rows >= 0 && first_index >= 0, "draw_generator_inputs: rows=" << rows << " first_index=" << first_index);
  GeneratorInputs in;
  in.noise = rng::normal_rows(seed, noise_stream, step, first_index, rows, gen.noise_shape());
  const int64_t s = gen.style_tokens();
  if (s > 0) {
    in.style = torch::empty({rows, s}, torch::kLong);
    auto* out = in.style.data_ptr<int64_t>();
    const auto k = static_cast<uint64_t>(gen.style_codebook());
    // The noise stream is folded into the key so training and sampling styles never alias.
    const uint64_t style_seed = seed ^ (static_cast<uint64_t>(noise_stream) << 40);
    for (int64_t r = 0; r < rows; ++r) {
      rng::Draw draw(rng::Key{style_seed, rng::Stream::kStyle, step, static_cast<uint64_t>(first_index + r)});
      for (int64_t j = 0; j < s; ++j) out[r * s + j] = static_cast<int64_t>(draw.below(k));
    }
  }
  return in;
}

void save_generator(const GeneratorImpl& gen, const std::string& path) {
  torch::serialize::OutputArchive ar;
  ar.write(kConfigKey, c10::IValue(gen.config().to_text()));
  gen.save(ar);
  const std::string tmp = path + ".tmp";
  try {
    ar.save_to(tmp);
  } catch (const c10::Error& e) {
    DL_REQUIRE(false, "cannot write generator file " << tmp << ": " << e.what_without_backtrace());
  }
  DL_REQUIRE(std::rename(tmp.c_str(), path.c_str()) == 0, "cannot rename " << tmp << " to " << path);
}

GeneratorPtr load_generator(const std::string& path) {
  torch::serialize::InputArchive ar;
  try {
    ar.load_from(path, torch::Device(torch::kCPU));
  } catch (const c10::Error& e) {
    DL_REQUIRE(false, "generator file " << path << ": cannot read it (expected a file written by save_generator): "
                                        << e.what_without_backtrace());
  }
  c10::IValue v;
  DL_REQUIRE(ar.try_read(kConfigKey, v) && v.isString(),
             "generator file " << path << ": no " << kConfigKey << " entry (not written by save_generator)");
  auto gen = make_generator(GeneratorConfig::from_text(v.toStringRef()));
  try {
    gen->load(ar);
  } catch (const c10::Error& e) {
    DL_REQUIRE(false, "generator file " << path << ": parameters do not match its config: " << e.what_without_backtrace());
  }
  return gen;
}

}  // namespace driftlab::models
