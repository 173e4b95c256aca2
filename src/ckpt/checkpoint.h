// Sharded checkpoints: per-rank shard files plus one protobuf manifest written LAST.
//
// Layout of a checkpoint root (e.g. runs/toy/checkpoints):
//   step_00000100/shard_r00000.bin   tensors written by rank 0 (weights, EMA, its optimizer slice)
//   step_00000100/shard_r00001.bin   rank 1's optimizer slice, ...
//   step_00000100/manifest.pb        the index of every tensor, the resolved flags, the cursors
// Every file is written to a temporary name, fsync'ed and renamed; the manifest only after every
// shard is durable. A step directory without manifest.pb does not exist (resume skips it).
//
// This file is pure file I/O: gathering the per-rank tensor indexes into the manifest is the
// caller's job (the trainer gathers them over its communicator).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <torch/types.h>

#include "checkpoint.pb.h"

namespace driftlab::ckpt {

// 2: typed run record (run_record.h). 1: the run record as a flag map; still read.
inline constexpr uint32_t kFormatVersion = 2;
inline constexpr uint32_t kOldestReadableVersion = 1;
inline constexpr char kManifestName[] = "manifest.pb";

// CRC-32C (Castagnoli) of a byte range; `crc` chains calls.
uint32_t crc32c(const void* data, size_t n, uint32_t crc = 0);

// "step_00000100" for step 100.
std::string step_dir_name(uint64_t step);

// One tensor to store. For a slice of a larger tensor (optimizer state partitioned across ranks)
// give the flattened full tensor's numel and the [flat_begin, flat_end) range `tensor` holds.
struct TensorToSave {
  std::string name;
  torch::Tensor tensor;           // contiguous CPU copy is made if needed
  std::vector<int64_t> full_shape;  // empty: the tensor's own shape (not a slice)
  int64_t flat_begin = 0;
};

// Writes shard_r<rank>.bin into `step_dir` (created if missing) durably and returns the index
// entries of its tensors. Any existing shard of the same name is replaced atomically. On any
// I/O error (ENOSPC, EIO, ...) the temporary file is removed before the UserError naming the
// file and the system's message is thrown.
std::vector<proto::TensorEntry> write_shard(const std::string& step_dir, int rank,
                                            const std::vector<TensorToSave>& tensors);

// Writes the manifest last (tmp + fsync + rename + directory fsync). Fills format_version,
// created_utc and driftlab_version; `manifest.shards` is derived from the tensor entries.
// A failed write removes its temporary file, as write_shard does.
void commit_manifest(const std::string& step_dir, proto::Manifest manifest);

// Removes a step directory whose write failed (every shard and temporary file in it). Returns
// "" on success, else the reason (best effort: the caller reports it).
std::string discard_step(const std::string& step_dir);

// Reads and validates step_dir/manifest.pb (UserError naming the file when missing or corrupt).
proto::Manifest read_manifest(const std::string& step_dir);

// Reads one entry's bytes, checks size and CRC (UserError naming shard and tensor on mismatch).
torch::Tensor read_entry(const std::string& step_dir, const proto::TensorEntry& entry);

// Reads tensor `name` whole, assembling it from every slice entry of that name (a checkpoint
// written by W ranks can be read by any number of ranks). UserError if absent or incomplete.
torch::Tensor read_tensor(const std::string& step_dir, const proto::Manifest& manifest, const std::string& name);

// Copies tensor `prefix + name` of the checkpoint into each named tensor, in place and without
// autograd (the shapes must match: UserError naming the checkpoint, the tensor and both shapes).
// The one way weights come out of a checkpoint: the trainer's resume (model, EMA and optimizer
// state) and the sampler.
void load_weights(const std::string& step_dir, const proto::Manifest& manifest,
                  const std::vector<std::pair<std::string, torch::Tensor>>& named, const std::string& prefix);

// Every tensor name of the manifest (slices counted once), in manifest order.
std::vector<std::string> tensor_names(const proto::Manifest& manifest);

struct StepDir {
  uint64_t step;
  std::string path;
};

// Complete checkpoints under `root`, oldest first. Step directories without a readable manifest
// are listed in `incomplete` (the caller warns) and never returned as complete.
std::vector<StepDir> list_complete(const std::string& root, std::vector<std::string>* incomplete = nullptr);

// Deletes complete checkpoints except the newest `keep_last` and those whose step is a multiple
// of `keep_every` (0: none kept for that reason). Also removes incomplete step directories older
// than the newest complete one (left by crashes). Returns the removed paths.
std::vector<std::string> prune(const std::string& root, int keep_last, uint64_t keep_every);

// Human-readable summary (step, world size, flags, tensors with sizes), for drift_ckpt inspect.
std::string describe(const proto::Manifest& manifest, bool with_flags = true);

proto::DType to_proto_dtype(torch::ScalarType t);
torch::ScalarType from_proto_dtype(proto::DType d);

}  // namespace driftlab::ckpt
