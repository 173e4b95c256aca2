// drift_data's subcommands, typed: one config per subcommand, validated by the command itself with
// errors naming the flag, run by a function that reads no flags (the tool fills the configs from
// its flags and positional arguments in drift_data.cpp).
//
//   data::ToyConfig c;
//   c.name = "moons";
//   c.out = "data/moons";
//   c.num = 2000;
//   data::run_command(c);   // UserError for a bad config; prints "wrote 2000 samples in 1 shard(s) to data/moons"
//
// Not here: the converters and the writer themselves (converters.h, writer.h), the reader (reader.h).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "data/converters.h"
#include "data/writer.h"

namespace driftlab::data {

// convert-idx IMAGES [LABELS]: MNIST-style IDX files, raw or .gz.
struct ConvertIdxConfig {
  std::string images, labels;            // labels: empty for none
  std::string out;                       // output data set folder
  WriteOptions write;
  std::vector<std::string> class_names;  // empty: none
};

// convert-images FOLDER: FOLDER/<class>/*.png, one subfolder per class.
struct ConvertImagesConfig {
  std::string folder;
  std::string out;
  WriteOptions write;
  int channels = 0;  // 1, 3 or 4; 0: those of the first image
};

// convert-csv FILE: one float vector per line, optionally with an integer label column.
struct ConvertCsvConfig {
  std::string file;
  std::string out;
  WriteOptions write;
  std::string delimiter = ",";  // exactly one character (CsvOptions::delimiter)
  CsvOptions csv;               // header, label column, classes; its delimiter is taken from the field above
};

// toy NAME: samples of a named 2-D distribution; sample i depends only on (seed, i).
struct ToyConfig {
  std::string name;
  std::string out;
  WriteOptions write;
  int64_t num = 100000;
  uint64_t seed = 0;
  bool labels = false;  // store each sample's mode as its class
};

// inspect PATH: a summary of a data set, every shard checked.
struct InspectConfig {
  std::string path;       // a data set folder, a shard file or a glob
  bool validate = true;   // read every sample (checksums, value range); false: metadata only
  std::string grid;       // also write a PNG grid of the first 64 samples (images); empty: no
  bool progress = true;   // progress bar while validating
};

// "mnist", "fashion-mnist" (presets) or a comma-separated list; empty: none (the --class_names flag).
std::vector<std::string> parse_class_names(const std::string& text);

// UserError naming the flag and the bad value.
void validate(const ConvertIdxConfig& config);
void validate(const ConvertImagesConfig& config);
void validate(const ConvertCsvConfig& config);
void validate(const ToyConfig& config);
void validate(const InspectConfig& config);

// Each validates its config, does the work and prints its summary; returns the exit code (0).
int run_command(const ConvertIdxConfig& config);
int run_command(const ConvertImagesConfig& config);
int run_command(const ConvertCsvConfig& config);
int run_command(const ToyConfig& config);
int run_command(const InspectConfig& config);

}  // namespace driftlab::data
