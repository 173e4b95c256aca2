// Encoders: identity, multi-scale ResNet, TorchScript-loaded; the factory and the encoder file.
#include "models/encoders.h"

#include <torch/script.h>

#include <cstdio>
#include <fstream>
#include <numeric>
#include <sstream>

#include "common/check.h"
#include "common/precision.h"
#include "common/text.h"
#include "models/seeded_init.h"

namespace driftlab::models {
namespace {

const char* kConfigKey = "driftlab_encoder_config";


torch::nn::Conv2d conv3x3(int64_t cin, int64_t cout, int64_t stride) {
  return torch::nn::Conv2d(torch::nn::Conv2dOptions(cin, cout, 3).stride(stride).padding(1).bias(false));
}

// An external module; it owns its weights (frozen here) and is moved with the encoder.
class TorchScriptEncoderImpl : public EncoderImpl {
 public:
  TorchScriptEncoderImpl(torch::jit::Module module, std::string path)
      : module_(std::move(module)), path_(std::move(path)) {
    DL_REQUIRE(module_.find_method("forward").has_value(),
               "encoder file " << path_ << ": the TorchScript module has no forward method");
  }

  std::vector<torch::Tensor> forward(const torch::Tensor& x) override {
    c10::IValue out = module_.forward({x});
    std::vector<c10::IValue> items;
    if (out.isTensorList()) {
      for (const auto& t : out.toTensorVector()) items.emplace_back(t);
    } else if (out.isList()) {
      for (const auto& v : out.toListRef()) items.push_back(v);
    } else if (out.isTuple()) {
      for (const auto& v : out.toTupleRef().elements()) items.push_back(v);
    } else {
      DL_REQUIRE(false, "encoder file " << path_ << ": forward(x) returned " << out.tagKind()
                                        << "; expected a list or tuple of 4-D tensors [B, C, H, W]");
    }
    DL_REQUIRE(!items.empty(), "encoder file " << path_ << ": forward(x) returned an empty list; expected "
                                               << "at least one 4-D feature map");
    std::vector<torch::Tensor> maps;
    for (size_t i = 0; i < items.size(); ++i) {
      DL_REQUIRE(items[i].isTensor(), "encoder file " << path_ << ": element " << i << " of forward(x) is a "
                                                      << items[i].tagKind() << "; expected a 4-D tensor");
      auto t = items[i].toTensor();
      DL_REQUIRE(t.dim() == 4 && t.size(0) == x.size(0),
                 "encoder file " << path_ << ": element " << i << " of forward(x) has shape " << shape_string(t.sizes())
                                 << "; expected [B, C, H, W] with B = " << x.size(0));
      maps.push_back(t);
    }
    return maps;
  }

  std::string describe() const override { return "torchscript (" + path_ + ")"; }

  void freeze() override {
    for (auto p : module_.parameters()) p.requires_grad_(false);
    module_.eval();
    EncoderImpl::freeze();
  }
  void to(torch::Device device, torch::Dtype dtype, bool non_blocking) override {
    module_.to(device, dtype, non_blocking);
  }
  void to(torch::Dtype dtype, bool non_blocking) override { module_.to(dtype, non_blocking); }
  void to(torch::Device device, bool non_blocking) override { module_.to(device, non_blocking); }

