// drift_data: builds data sets in the shard format (converters, toy data) and inspects them. This
// file only turns the flags and arguments into the typed configs of data/commands.h.
#include <gflags/gflags.h>

#include <string>
#include <vector>

#include "common/check.h"       // DL_REQUIRE, UserError
#include "common/tool_main.h"   // run_tool, tool_args
#include "data/commands.h"      // one config and run_command per subcommand

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
    "      NAME: checkerboard, swissroll, 8gaussians, 25gaussians, moons, rings, bimodal, unequal, separated, nested\n"
    "  drift_data inspect PATH [--validate=false] [--grid=FILE.png]\n"
    "      PATH: a data set folder, a shard file or a glob; prints a summary, checks every shard\n"
    "Common flags: --shards --force --chunk_rows --deflate --progress";

// The only code of drift_data that reads its flags: one typed config per subcommand, from the
// flags and the positional arguments (their count is checked here, everything else by the
// command's validate()).
WriteOptions write_options_from_flags() {
  WriteOptions o;
  o.num_shards = FLAGS_shards;
  o.force = FLAGS_force;
  o.chunk_rows = FLAGS_chunk_rows;
  o.deflate = FLAGS_deflate;
  o.show_progress = FLAGS_progress;
  return o;
}

void require_args(const std::vector<std::string>& a, size_t lo, size_t hi, const char* usage) {
  DL_REQUIRE(a.size() >= lo + 1 && a.size() <= hi + 1,
             a[0] << ": expected " << usage << " (got " << a.size() - 1 << " arguments); see --help");
}

ConvertIdxConfig convert_idx_config(const std::vector<std::string>& a) {
  require_args(a, 1, 2, "IMAGES [LABELS]");
  ConvertIdxConfig c;
  c.images = a[1];
  c.labels = a.size() > 2 ? a[2] : "";
  c.out = FLAGS_out;
  c.write = write_options_from_flags();
  c.class_names = parse_class_names(FLAGS_class_names);
  return c;
}

ConvertImagesConfig convert_images_config(const std::vector<std::string>& a) {
  require_args(a, 1, 1, "FOLDER");
  ConvertImagesConfig c;
  c.folder = a[1];
  c.out = FLAGS_out;
  c.write = write_options_from_flags();
  c.channels = FLAGS_channels;
  return c;
}

ConvertCsvConfig convert_csv_config(const std::vector<std::string>& a) {
  require_args(a, 1, 1, "FILE");
  ConvertCsvConfig c;
  c.file = a[1];
  c.out = FLAGS_out;
  c.write = write_options_from_flags();
  c.delimiter = FLAGS_delimiter;
  c.csv.header = FLAGS_csv_header;
  c.csv.label_column = FLAGS_label_column;
  c.csv.num_classes = FLAGS_num_classes;
  c.csv.class_names = parse_class_names(FLAGS_class_names);
  return c;
}

ToyConfig toy_config(const std::vector<std::string>& a) {
  require_args(a, 1, 1, "NAME");
  ToyConfig c;
  c.name = a[1];
  c.out = FLAGS_out;
  c.write = write_options_from_flags();
  c.num = FLAGS_num;
  c.seed = FLAGS_seed;
  c.labels = FLAGS_labels;
  return c;
}

InspectConfig inspect_config(const std::vector<std::string>& a) {
  DL_REQUIRE(a.size() == 2, "inspect: expected one PATH (a folder, a shard file or a glob); see --help");
  InspectConfig c;
  c.path = a[1];
  c.validate = FLAGS_validate;
  c.grid = FLAGS_grid;
  c.progress = FLAGS_progress;
  return c;
}

int main_body() {
  const auto& a = tool_args();
  DL_REQUIRE(!a.empty(), "no subcommand given (convert-idx, convert-images, convert-csv, toy, inspect); see --help");
  const std::string& cmd = a[0];
  if (cmd == "convert-idx") return run_command(convert_idx_config(a));
  if (cmd == "convert-images") return run_command(convert_images_config(a));
  if (cmd == "convert-csv") return run_command(convert_csv_config(a));
  if (cmd == "toy") return run_command(toy_config(a));
  if (cmd == "inspect") return run_command(inspect_config(a));
  throw UserError("unknown subcommand '" + cmd + "' (expected convert-idx, convert-images, convert-csv, toy or inspect)");
}

}  // namespace
}  // namespace driftlab::data

int main(int argc, char** argv) { return driftlab::run_tool(argc, argv, driftlab::data::kUsage, driftlab::data::main_body); }
