// Reading a data set: open and validate a set of shards, random access by global index.
//
// open() validates everything it can without reading the samples: every shard opens, carries the
// driftlab schema, and agrees with the others (kind, shape, dtype, classes, decoding, dataset_id,
// shard count); shard indices are exactly 0..K-1 with none missing or repeated; /data and /labels
// have the declared shapes; every label is in [0, num_classes). Sample bytes are checked on read
// (Fletcher-32 per chunk): a corrupt chunk is a UserError naming the file. validate_all() reads
// everything (drift_data inspect).
//
// Global index i (0 <= i < size()) runs over shard 0's rows, then shard 1's, and so on. Labels
// and the per-class index are held in memory (4 bytes a sample); sample data stays on disk.
// A ShardSet is safe to read from several threads at once.
#pragma once

#include <hdf5.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include <torch/types.h>

#include "data/format.h"
#include "data/h5.h"

namespace driftlab::data {

struct ShardInfo {
  std::string path;
  int64_t first = 0;  // global index of its row 0
  int64_t rows = 0;
  double value_min = 0, value_max = 0;  // from its attributes
};

class ShardSet {
 public:
  // `path`: a data set folder (all *.h5 inside), one shard file, or a glob ("dir/shard-*.h5").
  static std::shared_ptr<ShardSet> open(const std::string& path);

  const DatasetSpec& spec() const { return spec_; }
  const std::string& path() const { return path_; }
  const std::string& dataset_id() const { return id_; }
  int64_t size() const { return total_; }
  int num_shards() const { return static_cast<int>(shards_.size()); }
  const std::vector<ShardInfo>& shards() const { return shards_; }
  bool labelled() const { return spec_.num_classes > 0; }

  // Global index -> (shard, row within the shard); UserError when out of range.
  std::pair<int, int64_t> locate(int64_t index) const;
  // Label of a global index (labelled data sets only).
  int32_t label(int64_t index) const { return labels_[static_cast<size_t>(index)]; }
  // Sorted global indices of class c; UserError naming the data set when c is not a class.
  const std::vector<int64_t>& class_indices(int64_t c) const;

  // Rows in the stored form [m, sample_shape...] (uint8 or float32), in the order asked (repeats
  // allowed). Rows are read per shard in file order, one HDF5 call per run of consecutive rows.
  torch::Tensor read_stored(const std::vector<int64_t>& indices) const;
  // Rows decoded to float32 [m, decoded_shape...] (format.h: images in [-1, 1], channels first).
  torch::Tensor read(const std::vector<int64_t>& indices) const;
  // int64 [m] labels of the indices (-1 each when unlabelled).
  torch::Tensor labels_of(const std::vector<int64_t>& indices) const;
  // Rows [begin, begin + count) of one shard, stored form.
  torch::Tensor read_shard_rows(int shard, int64_t begin, int64_t count) const;

  // Reads every sample of every shard (checksums) and compares the value range with the
  // attributes; UserError naming the first bad file. Returns the observed [min, max].
  std::pair<double, double> validate_all(bool show_progress = true) const;
  // Samples per class (size num_classes; empty when unlabelled).
  std::vector<int64_t> class_counts() const;

 private:
  ShardSet() = default;
  void read_shard_sorted(int shard, const std::vector<int64_t>& rows, uint8_t* out) const;

  std::string path_, id_;
  DatasetSpec spec_;
  std::vector<ShardInfo> shards_;
  std::vector<h5::Handle> files_, datasets_;
  int64_t total_ = 0;
  std::vector<int32_t> labels_;
  std::vector<std::vector<int64_t>> by_class_;
  // HDF5 serialises calls anyway (thread-safe build); this also covers non-thread-safe builds.
  mutable std::mutex mu_;
};

// The shard files `path` names (folder, file or glob), sorted; UserError when there are none.
std::vector<std::string> list_shard_files(const std::string& path);

}  // namespace driftlab::data
