// Keeping data-parallel replicas identical: parameters and buffers broadcast from one rank at
// start, and a cheap cross-rank check that all ranks still hold bit-identical values.
//
// The check hashes every tensor's bytes (64-bit, on the host) and compares the hashes across
// ranks with one all-reduce, so its traffic is 16 bytes per tensor whatever the model size.
// The trainer runs it every --check_sync_every steps (0: never) through maybe_check_sync.
#pragma once

#include <torch/nn/module.h>

#include <cstdint>
#include <string>
#include <vector>

#include "comm/communicator.h"

namespace driftlab::comm {

// Named tensors of a module as the replica functions see them: parameters, then buffers, each
// in the module's recursive registration order.
std::vector<std::pair<std::string, torch::Tensor>> replica_tensors(const torch::nn::Module& module);

// Collective: every rank's parameters and buffers become root's. First checks that every rank
// has the same names, dtypes and shapes (a UserError naming the first difference otherwise).
void broadcast_module(Communicator& comm, torch::nn::Module& module, int root = 0);

struct SyncReport {
  int64_t tensors = 0;              // how many were compared
  std::vector<std::string> differing;  // names whose bytes differ on some rank (same list on all ranks)
  bool in_sync() const { return differing.empty(); }
};

// Collective: compares the bytes of every parameter and buffer across ranks.
SyncReport check_replicas_in_sync(Communicator& comm, const torch::nn::Module& module);

// Collective when it runs: when every > 0 and step is a multiple of it, runs
// check_replicas_in_sync and throws std::runtime_error naming the differing tensors (on every
// rank alike). Returns whether the check ran.
bool maybe_check_sync(Communicator& comm, const torch::nn::Module& module, int64_t step, int64_t every);

// Collective: which entries of `values` are not the same on every rank. Ranks may pass lists of
// different lengths (then length_differs is set and nothing else is compared); the result is the
// same on every rank. Costs two small all-reduces.
struct RankComparison {
  bool length_differs = false;
  std::vector<size_t> differing;  // indices
  bool equal() const { return !length_differs && differing.empty(); }
};
RankComparison compare_across_ranks(Communicator& comm, const std::vector<int64_t>& values);

// 64-bit hash of a tensor's bytes (copied to the host and made contiguous first).
uint64_t tensor_bytes_hash(const torch::Tensor& t);

}  // namespace driftlab::comm
