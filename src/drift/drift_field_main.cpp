// drift_field: the debugging view of the drifting field. Reads generated samples, positives and
// optional extra negatives (CSV or HDF5), computes V with the library, writes it (CSV or HDF5),
// prints the distance statistics and per-temperature drift figures ("is my kernel flat?") and,
// for 2-D data, draws the points with their drift arrows. The flags are read in one place
// (field_config_from_flags) into a FieldToolConfig, validated once; the work reads only that.

#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <thread>

#include <gflags/gflags.h>
#include <torch/torch.h>

#include "common/check.h"
#include "common/image.h"
#include "common/tool_main.h"
#include "data/matrix_file.h"
#include "drift/features.h"
#include "drift/field.h"

DEFINE_string(x, "", "generated samples x, one row per sample: FILE.csv, or FILE.h5[:DATASET] (a 2-D float "
                     "dataset, default name 'data'). Required");
DEFINE_string(pos, "", "positives (real samples), same formats and column count as --x. Required");
DEFINE_string(neg, "", "extra negatives appended after x (the negatives always start with x itself, "
                       "whose self pairs are masked), same formats; empty: none");
DEFINE_double(neg_weight, 1.0, "column weight of the extra negatives (CFG's w_unc); see also --alpha");
DEFINE_double(alpha, 0.0, "guidance scale: when > 0, sets the extra negatives' weight to "
                          "(alpha - 1) * (N - 1) / N_extra instead of --neg_weight (needs --neg)");
DEFINE_string(taus, driftlab::drift::kDefaultTaus, "comma-separated temperatures; one field per temperature, each "
                                     "normalized, then summed");
DEFINE_bool(floor, true, "affinity floor A = sqrt(max(a_row * a_col, 1e-6)) as in the reference code");
DEFINE_string(path, "auto", "kernel path: auto (dense when the distance matrix fits --dense_budget_mb), "
                            "dense, or tiled (two passes, memory O((N+P+Q) D + tile))");
DEFINE_int64(dense_budget_mb, 1024, "largest distance matrix, in MiB, for which --path=auto picks dense");
DEFINE_int64(tile_mb, 10, "buffers of one tile of the tiled path, in MiB");
DEFINE_string(dtype, "float32", "arithmetic precision: float32 or float64");
DEFINE_string(out, "", "write V here: FILE.csv, or FILE.h5[:DATASET] (default dataset 'V'); empty: do not write");
DEFINE_string(units, "input", "units of the written V and of the arrows: input (the displacement of x in "
                              "its own coordinates: V * s / sqrt(D)) or normalized (V as the loss sees it, "
                              "in features scaled to mean distance sqrt(D))");
DEFINE_string(png, "", "for 2-D data: draw positives (blue), extra negatives (gray), x (red) and the drift "
                       "arrows (green) into this PNG; empty: no picture");
DEFINE_double(arrow_scale, 0.0, "arrow length = arrow_scale * V (in --units); 0: automatic, the mean arrow "
                                "as long as a tenth of the mean distance s");
DEFINE_int32(png_size, 800, "width and height of the picture in pixels");
DEFINE_int32(threads, static_cast<int32_t>(std::thread::hardware_concurrency()),
             "LibTorch intra-op threads (default: all cores)");

