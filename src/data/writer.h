// Writing a data set in the shard format (format.h): used by drift_data's converters and by the
// sampler, which stores generated samples in the schema of the data set it learnt.
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