 private:
  torch::jit::Module module_;
  std::string path_;
};

}  // namespace

int64_t norm_groups_for(int64_t channels, int64_t wanted) { return std::gcd(channels, wanted); }

void EncoderImpl::freeze() {
  for (auto& p : parameters()) p.requires_grad_(false);
  eval();
}

BasicBlockImpl::BasicBlockImpl(int64_t cin, int64_t cout, int64_t stride, int64_t groups) {
  c1_ = register_module("c1", conv3x3(cin, cout, stride));
  n1_ = register_module("n1", torch::nn::GroupNorm(norm_groups_for(cout, groups), cout));
  c2_ = register_module("c2", conv3x3(cout, cout, 1));
  n2_ = register_module("n2", torch::nn::GroupNorm(norm_groups_for(cout, groups), cout));
  if (stride != 1 || cin != cout) {
    proj_ = register_module("proj", torch::nn::Conv2d(torch::nn::Conv2dOptions(cin, cout, 1).stride(stride).bias(false)));
    proj_norm_ = register_module("proj_norm", torch::nn::GroupNorm(norm_groups_for(cout, groups), cout));
  }
}

torch::Tensor BasicBlockImpl::forward(const torch::Tensor& x) {
  // GroupNorm in fp32: under bf16 autocast the convolutions give bf16, which LibTorch 1.13's CPU
  // GroupNorm does not take with fp32 weights; the statistics are better in fp32 anyway.
  auto h = torch::relu(n1_(as_fp32(c1_(x))));
  h = n2_(as_fp32(c2_(h)));
  return torch::relu(h + (proj_ ? proj_norm_(as_fp32(proj_(x))) : x));
}

ResNetEncoderImpl::ResNetEncoderImpl(EncoderConfig cfg) : cfg_(std::move(cfg)) {
  cfg_.kind = "resnet";
  cfg_.validate();
  const int64_t w0 = cfg_.widths[0];
  // 3x3 stem with stride 1: small images (28x28) keep their full resolution in the first stage.
  stem_ = register_module("stem", conv3x3(cfg_.in_channels, w0, 1));
  stem_norm_ = register_module("stem_norm", torch::nn::GroupNorm(norm_groups_for(w0, cfg_.groups), w0));
  int64_t cin = w0;
  size_t n_maps = 0;
  for (size_t s = 0; s < cfg_.widths.size(); ++s) {
    std::vector<BasicBlock> stage;
    for (int64_t b = 0; b < cfg_.blocks[s]; ++b) {
      const int64_t stride = (s > 0 && b == 0) ? 2 : 1;
      stage.push_back(register_module("stage" + std::to_string(s) + "_block" + std::to_string(b),
                                      BasicBlock(cin, cfg_.widths[s], stride, cfg_.groups)));
      cin = cfg_.widths[s];
      if ((b + 1) % 2 == 0 || b + 1 == cfg_.blocks[s]) ++n_maps;
    }
    stage_outputs_.push_back(n_maps - 1);
    stages_.push_back(std::move(stage));
  }
}

std::vector<torch::Tensor> ResNetEncoderImpl::forward(const torch::Tensor& x) {
  DL_REQUIRE(x.dim() == 4 && x.size(1) == cfg_.in_channels,
             "resnet encoder input: expected [B, " << cfg_.in_channels << ", H, W], got " << shape_string(x.sizes()));
  std::vector<torch::Tensor> maps;
  auto h = torch::relu(stem_norm_(as_fp32(stem_(x))));
  for (auto& stage : stages_) {
    const auto n = static_cast<int64_t>(stage.size());
    for (int64_t b = 0; b < n; ++b) {
      h = stage[b](h);
      if ((b + 1) % 2 == 0 || b + 1 == n) maps.push_back(h);
    }
  }
  return maps;
}

std::vector<std::vector<int64_t>> ResNetEncoderImpl::feature_shapes(int64_t batch, int64_t h, int64_t w) const {
  std::vector<std::vector<int64_t>> shapes;
  for (size_t s = 0; s < stages_.size(); ++s) {
    if (s > 0) {
      h = (h - 1) / 2 + 1;  // 3x3 conv, stride 2, padding 1
      w = (w - 1) / 2 + 1;
    }
    for (int64_t b = 0; b < cfg_.blocks[s]; ++b)
      if ((b + 1) % 2 == 0 || b + 1 == cfg_.blocks[s]) shapes.push_back({batch, cfg_.widths[s], h, w});
  }
  return shapes;
}

std::string ResNetEncoderImpl::describe() const {
  std::ostringstream os;
  os << "resnet widths=" << format_int_list(cfg_.widths) << " blocks=" << format_int_list(cfg_.blocks)
     << " groups=" << cfg_.groups << " in_channels=" << cfg_.in_channels
     << (cfg_.path.empty() ? " (random init)" : " (weights " + cfg_.path + ")");
  return os.str();
}

void save_resnet_encoder(const ResNetEncoderImpl& enc, const std::string& path) {
  torch::serialize::OutputArchive ar;
  auto cfg = enc.config();
  cfg.path.clear();  // the file is where the weights are; a stored path would go stale
  ar.write(kConfigKey, c10::IValue(cfg.to_text()));
  enc.save(ar);
  const std::string tmp = path + ".tmp";
  try {
    ar.save_to(tmp);
  } catch (const c10::Error& e) {
    DL_REQUIRE(false, "cannot write encoder file " << tmp << ": " << e.what_without_backtrace());
  }
  DL_REQUIRE(std::rename(tmp.c_str(), path.c_str()) == 0, "cannot rename " << tmp << " to " << path);
}

namespace {
void open_archive(torch::serialize::InputArchive& ar, const std::string& path) {
  std::ifstream probe(path, std::ios::binary);
  DL_REQUIRE(probe.good(), "encoder file " << path << ": cannot open it");
  try {
    ar.load_from(path, torch::Device(torch::kCPU));
  } catch (const c10::Error& e) {
    DL_REQUIRE(false, "encoder file " << path << ": cannot read it (expected a drift_encoder file or a "
                                      << "TorchScript module): " << e.what_without_backtrace());
  }
}
}  // namespace

std::string encoder_file_kind(const std::string& path) {
  torch::serialize::InputArchive ar;
  open_archive(ar, path);
  c10::IValue v;
  return ar.try_read(kConfigKey, v) && v.isString() ? "resnet" : "torchscript";
}

EncoderConfig resolve_encoder(const EncoderRequest& r, int64_t data_channels) {
  FlagMap m;
  if (r.encoder == "identity" || r.encoder == "resnet") {
    m["enc_kind"] = r.encoder;
  } else {
    m["enc_kind"] = encoder_file_kind(r.encoder);
    m["enc_path"] = r.encoder;
  }
  m["enc_widths"] = r.widths;
  m["enc_blocks"] = r.blocks;
  m["enc_groups"] = std::to_string(r.groups);
  m["enc_in_channels"] = std::to_string(r.in_channels > 0 ? r.in_channels : data_channels);
  m["enc_init_seed"] = std::to_string(r.init_seed);
  return EncoderConfig::from_map(m);
}

EncoderPtr load_encoder_file(const std::string& path) {
  torch::serialize::InputArchive ar;
  open_archive(ar, path);
  c10::IValue v;
  if (ar.try_read(kConfigKey, v) && v.isString()) {
    auto cfg = EncoderConfig::from_text(v.toStringRef());
    cfg.path = path;
    SeededInit seeded(cfg.init_seed);
    auto enc = std::make_shared<ResNetEncoderImpl>(cfg);
    try {
      enc->load(ar);
    } catch (const c10::Error& e) {
      DL_REQUIRE(false, "encoder file " << path << ": weights do not match its config: " << e.what_without_backtrace());
    }
    return enc;
  }
  torch::jit::Module m;
  try {
    m = torch::jit::load(path, torch::Device(torch::kCPU));
  } catch (const c10::Error& e) {
    DL_REQUIRE(false, "encoder file " << path << ": not a TorchScript module: " << e.what_without_backtrace());
  }
  return std::make_shared<TorchScriptEncoderImpl>(std::move(m), path);
}

EncoderPtr make_encoder(const EncoderConfig& cfg) {
  cfg.validate();
  if (cfg.kind == "identity") return std::make_shared<IdentityEncoderImpl>();
  if (cfg.kind == "torchscript") {
    auto enc = load_encoder_file(cfg.path);
    DL_REQUIRE(enc->describe().rfind("torchscript", 0) == 0,
               "enc_kind=torchscript but " << cfg.path << " is a drift_encoder file; use enc_kind=resnet");
    return enc;
  }
  if (!cfg.path.empty()) {
    auto enc = load_encoder_file(cfg.path);
    auto* resnet = dynamic_cast<ResNetEncoderImpl*>(enc.get());
    DL_REQUIRE(resnet != nullptr, "enc_kind=resnet but " << cfg.path << " is a TorchScript module; use enc_kind=torchscript");
    return enc;
  }
  SeededInit seeded(cfg.init_seed);
  return std::make_shared<ResNetEncoderImpl>(cfg);
}

EncoderPtr make_frozen_encoder(const EncoderConfig& cfg) {
  auto enc = make_encoder(cfg);
  enc->freeze();
  return enc;
}

}  // namespace driftlab::models
