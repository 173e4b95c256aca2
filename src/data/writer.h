// Writing a data set in the shard format (format.h): used by drift_data's converters and by the
// sampler, which stores generated samples in the schema of the data set it learnt.
// DatasetWriter writes a whole data set; ShardFileWriter one shard file of it (the sampler's ranks
// each write the shards they compute, so nothing is gathered to one process).
//
// Safety: shards are written into "<out>.tmp-<pid>" and renamed into place by finish(); a writer
// destroyed before finish() (an error, an exception) removes its temporary folder, so nothing
// already written is ever damaged. An existing <out> is replaced only with force = true, and
// only when it is a data set (a folder of shard-*.h5 files and nothing else).
//
//   DatasetWriter w("/data/mnist", image_spec(28, 28, 1, 10), 60000, {.num_shards = 4});
//   w.append(uint8_images_nhwc, labels);   // any number of calls, rows in order
//   w.finish();
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <torch/types.h>

#include "data/format.h"

namespace driftlab::data {

struct WriteOptions {
  int num_shards = 1;          // K: rows are split into K contiguous, balanced shards
  bool force = false;          // replace an existing data set at the output path
  int64_t chunk_rows = 0;      // rows per HDF5 chunk; 0: about 64 KiB per chunk (a random read
                               // reads and checksums one whole chunk, so keep chunks small)
  int deflate = 0;             // gzip level 0..9 (0: none; random reads are fastest uncompressed)
  bool show_progress = true;   // a progress bar over all rows
};

// Where one shard file sits in its data set (the root attributes every shard carries).
struct ShardPlacement {
  int index = 0, count = 1;     // shard k of K
  int64_t total_samples = 0;    // N over all shards
  std::string dataset_id;       // shared by every shard of the set
};

// One shard file, written row by row: `rows` rows appended in order, then close(). Rows are
// checked as in DatasetWriter::append (shape, dtype, labels in range, finite values). The file is
// created at `path` (which must not exist); the caller decides where it goes and renames it into
// place. Destroying the writer before close() removes the file. Files are reproducible: the same
// rows and placement give the same bytes (no timestamps are stored).
class ShardFileWriter {
 public:
  ShardFileWriter(std::string path, const DatasetSpec& spec, ShardPlacement placement, int64_t rows,
                  const WriteOptions& options = {});
  ~ShardFileWriter();
  ShardFileWriter(const ShardFileWriter&) = delete;
  ShardFileWriter& operator=(const ShardFileWriter&) = delete;

  void append(const torch::Tensor& stored, const torch::Tensor& labels = {});
  void append_decoded(const torch::Tensor& decoded, const torch::Tensor& labels = {});
  // All rows must have been appended. Writes the value range, flushes and closes the file.
  void close();
  int64_t rows_written() const;
  int64_t rows() const;
  const std::string& path() const;

 private:
  struct State;
  std::unique_ptr<State> s_;
};

// A random 16-hex-digit data set id; data_set_id_of(text) is a deterministic one (a hash of text).
std::string random_dataset_id();
std::string dataset_id_of(const std::string& text);

class DatasetWriter {
 public:
  // Checks the spec and the output path up front (fails before any work is done).
  DatasetWriter(std::string out_dir, DatasetSpec spec, int64_t total_samples, WriteOptions options = {});
  ~DatasetWriter();
  DatasetWriter(const DatasetWriter&) = delete;
  DatasetWriter& operator=(const DatasetWriter&) = delete;

  // Rows in the stored form: [m, sample_shape...] of spec.stored_dtype(); labels: integer [m],
  // required exactly when the spec has classes, each in [0, num_classes).
  void append(const torch::Tensor& stored, const torch::Tensor& labels = {});
  // Rows in the decoded form (what the reader returns, e.g. generated images in [-1, 1]
  // [m, C, H, W]); encoded with encode_samples first.
  void append_decoded(const torch::Tensor& decoded, const torch::Tensor& labels = {});
  // All total_samples rows must have been appended. Closes the shards and renames into place.
  void finish();

  int64_t rows_written() const;
  const std::string& out_dir() const;

 private:
  struct State;
  std::unique_ptr<State> s_;
};

}  // namespace driftlab::data
