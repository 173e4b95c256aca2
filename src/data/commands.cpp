// drift_data's subcommands (see commands.h).
#include "data/commands.h"

#include <algorithm>
#include <cstdio>

#include "common/check.h"   // DL_REQUIRE
#include "common/image.h"   // image_grid, write_png for --grid
#include "data/reader.h"    // ShardSet for inspect

namespace driftlab::data {
namespace {

// What every writing subcommand needs: an output folder and valid writer options. Values that only
// the converter can judge (--channels against the images, --num against the toy's range,
// --label_column against the file's columns) are checked there, with the flag named.
void validate_output(const char* command, const std::string& out, const WriteOptions& write) {
  DL_REQUIRE(!out.empty(), command << ": --out=DIR is required");
  validate(write, out);
}

int report_written(int64_t n, const std::string& out, const WriteOptions& write) {
  std::printf("wrote %lld samples in %d shard(s) to %s\n", static_cast<long long>(n), write.num_shards, out.c_str());
  return 0;
}

}  // namespace

std::vector<std::string> parse_class_names(const std::string& text) {
  if (text.empty()) return {};
  auto preset = preset_class_names(text);
  if (!preset.empty()) return preset;
  std::vector<std::string> out;
  size_t at = 0;
  for (;;) {
    const size_t end = text.find(',', at);
    out.push_back(text.substr(at, end == std::string::npos ? std::string::npos : end - at));
    if (end == std::string::npos) break;
    at = end + 1;
  }
  return out;
}

void validate(const ConvertIdxConfig& c) {
  DL_REQUIRE(!c.images.empty(), "convert-idx: expected IMAGES [LABELS]; see --help");
  validate_output("convert-idx", c.out, c.write);
}

void validate(const ConvertImagesConfig& c) {
  DL_REQUIRE(!c.folder.empty(), "convert-images: expected FOLDER; see --help");
  validate_output("convert-images", c.out, c.write);
}

void validate(const ConvertCsvConfig& c) {
  DL_REQUIRE(!c.file.empty(), "convert-csv: expected FILE; see --help");
  validate_output("convert-csv", c.out, c.write);
  DL_REQUIRE(c.delimiter.size() == 1, "--delimiter='" << c.delimiter << "' (expected one character)");
}

void validate(const ToyConfig& c) {
  DL_REQUIRE(!c.name.empty(), "toy: expected NAME; see --help");
  validate_output("toy", c.out, c.write);
}

void validate(const InspectConfig& c) {
  DL_REQUIRE(!c.path.empty(), "inspect: expected one PATH (a folder, a shard file or a glob); see --help");
}

int run_command(const ConvertIdxConfig& c) {
  validate(c);
  return report_written(convert_idx(c.images, c.labels, c.out, c.write, c.class_names), c.out, c.write);
}

int run_command(const ConvertImagesConfig& c) {
  validate(c);
  return report_written(convert_image_folder(c.folder, c.out, c.write, c.channels), c.out, c.write);
}

int run_command(const ConvertCsvConfig& c) {
  validate(c);
  CsvOptions csv = c.csv;
  csv.delimiter = c.delimiter[0];
  return report_written(convert_csv(c.file, c.out, c.write, csv), c.out, c.write);
}

int run_command(const ToyConfig& c) {
  validate(c);
  return report_written(write_toy(c.name, c.num, c.seed, c.labels, c.out, c.write), c.out, c.write);
}

int run_command(const InspectConfig& c) {
  validate(c);
  const std::string& path = c.path;
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
    for (size_t k = 0; k < counts.size(); ++k)
      std::printf("  %3zu %-20s %lld%s\n", k, s.class_names.empty() ? "" : s.class_names[k].c_str(),
                  static_cast<long long>(counts[k]), counts[k] == 0 ? "  (no samples: cannot be trained on)" : "");
  }
  if (c.validate) {
    const auto [lo, hi] = set->validate_all(c.progress);
    std::printf("values     [%g, %g] (all %lld samples read, checksums and ranges verified)\n", lo, hi,
                static_cast<long long>(set->size()));
  }
  if (!c.grid.empty()) {
    DL_REQUIRE(s.kind == SampleKind::kImage, "--grid: " << path << " holds " << kind_name(s.kind) << " samples, not images");
    std::vector<int64_t> idx;
    for (int64_t i = 0; i < std::min<int64_t>(64, set->size()); ++i) idx.push_back(i);
    write_png(c.grid, image_grid(set->read(idx), 8, -1.f, 1.f));
    std::printf("grid       %s\n", c.grid.c_str());
  }
  std::printf("ok\n");
  return 0;
}

}  // namespace driftlab::data
