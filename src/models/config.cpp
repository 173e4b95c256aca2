// GeneratorConfig / EncoderConfig: presets, validation, flat map and text forms (see config.h).
#include "models/config.h"

#include <cerrno>
#include <cstdlib>
#include <sstream>

#include "common/check.h"

namespace driftlab::models {
namespace {

struct DitPreset {
  const char* name;
  int64_t width, depth, heads, patch;
};

// Widths/depths/heads follow DiT/ViT sizes (B: 768x12, L: 1024x24); "/p" is the patch size.
constexpr DitPreset kDitPresets[] = {
    {"tiny", 64, 2, 2, 4},      {"S/2", 384, 12, 6, 2},     {"B/2", 768, 12, 12, 2},
    {"L/2", 1024, 24, 16, 2},   {"B/4", 768, 12, 12, 4},    {"B/16", 768, 12, 12, 16},
    {"L/16", 1024, 24, 16, 16},
};

int64_t parse_int(const std::string& s, const std::string& what) {
  errno = 0;
  char* end = nullptr;
  long long v = std::strtoll(s.c_str(), &end, 10);
  DL_REQUIRE(!s.empty() && end && *end == '\0' && errno == 0,
             what << "=" << s << ": expected an integer");
  return static_cast<int64_t>(v);
}

double parse_double(const std::string& s, const std::string& what) {
  errno = 0;
  char* end = nullptr;
  double v = std::strtod(s.c_str(), &end);
  DL_REQUIRE(!s.empty() && end && *end == '\0' && errno == 0,
             what << "=" << s << ": expected a number");
  return v;
}

const std::string* find(const FlagMap& m, const std::string& key) {
  auto it = m.find(key);
  return it == m.end() ? nullptr : &it->second;
}

void read_int(const FlagMap& m, const std::string& key, int64_t& out) {
  if (auto* v = find(m, key)) out = parse_int(*v, key);
}

std::string format_double(double v) {
  std::ostringstream os;
  os.precision(17);
  os << v;
  return os.str();
}

}  // namespace

std::vector<int64_t> parse_int_list(const std::string& text, const std::string& what) {
  std::vector<int64_t> out;
  std::string item;
  std::istringstream is(text);
  while (std::getline(is, item, ',')) out.push_back(parse_int(item, what));
  DL_REQUIRE(!out.empty(), what << "=" << text << ": expected a comma-separated list of integers");
  return out;
}

std::string format_int_list(const std::vector<int64_t>& v) {
  std::ostringstream os;
  for (size_t i = 0; i < v.size(); ++i) os << (i ? "," : "") << v[i];
  return os.str();
}

FlagMap parse_key_values(const std::string& text, const std::string& what) {
  FlagMap m;
  std::istringstream is(text);
  std::string line;
  int line_no = 0;
  while (std::getline(is, line)) {
    ++line_no;
    if (line.empty() || line[0] == '#') continue;
    auto eq = line.find('=');
    DL_REQUIRE(eq != std::string::npos && eq > 0,
               what << " line " << line_no << " '" << line << "': expected key=value");
    m[line.substr(0, eq)] = line.substr(eq + 1);
  }
  return m;
}

std::string format_key_values(const FlagMap& m) {
  std::ostringstream os;
  for (const auto& [k, v] : m) os << k << "=" << v << "\n";
  return os.str();
}

std::vector<std::string> generator_preset_names() {
  std::vector<std::string> names;
  for (const auto& p : kDitPresets) names.emplace_back(p.name);
  return names;
}

void apply_generator_preset(GeneratorConfig& cfg, const std::string& name) {
  for (const auto& p : kDitPresets) {
    if (name == p.name) {
      cfg.arch = "dit";
      cfg.preset = name;
      cfg.width = p.width;
      cfg.depth = p.depth;
      cfg.heads = p.heads;
      cfg.patch = p.patch;
      return;
    }
  }
  std::ostringstream known;
  for (const auto& n : generator_preset_names()) known << " " << n;
  DL_REQUIRE(false, "gen_preset=" << name << ": unknown preset; expected one of" << known.str());
}

int64_t GeneratorConfig::swiglu_hidden() const {
  // SwiGLU has three matrices instead of two; 2/3 keeps the MLP's parameter count (LightningDiT).
  return static_cast<int64_t>(2.0 / 3.0 * mlp_ratio * static_cast<double>(width));
}

void GeneratorConfig::validate() const {
  DL_REQUIRE(arch == "mlp" || arch == "conv" || arch == "dit",
             "gen_arch=" << arch << ": expected mlp, conv or dit");
  DL_REQUIRE(!sample_shape.empty(), "gen_sample_shape is empty: expected D or C,H,W");
  for (auto d : sample_shape)
    DL_REQUIRE(d > 0, "gen_sample_shape=" << format_int_list(sample_shape) << ": sizes must be > 0");
  DL_REQUIRE(num_classes >= 0, "gen_num_classes=" << num_classes << ": expected >= 0");
  DL_REQUIRE(width > 0, "gen_width=" << width << ": expected > 0");
  DL_REQUIRE(noise_categories >= 0, "gen_noise_categories=" << noise_categories << ": expected >= 0");
  DL_REQUIRE(noise_categories == 0 || arch == "mlp",
             "gen_noise_categories=" << noise_categories << ": only the mlp generator has a discrete noise part "
                                     << "(gen_arch=" << arch << "; dit has style tokens)");
  if (arch == "mlp") {
    DL_REQUIRE(noise_dim > 0, "gen_noise_dim=" << noise_dim << ": expected > 0");
    DL_REQUIRE(depth >= 1, "gen_depth=" << depth << ": expected >= 1 hidden layer");
    DL_REQUIRE(cond_dim > 0, "gen_cond_dim=" << cond_dim << ": expected > 0");
  } else if (arch == "conv") {
    DL_REQUIRE(sample_shape.size() == 3,
               "gen_sample_shape=" << format_int_list(sample_shape) << ": the conv generator needs C,H,W");
    DL_REQUIRE(sample_shape[1] % 4 == 0 && sample_shape[2] % 4 == 0,
               "gen_sample_shape=" << format_int_list(sample_shape)
                                   << ": the conv generator upsamples twice by 2, H and W must be multiples of 4");
    DL_REQUIRE(noise_dim > 0, "gen_noise_dim=" << noise_dim << ": expected > 0");
    DL_REQUIRE(cond_dim > 0, "gen_cond_dim=" << cond_dim << ": expected > 0");
  } else {
    DL_REQUIRE(sample_shape.size() == 3,
               "gen_sample_shape=" << format_int_list(sample_shape) << ": the dit generator needs C,H,W");
    DL_REQUIRE(patch > 0 && sample_shape[1] % patch == 0 && sample_shape[2] % patch == 0,
               "gen_patch=" << patch << ": must divide H and W of gen_sample_shape="
                            << format_int_list(sample_shape));
    DL_REQUIRE(depth >= 1, "gen_depth=" << depth << ": expected >= 1 block");
    DL_REQUIRE(heads > 0 && width % heads == 0,
               "gen_heads=" << heads << ": must divide gen_width=" << width);
    DL_REQUIRE((width / heads) % 4 == 0,
               "gen_width/gen_heads=" << width / heads
                                      << ": 2-D rotary embedding needs a head size divisible by 4");
    DL_REQUIRE(mlp_ratio > 0 && swiglu_hidden() > 0, "gen_mlp_ratio=" << mlp_ratio << ": expected > 0");
    DL_REQUIRE(context_tokens >= 0, "gen_context_tokens=" << context_tokens << ": expected >= 0");
    DL_REQUIRE(style_tokens >= 0, "gen_style_tokens=" << style_tokens << ": expected >= 0");
    DL_REQUIRE(style_tokens == 0 || style_codebook > 0,
               "gen_style_codebook=" << style_codebook << ": expected > 0 when gen_style_tokens > 0");
  }
}

FlagMap GeneratorConfig::to_map() const {
  return {
      {"gen_arch", arch},
      {"gen_preset", preset},
      {"gen_sample_shape", format_int_list(sample_shape)},
      {"gen_num_classes", std::to_string(num_classes)},
      {"gen_noise_dim", std::to_string(noise_dim)},
      {"gen_noise_categories", std::to_string(noise_categories)},
      {"gen_width", std::to_string(width)},
      {"gen_depth", std::to_string(depth)},
      {"gen_cond_dim", std::to_string(cond_dim)},
      {"gen_heads", std::to_string(heads)},
      {"gen_patch", std::to_string(patch)},
      {"gen_mlp_ratio", format_double(mlp_ratio)},
      {"gen_context_tokens", std::to_string(context_tokens)},
      {"gen_style_tokens", std::to_string(style_tokens)},
      {"gen_style_codebook", std::to_string(style_codebook)},
      {"gen_init_seed", std::to_string(init_seed)},
  };
}

GeneratorConfig GeneratorConfig::from_map(const FlagMap& m) {
  GeneratorConfig c;
  if (auto* v = find(m, "gen_preset"); v && !v->empty()) apply_generator_preset(c, *v);
  if (auto* v = find(m, "gen_arch")) c.arch = *v;
  if (auto* v = find(m, "gen_sample_shape"); v && !v->empty())
    c.sample_shape = parse_int_list(*v, "gen_sample_shape");
  read_int(m, "gen_num_classes", c.num_classes);
  read_int(m, "gen_noise_dim", c.noise_dim);
  read_int(m, "gen_noise_categories", c.noise_categories);
  read_int(m, "gen_width", c.width);
  read_int(m, "gen_depth", c.depth);
  read_int(m, "gen_cond_dim", c.cond_dim);
  read_int(m, "gen_heads", c.heads);
  read_int(m, "gen_patch", c.patch);
  if (auto* v = find(m, "gen_mlp_ratio")) c.mlp_ratio = parse_double(*v, "gen_mlp_ratio");
  read_int(m, "gen_context_tokens", c.context_tokens);
  read_int(m, "gen_style_tokens", c.style_tokens);
  read_int(m, "gen_style_codebook", c.style_codebook);
  if (auto* v = find(m, "gen_init_seed")) {
    int64_t s = parse_int(*v, "gen_init_seed");
    DL_REQUIRE(s >= 0, "gen_init_seed=" << s << ": expected >= 0");
    c.init_seed = static_cast<uint64_t>(s);
  }
  c.validate();
  return c;
}

std::string GeneratorConfig::to_text() const { return format_key_values(to_map()); }

GeneratorConfig GeneratorConfig::from_text(const std::string& text) {
  return from_map(parse_key_values(text, "generator config"));
}

void EncoderConfig::validate() const {
  DL_REQUIRE(kind == "identity" || kind == "resnet" || kind == "torchscript",
             "enc_kind=" << kind << ": expected identity, resnet or torchscript");
  if (kind == "torchscript") DL_REQUIRE(!path.empty(), "enc_kind=torchscript needs enc_path=<module file>");
  if (kind == "resnet") {
    DL_REQUIRE(in_channels > 0, "enc_in_channels=" << in_channels << ": expected > 0");
    DL_REQUIRE(!widths.empty() && widths.size() == blocks.size(),
               "enc_widths=" << format_int_list(widths) << " and enc_blocks=" << format_int_list(blocks)
                             << ": expected one width and one block count per stage");
    for (size_t s = 0; s < widths.size(); ++s) {
      DL_REQUIRE(widths[s] > 0, "enc_widths=" << format_int_list(widths) << ": widths must be > 0");
      DL_REQUIRE(blocks[s] > 0, "enc_blocks=" << format_int_list(blocks) << ": each stage needs >= 1 block");
    }
    DL_REQUIRE(groups > 0, "enc_groups=" << groups << ": expected > 0");
  }
}

FlagMap EncoderConfig::to_map() const {
  return {
      {"enc_kind", kind},
      {"enc_path", path},
      {"enc_in_channels", std::to_string(in_channels)},
      {"enc_widths", format_int_list(widths)},
      {"enc_blocks", format_int_list(blocks)},
      {"enc_groups", std::to_string(groups)},
      {"enc_init_seed", std::to_string(init_seed)},
  };
}

EncoderConfig EncoderConfig::from_map(const FlagMap& m) {
  EncoderConfig c;
  if (auto* v = find(m, "enc_kind")) c.kind = *v;
  if (auto* v = find(m, "enc_path")) c.path = *v;
  read_int(m, "enc_in_channels", c.in_channels);
  if (auto* v = find(m, "enc_widths")) c.widths = parse_int_list(*v, "enc_widths");
  if (auto* v = find(m, "enc_blocks")) c.blocks = parse_int_list(*v, "enc_blocks");
  read_int(m, "enc_groups", c.groups);
  if (auto* v = find(m, "enc_init_seed")) {
    int64_t s = parse_int(*v, "enc_init_seed");
    DL_REQUIRE(s >= 0, "enc_init_seed=" << s << ": expected >= 0");
    c.init_seed = static_cast<uint64_t>(s);
  }
  c.validate();
  return c;
}

std::string EncoderConfig::to_text() const { return format_key_values(to_map()); }

EncoderConfig EncoderConfig::from_text(const std::string& text) {
  return from_map(parse_key_values(text, "encoder config"));
}

GeneratorConfig resolve_generator(FlagMap request, const std::vector<int64_t>& data_sample_shape,
                                  int64_t data_num_classes) {
  if (!request.count("gen_sample_shape")) request["gen_sample_shape"] = format_int_list(data_sample_shape);
  if (!request.count("gen_num_classes")) request["gen_num_classes"] = std::to_string(data_num_classes);
  return GeneratorConfig::from_map(request);
}

}  // namespace driftlab::models