namespace {

using namespace driftlab;
using torch::Tensor;

struct Location {
  std::string file, dataset;
  bool hdf5 = false;
};

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// "FILE.csv" | "FILE.h5[:DATASET]" | "FILE.hdf5[:DATASET]".
Location parse_location(const std::string& spec, const std::string& flag, const std::string& default_dataset) {
  Location loc;
  std::string file = spec, dataset;
  for (const char* ext : {".h5:", ".hdf5:"}) {
    const size_t at = spec.find(ext);
    if (at != std::string::npos) {
      file = spec.substr(0, at + std::string(ext).size() - 1);
      dataset = spec.substr(at + std::string(ext).size());
    }
  }
  loc.file = file;
  if (ends_with(file, ".h5") || ends_with(file, ".hdf5")) {
    loc.hdf5 = true;
    loc.dataset = dataset.empty() ? default_dataset : dataset;
  } else {
    DL_REQUIRE(ends_with(file, ".csv") || ends_with(file, ".txt"),
               "--" << flag << "=" << spec << ": expected FILE.csv or FILE.h5[:DATASET]");
  }
  return loc;
}

Tensor read_csv(const std::string& path) {
  std::ifstream in(path);
  DL_REQUIRE(in.good(), "cannot open CSV file '" << path << "'");
  std::vector<double> values;
  int64_t cols = -1, rows = 0, line_no = 0;
  std::string line;
  while (std::getline(in, line)) {
    ++line_no;
    for (char& c : line)
      if (c == ',' || c == ';' || c == '\t' || c == '\r') c = ' ';
    std::istringstream ls(line);
    std::vector<double> row;
    std::string tok;
    bool numeric = true;
    while (ls >> tok) {
      char* end = nullptr;
      const double v = std::strtod(tok.c_str(), &end);
      if (end == tok.c_str() || *end != '\0') {
        numeric = false;
        break;
      }
      row.push_back(v);
    }
    if (row.empty() && numeric) continue;              // blank line
    if (!line.empty() && line[0] == '#') continue;      // comment
    if (!numeric) {
      DL_REQUIRE(rows == 0 && cols < 0, path << ":" << line_no << ": expected numbers, got '" << line << "'");
      continue;  // a header line
    }
    if (cols < 0) cols = static_cast<int64_t>(row.size());
    DL_REQUIRE(static_cast<int64_t>(row.size()) == cols,
               path << ":" << line_no << ": expected " << cols << " values like the first row, got " << row.size());
    values.insert(values.end(), row.begin(), row.end());
    ++rows;
  }
  DL_REQUIRE(rows > 0, "CSV file '" << path << "' holds no rows of numbers");
  return torch::tensor(values, torch::kDouble).view({rows, cols});
}

Tensor read_rows(const std::string& spec, const std::string& flag) {
  const Location loc = parse_location(spec, flag, "data");
  return loc.hdf5 ? data::read_matrix_h5(loc.file, loc.dataset) : read_csv(loc.file);
}

// Written to a temporary name, then renamed: an existing output is never left half-written.
void write_rows(const Tensor& v, const std::string& spec) {
  const Location loc = parse_location(spec, "out", "V");
  const std::string tmp = loc.file + ".tmp";
  Tensor d = v.to(torch::kCPU, torch::kDouble).contiguous();
  if (loc.hdf5) {
    data::write_matrix_h5(tmp, loc.dataset, v);
  } else {
    std::FILE* f = std::fopen(tmp.c_str(), "w");
    DL_REQUIRE(f, "cannot write '" << tmp << "'");
    auto a = d.accessor<double, 2>();
    for (int64_t i = 0; i < d.size(0); ++i)
      for (int64_t j = 0; j < d.size(1); ++j) std::fprintf(f, "%.9g%c", a[i][j], j + 1 == d.size(1) ? '\n' : ',');
    DL_REQUIRE(std::fclose(f) == 0, "cannot write '" << tmp << "'");
  }
  DL_REQUIRE(std::rename(tmp.c_str(), loc.file.c_str()) == 0, "cannot rename '" << tmp << "' to '" << loc.file << "'");
}

// drift_field's configuration, typed: filled from the flags in main() only (field_config_from_flags).
struct FieldToolConfig {
  std::string x, pos, neg;       // generated samples, positives, extra negatives (empty: none)
  double neg_weight = 1.0;       // column weight of the extra negatives
  double alpha = 0.0;            // > 0: CFG weight of the extra negatives from alpha
  std::string taus = drift::kDefaultTaus;
  bool floor = true;
  std::string path = "auto";     // auto, dense or tiled
  int64_t dense_budget_mb = 1024;
  int64_t tile_mb = 10;
  std::string dtype = "float32";  // float32 or float64
  std::string out;               // V written here; empty: no
  std::string units = "input";   // input or normalized
  std::string png;               // 2-D picture; empty: no
  double arrow_scale = 0.0;      // 0: automatic
  int png_size = 800;
  int threads = 1;               // LibTorch intra-op threads (the flag's default: all cores)
};

FieldToolConfig field_config_from_flags() {
  FieldToolConfig c;
  c.x = FLAGS_x;
  c.pos = FLAGS_pos;
  c.neg = FLAGS_neg;
  c.neg_weight = FLAGS_neg_weight;
  c.alpha = FLAGS_alpha;
  c.taus = FLAGS_taus;
  c.floor = FLAGS_floor;
  c.path = FLAGS_path;
  c.dense_budget_mb = FLAGS_dense_budget_mb;
  c.tile_mb = FLAGS_tile_mb;
  c.dtype = FLAGS_dtype;
  c.out = FLAGS_out;
  c.units = FLAGS_units;
  c.png = FLAGS_png;
  c.arrow_scale = FLAGS_arrow_scale;
  c.png_size = FLAGS_png_size;
  c.threads = FLAGS_threads;
  return c;
}

void validate(const FieldToolConfig& c) {
  DL_REQUIRE(!c.x.empty(), "--x is required (the generated samples; see --help)");
  DL_REQUIRE(!c.pos.empty(), "--pos is required (the positives; see --help)");
  DL_REQUIRE(c.threads >= 1, "--threads must be >= 1, got " << c.threads);
  DL_REQUIRE(c.units == "input" || c.units == "normalized",
             "--units must be input or normalized, got '" << c.units << "'");
  DL_REQUIRE(c.dtype == "float32" || c.dtype == "float64",
             "--dtype must be float32 or float64, got '" << c.dtype << "'");
  DL_REQUIRE(c.png_size >= 64, "--png_size must be >= 64, got " << c.png_size);
  DL_REQUIRE(c.alpha == 0 || c.alpha >= 1, "--alpha must be >= 1 (or 0: unused), got " << c.alpha);
  DL_REQUIRE(c.neg_weight >= 0, "--neg_weight must be >= 0, got " << c.neg_weight);
  DL_REQUIRE(c.dense_budget_mb >= 0 && c.tile_mb >= 1, "--dense_budget_mb must be >= 0 and --tile_mb >= 1");
  DL_REQUIRE(c.png.empty() || c.arrow_scale >= 0, "--arrow_scale must be >= 0, got " << c.arrow_scale);
}

int run(const FieldToolConfig& c) {
  validate(c);
  torch::set_num_threads(c.threads);
  const auto dtype = c.dtype == "float64" ? torch::kDouble : torch::kFloat;

  Tensor x = read_rows(c.x, "x").to(dtype);
  Tensor pos = read_rows(c.pos, "pos").to(dtype);
  Tensor extra = c.neg.empty() ? Tensor() : read_rows(c.neg, "neg").to(dtype);
  const int64_t N = x.size(0), D = x.size(1);
  DL_REQUIRE(pos.size(1) == D, "--pos has " << pos.size(1) << " columns but --x has " << D);
  if (extra.defined()) DL_REQUIRE(extra.size(1) == D, "--neg has " << extra.size(1) << " columns but --x has " << D);
  DL_REQUIRE(c.alpha == 0 || extra.defined(), "--alpha needs extra negatives (--neg)");

  drift::Problem p;
  p.x = x, p.y_pos = pos;
  p.y_neg = extra.defined() ? torch::cat({x, extra}, 0) : x;
  double w_extra = c.neg_weight;
  if (extra.defined()) {
    if (c.alpha > 0) w_extra = drift::cfg_unconditional_weight(c.alpha, N, extra.size(0));
    p.w_neg = torch::cat({torch::ones({N}, dtype), torch::full({extra.size(0)}, w_extra, dtype)});
  }
  drift::FieldOptions o;
  o.taus = drift::parse_taus(c.taus);
  o.floor = c.floor;
  o.path = drift::parse_path(c.path);
  o.dense_budget_bytes = c.dense_budget_mb << 20;
  o.tile_bytes = c.tile_mb << 20;
  o.compute_entropy = true;
  const drift::FieldResult f = drift::drift_field(p, o);

  const double s = f.scale;
  const double to_input = s / std::sqrt(static_cast<double>(D));
  std::printf("x %lld x %lld, positives %lld, negatives %lld (x itself, self pairs masked, + %lld extra with weight %g)\n",
              (long long)N, (long long)D, (long long)pos.size(0), (long long)p.y_neg.size(0),
              (long long)(extra.defined() ? extra.size(0) : 0), extra.defined() ? w_extra : 0.0);
  std::printf("path %s\n", drift::path_name(f.path));
  std::printf("distances x -> targets: min %.6g  mean (= scale s) %.6g  max %.6g\n", f.distances.min, s,
              f.distances.max);
  std::printf("nearest target per x: mean %.6g = %.4f s\n", f.distances.nn_mean, f.distances.nn_mean / s);
  const double max_entropy = std::log(static_cast<double>(pos.size(0) + p.y_neg.size(0) - 1));
  std::printf("\n%10s %16s %12s %14s %12s\n", "tau", "mean|V_tau| raw", "lambda", "nn gap/tau", "flatness");
  for (size_t t = 0; t < o.taus.size(); ++t)
    std::printf("%10g %16.6g %12.6g %14.4g %12.3f\n", o.taus[t], f.raw_drift_norm[t], f.lambda[t],
                f.distances.nn_mean / s / o.taus[t], f.entropy[t] / max_entropy);
  std::printf("  (raw: before the per-temperature normalization, in normalized-feature units; nn gap/tau: the\n"
              "   nearest-target distance over s, divided by tau, large means a peaked kernel; flatness: mean\n"
              "   row entropy of the affinities over its maximum, near 1 means the kernel is flat)\n");
  const Tensor V = c.units == "input" ? f.V * to_input : f.V;
  std::printf("\nsummed field: mean |V| %.6g (%s units); loss = mean ||V||^2 / D = %.6g\n",
              V.norm(2, 1).mean().item<double>(), c.units.c_str(),
              f.V.pow(2).sum().item<double>() / (static_cast<double>(N) * D));

  if (!c.out.empty()) {
    write_rows(V, c.out);
    std::printf("wrote V [%lld, %lld] to %s\n", (long long)N, (long long)D, c.out.c_str());
  }
  if (!c.png.empty()) {
    DL_REQUIRE(D == 2, "--png draws 2-D data only; these samples have " << D << " columns");
    const double mean_len = (f.V * to_input).norm(2, 1).mean().item<double>();
    double scale = c.arrow_scale;
    if (scale == 0) scale = mean_len > 0 ? 0.1 * s / mean_len * (c.units == "input" ? 1.0 : to_input) : 1.0;
    std::vector<Tensor> sets{x, pos, x + V * scale};
    if (extra.defined()) sets.push_back(extra);
    const auto b = Canvas::fit_bounds(sets);
    Canvas canvas(c.png_size, c.png_size, b[0], b[1], b[2], b[3]);
    canvas.points(pos, {40, 90, 220}, 2);
    if (extra.defined()) canvas.points(extra, {150, 150, 150}, 2);
    canvas.points(x, {220, 40, 40}, 2);
    canvas.arrows(x, V, static_cast<float>(scale), {20, 140, 60});
    write_png(c.png, canvas.image());
    std::printf("wrote %s (blue: positives, gray: extra negatives, red: x, green: drift x %.3g)\n", c.png.c_str(),
                scale);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return driftlab::run_tool(
      argc, argv,
      "drift_field: compute the drifting field V of generated samples x toward positives and away from\n"
      "negatives (docs/DRIFTING.md), print its statistics, write V, and draw it for 2-D data.\n"
      "Usage: drift_field --x=gen.csv --pos=real.csv [--neg=extra.csv] [--out=V.csv] [--png=drift.png]",
      [] { return run(field_config_from_flags()); });
}
