// Spec helpers and the stored <-> decoded mapping (see format.h).
#include "data/format.h"

#include <torch/torch.h>

#include <cmath>
#include <cstdio>
#include <sstream>

#include "common/check.h"

namespace driftlab::data {

std::string kind_name(SampleKind kind) {
  switch (kind) {
    case SampleKind::kImage: return "image";
    case SampleKind::kPoints: return "points";
    case SampleKind::kTensor: return "tensor";
  }
  return "?";
}

SampleKind parse_kind(const std::string& name, const std::string& what) {
  if (name == "image") return SampleKind::kImage;
  if (name == "points") return SampleKind::kPoints;
  if (name == "tensor") return SampleKind::kTensor;
  DL_REQUIRE(false, what << ": unknown kind '" << name << "' (expected image, points or tensor)");
  return SampleKind::kPoints;
}

torch::ScalarType DatasetSpec::stored_dtype() const {
  return kind == SampleKind::kImage ? torch::kUInt8 : torch::kFloat32;
}

std::vector<int64_t> DatasetSpec::decoded_shape() const {
  if (kind == SampleKind::kImage && sample_shape.size() == 3)
    return {sample_shape[2], sample_shape[0], sample_shape[1]};
  return sample_shape;
}

int64_t DatasetSpec::sample_bytes() const {
  int64_t n = kind == SampleKind::kImage ? 1 : 4;
  for (int64_t d : sample_shape) n *= d;
  return n;
}

std::string DatasetSpec::describe() const {
  std::ostringstream os;
  os << kind_name(kind) << " [";
  for (size_t i = 0; i < sample_shape.size(); ++i) os << (i ? ", " : "") << sample_shape[i];
  os << "] " << (kind == SampleKind::kImage ? "uint8" : "float32") << ", ";
  if (num_classes > 0)
    os << num_classes << " classes";
  else
    os << "unlabelled";
  return os.str();
}

void DatasetSpec::validate(const std::string& what) const {
  DL_REQUIRE(!sample_shape.empty(), what << ": sample_shape is empty (expected at least one dimension)");
  for (int64_t d : sample_shape)
    DL_REQUIRE(d > 0, what << ": sample_shape has a dimension " << d << " (expected > 0)");
  if (kind == SampleKind::kImage) {
    DL_REQUIRE(sample_shape.size() == 3 && (sample_shape[2] == 1 || sample_shape[2] == 3 || sample_shape[2] == 4),
               what << ": an image sample_shape must be [H, W, C] with C in {1, 3, 4}, got "
                    << sample_shape.size() << " dimensions");
  }
  DL_REQUIRE(num_classes >= 0, what << ": num_classes is " << num_classes << " (expected >= 0)");
  DL_REQUIRE(class_names.empty() || static_cast<int64_t>(class_names.size()) == num_classes,
             what << ": " << class_names.size() << " class names for " << num_classes << " classes");
  DL_REQUIRE(std::isfinite(decode_shift) && std::isfinite(decode_scale) && decode_scale != 0.0,
             what << ": decode_shift " << decode_shift << " / decode_scale " << decode_scale
                  << " (expected finite numbers, scale not 0)");
}

DatasetSpec image_spec(int64_t height, int64_t width, int64_t channels, int64_t num_classes,
                       std::vector<std::string> class_names) {
  DatasetSpec s;
  s.kind = SampleKind::kImage;
  s.sample_shape = {height, width, channels};
  s.num_classes = num_classes;
  s.class_names = std::move(class_names);
  s.decode_shift = 127.5;
  s.decode_scale = 1.0 / 127.5;
  return s;
}

DatasetSpec float_spec(SampleKind kind, std::vector<int64_t> shape, int64_t num_classes,
                       std::vector<std::string> class_names) {
  DatasetSpec s;
  s.kind = kind;
  s.sample_shape = std::move(shape);
  s.num_classes = num_classes;
  s.class_names = std::move(class_names);
  return s;
}

torch::Tensor decode_samples(const DatasetSpec& spec, const torch::Tensor& stored) {
  DL_CHECK(stored.scalar_type() == spec.stored_dtype(), "decode_samples: dtype " << stored.scalar_type());
  torch::Tensor x = stored.to(torch::kFloat32);
  if (spec.decode_shift != 0.0) x = x.sub_(spec.decode_shift);
  if (spec.decode_scale != 1.0) x = x.mul_(spec.decode_scale);
  if (spec.kind == SampleKind::kImage) x = x.permute({0, 3, 1, 2}).contiguous();
  return x;
}

torch::Tensor encode_samples(const DatasetSpec& spec, const torch::Tensor& decoded) {
  std::vector<int64_t> want{decoded.size(0)};
  for (int64_t d : spec.decoded_shape()) want.push_back(d);
  DL_REQUIRE(decoded.sizes().vec() == want,
             "encode_samples: samples of shape " << decoded.sizes() << " do not match the data set's decoded shape "
                                                 << at::IntArrayRef(want));
  torch::Tensor x = decoded.detach().to(torch::kCPU, torch::kFloat64);
  if (spec.kind == SampleKind::kImage) x = x.permute({0, 2, 3, 1});
  x = x / spec.decode_scale + spec.decode_shift;
  if (spec.kind == SampleKind::kImage) return x.round().clamp(0, 255).to(torch::kUInt8).contiguous();
  return x.to(torch::kFloat32).contiguous();
}

std::string shard_file_name(int index, int count) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "shard-%05d-of-%05d.h5", index, count);
  return buf;
}

std::map<std::string, std::string> spec_to_map(const DatasetSpec& spec) {
  std::map<std::string, std::string> m;
  m["kind"] = kind_name(spec.kind);
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

DatasetSpec spec_from_map(const std::map<std::string, std::string>& m, const std::string& what) {
  auto get = [&](const std::string& k) {
    auto it = m.find(k);
    DL_REQUIRE(it != m.end(), what << ": the data set description lacks '" << k << "'");
    return it->second;
  };
  DatasetSpec spec;
  try {
    spec.kind = parse_kind(get("kind"), what);
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

}  // namespace driftlab::data
