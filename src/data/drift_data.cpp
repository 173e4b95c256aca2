// drift_data: builds data sets in the shard format (converters, toy data) and inspects them.
#include <gflags/gflags.h>
#include <torch/torch.h>

#include <cstdio>
#include <iostream>

#include "common/check.h"       // DL_REQUIRE, UserError
#include "common/image.h"       // image_grid, write_png for --grid
#include "common/tool_main.h"   // run_tool, tool_args
#include "data/converters.h"    // convert_idx, convert_image_folder, convert_csv, write_toy
#include "data/reader.h"        // ShardSet for inspect

DEFINE_string(out, "", "Output data set folder (shards are written as <out>/shard-KKKKK-of-NNNNN.h5)");
DEFINE_int32(shards, 1, "Number of shards K: the samples are split into K contiguous, balanced files");
DEFINE_bool(force, false, "Replace an existing data set at --out (a folder holding anything but shards is never replaced)");
DEFINE_int64(chunk_rows, 0, "Samples per HDF5 chunk; 0 picks about 64 KiB per chunk (small chunks keep random reads cheap)");
DEFINE_int32(deflate, 0, "gzip compression level 0-9 of the sample data (0: none; random reads are fastest uncompressed)");
DEFINE_string(class_names, "", "Class names: a comma-separated list, or a preset: mnist, fashion-mnist (convert-idx, convert-csv)");
DEFINE_int32(channels, 0, "convert-images: channels to store (1 gray, 3 RGB, 4 RGBA); 0 keeps those of the first image");
DEFINE_int32(label_column, -1, "convert-csv: 0-based column holding an integer class label; -1: no labels");
DEFINE_bool(csv_header, false, "convert-csv: the first line is a header and is skipped");
DEFINE_string(delimiter, ",", "convert-csv: the one-character field separator");
DEFINE_int64(num_classes, 0, "convert-csv: number of classes; 0 takes the largest label + 1");
DEFINE_int64(num, 100000, "toy: number of samples to generate");
DEFINE_uint64(seed, 0, "toy: seed; sample i depends only on (seed, i)");
DEFINE_bool(labels, false, "toy: store each sample's mode as its class label (not for swissroll)");
DEFINE_bool(validate, true, "inspect: read every sample (checksums, value range); false reads only the metadata");
DEFINE_string(grid, "", "inspect: also write a PNG grid of the first 64 samples (image data sets) to this path");
DEFINE_bool(progress, true, "Show a progress bar (a log line every 10 s when not on a terminal)");

