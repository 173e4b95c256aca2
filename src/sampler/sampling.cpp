// One-step sampling and sample pictures (see sampling.h).
#include "sampler/sampling.h"

#include <torch/torch.h>

#include <cstdio>
#include <sstream>

#include "common/check.h"

namespace driftlab::sampler {

torch::Tensor generate(models::GeneratorImpl& gen, uint64_t seed, rng::Stream stream, uint64_t step,
                       int64_t first_index, const torch::Tensor& labels, const torch::Tensor& alpha,
                       int64_t batch, torch::Device device) {
  DL_REQUIRE(labels.dim() == 1 && alpha.dim() == 1 && labels.size(0) == alpha.size(0),
             "sampling: labels and alpha must be [m] tensors of one length, got " << labels.sizes() << " and " << alpha.sizes());
  DL_REQUIRE(batch > 0, "sampling: batch size must be positive, got " << batch);
  torch::NoGradGuard no_grad;
  const bool was_training = gen.is_training();
  gen.eval();
  std::vector<torch::Tensor> out;
  const int64_t m = labels.size(0);
  for (int64_t b = 0; b < m; b += batch) {
    const int64_t rows = std::min(batch, m - b);
    auto in = models::draw_generator_inputs(gen, seed, stream, step, first_index + b, rows);
    auto style = in.style.defined() ? in.style.to(device) : torch::Tensor();
    out.push_back(gen.forward(in.noise.to(device), labels.slice(0, b, b + rows).to(device, torch::kLong),
                              alpha.slice(0, b, b + rows).to(device, torch::kFloat32), style)
                      .to(torch::kCPU, torch::kFloat32));
  }
  gen.train(was_training);
  if (out.empty()) {
    std::vector<int64_t> shape{0};
    for (int64_t d : gen.config().sample_shape) shape.push_back(d);
    return torch::empty(shape);
  }
  return torch::cat(out);
}

Image picture(const data::DatasetSpec& spec, const torch::Tensor& samples, const torch::Tensor& reference, int cols) {
  if (samples.dim() == 4) return image_grid(samples, cols, -1.f, 1.f);
  DL_REQUIRE(samples.dim() == 2 && samples.size(1) == 2,
             "pictures need images [n, C, H, W] or 2-D points [n, 2]; this data set has samples of shape "
                 << spec.describe());
  std::vector<torch::Tensor> sets{samples};
  if (reference.defined()) sets.push_back(reference);
  const auto b = Canvas::fit_bounds(sets);
  // Square axes: the same data extent per pixel in x and y, so shapes are not distorted.
  const float span = std::max(b[1] - b[0], b[3] - b[2]);
  const float cx = (b[0] + b[1]) / 2, cy = (b[2] + b[3]) / 2;
  Canvas c(640, 640, cx - span / 2, cx + span / 2, cy - span / 2, cy + span / 2);
  if (reference.defined()) c.points(reference, {150, 150, 150}, 1, 0.35f);
  c.points(samples, {30, 90, 200}, 1, 0.6f);
  return c.image();
}

std::map<std::string, std::string> spec_to_map(const data::DatasetSpec& spec) {
  std::map<std::string, std::string> m;
  m["kind"] = data::kind_name(spec.kind);
  std::string shape;
  for (size_t i = 0; i < spec.sample_shape.size(); ++i) shape += (i ? "," : "") + std::to_string(spec.sample_shape[i]);
  m["sample_shape"] = shape;
  m["num_classes"] = std::to_string(spec.num_classes);
  std::string names;
  for (size_t i = 0; i < spec.class_names.size(); ++i) names += (i ? "\n" : "") + spec.class_names[i];
  m["class_names"] = names;
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.17g", spec.decode_shift);
  m["decode_shift"] = buf;
  std::snprintf(buf, sizeof buf, "%.17g", spec.decode_scale);
  m["decode_scale"] = buf;
  m["source"] = spec.source;
  return m;
}

data::DatasetSpec spec_from_map(const std::map<std::string, std::string>& m, const std::string& what) {
  auto get = [&](const std::string& k) {
    auto it = m.find(k);
    DL_REQUIRE(it != m.end(), what << ": the data set description lacks '" << k << "'");
    return it->second;
  };
  data::DatasetSpec spec;
  try {
    spec.kind = data::parse_kind(get("kind"), what);
    std::stringstream ss(get("sample_shape"));
    std::string item;
    while (std::getline(ss, item, ',')) spec.sample_shape.push_back(std::stoll(item));
    spec.num_classes = std::stoll(get("num_classes"));
    std::stringstream ns(get("class_names"));
    while (std::getline(ns, item, '\n')) spec.class_names.push_back(item);
    spec.decode_shift = std::stod(get("decode_shift"));
    spec.decode_scale = std::stod(get("decode_scale"));
  } catch (const std::logic_error& e) {  // stoll / stod
    throw UserError(what + ": malformed data set description (" + e.what() + ")");
  }
  auto src = m.find("source");
  if (src != m.end()) spec.source = src->second;
  spec.validate(what);
  return spec;
}

}  // namespace driftlab::sampler