namespace driftlab::data {
namespace {

const char* kUsage =
    "drift_data: build and inspect data sets in driftlab's HDF5 shard format (README, 'Data sets')\n"
    "Usage:\n"
    "  drift_data convert-idx IMAGES [LABELS] --out=DIR [--class_names=mnist] [--shards=K]\n"
    "      MNIST-style IDX files, raw or .gz\n"
    "  drift_data convert-images FOLDER --out=DIR [--channels=C]\n"
    "      FOLDER/<class>/*.png, one subfolder per class (sorted names are class ids)\n"
    "  drift_data convert-csv FILE --out=DIR [--label_column=N] [--csv_header]\n"
    "      one float vector per line, optionally with an integer label column\n"
    "  drift_data toy NAME --out=DIR [--num=N] [--seed=S] [--labels]\n"
    "      NAME: checkerboard, swissroll, 8gaussians, 25gaussians, moons, rings, bimodal, unequal, nested\n"
    "  drift_data inspect PATH [--validate=false] [--grid=FILE.png]\n"
    "      PATH: a data set folder, a shard file or a glob; prints a summary, checks every shard\n"
    "Common flags: --shards --force --chunk_rows --deflate --progress";

WriteOptions write_options() {
  WriteOptions o;
  o.num_shards = FLAGS_shards;
  o.force = FLAGS_force;
  o.chunk_rows = FLAGS_chunk_rows;
  o.deflate = FLAGS_deflate;
  o.show_progress = FLAGS_progress;
  return o;
}

std::vector<std::string> class_names_flag() {
  if (FLAGS_class_names.empty()) return {};
  auto preset = preset_class_names(FLAGS_class_names);
  if (!preset.empty()) return preset;
  std::vector<std::string> out;
  size_t at = 0;
  for (;;) {
    const size_t end = FLAGS_class_names.find(',', at);
    out.push_back(FLAGS_class_names.substr(at, end == std::string::npos ? std::string::npos : end - at));
    if (end == std::string::npos) break;
    at = end + 1;
  }
  return out;
}

void require_args(const std::vector<std::string>& a, size_t lo, size_t hi, const char* usage) {
  DL_REQUIRE(a.size() >= lo + 1 && a.size() <= hi + 1,
             a[0] << ": expected " << usage << " (got " << a.size() - 1 << " arguments); see --help");
  DL_REQUIRE(!FLAGS_out.empty(), a[0] << ": --out=DIR is required");
}

int inspect(const std::string& path) {
  auto set = ShardSet::open(path);
  const DatasetSpec& s = set->spec();
  std::printf("data set   %s\n", path.c_str());
  std::printf("dataset_id %s\n", set->dataset_id().c_str());
  std::printf("samples    %lld in %d shard(s)\n", static_cast<long long>(set->size()), set->num_shards());
  std::printf("kind       %s\n", s.describe().c_str());
  std::string dec;
  for (size_t i = 0; i < s.decoded_shape().size(); ++i) dec += (i ? ", " : "") + std::to_string(s.decoded_shape()[i]);
  std::printf("decoded    float32 [%s] = (stored - %g) * %g\n", dec.c_str(), s.decode_shift, s.decode_scale);
  if (!s.source.empty()) std::printf("source     %s\n", s.source.c_str());
  for (const ShardInfo& sh : set->shards())
    std::printf("  %-50s rows %lld..%lld  values [%g, %g]\n", sh.path.c_str(), static_cast<long long>(sh.first),
                static_cast<long long>(sh.first + sh.rows - 1), sh.value_min, sh.value_max);
  if (set->labelled()) {
    const auto counts = set->class_counts();
    std::printf("classes    %lld\n", static_cast<long long>(s.num_classes));
    for (size_t c = 0; c < counts.size(); ++c)
      std::printf("  %3zu %-20s %lld%s\n", c, s.class_names.empty() ? "" : s.class_names[c].c_str(),
                  static_cast<long long>(counts[c]), counts[c] == 0 ? "  (no samples: cannot be trained on)" : "");
  }
  if (FLAGS_validate) {
    const auto [lo, hi] = set->validate_all(FLAGS_progress);
    std::printf("values     [%g, %g] (all %lld samples read, checksums and ranges verified)\n", lo, hi,
                static_cast<long long>(set->size()));
  }
  if (!FLAGS_grid.empty()) {
    DL_REQUIRE(s.kind == SampleKind::kImage, "--grid: " << path << " holds " << kind_name(s.kind) << " samples, not images");
    std::vector<int64_t> idx;
    for (int64_t i = 0; i < std::min<int64_t>(64, set->size()); ++i) idx.push_back(i);
    write_png(FLAGS_grid, image_grid(set->read(idx), 8, -1.f, 1.f));
    std::printf("grid       %s\n", FLAGS_grid.c_str());
  }
  std::printf("ok\n");
  return 0;
}

int main_body() {
  const auto& a = tool_args();
  DL_REQUIRE(!a.empty(), "no subcommand given (convert-idx, convert-images, convert-csv, toy, inspect); see --help");
  const std::string& cmd = a[0];
  int64_t n = 0;
  if (cmd == "convert-idx") {
    require_args(a, 1, 2, "IMAGES [LABELS]");
    n = convert_idx(a[1], a.size() > 2 ? a[2] : "", FLAGS_out, write_options(), class_names_flag());
  } else if (cmd == "convert-images") {
    require_args(a, 1, 1, "FOLDER");
    n = convert_image_folder(a[1], FLAGS_out, write_options(), FLAGS_channels);
  } else if (cmd == "convert-csv") {
    require_args(a, 1, 1, "FILE");
    DL_REQUIRE(FLAGS_delimiter.size() == 1, "--delimiter='" << FLAGS_delimiter << "' (expected one character)");
    CsvOptions csv;
    csv.delimiter = FLAGS_delimiter[0];
    csv.header = FLAGS_csv_header;
    csv.label_column = FLAGS_label_column;
    csv.num_classes = FLAGS_num_classes;
    csv.class_names = class_names_flag();
    n = convert_csv(a[1], FLAGS_out, write_options(), csv);
  } else if (cmd == "toy") {
    require_args(a, 1, 1, "NAME");
    n = write_toy(a[1], FLAGS_num, FLAGS_seed, FLAGS_labels, FLAGS_out, write_options());
  } else if (cmd == "inspect") {
    DL_REQUIRE(a.size() == 2, "inspect: expected one PATH (a folder, a shard file or a glob); see --help");
    return inspect(a[1]);
  } else {
    DL_REQUIRE(false, "unknown subcommand '" << cmd << "' (expected convert-idx, convert-images, convert-csv, toy or inspect)");
  }
  std::printf("wrote %lld samples in %d shard(s) to %s\n", static_cast<long long>(n), FLAGS_shards, FLAGS_out.c_str());
  return 0;
}

}  // namespace
}  // namespace driftlab::data

int main(int argc, char** argv) { return driftlab::run_tool(argc, argv, driftlab::data::kUsage, driftlab::data::main_body); }
