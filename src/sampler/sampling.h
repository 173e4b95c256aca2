// Offline sampling jobs: drift_sample's work, with its configuration typed (the tool parses its
// flags into SampleConfig in drift_sample_main.cpp; nothing here reads flags).
//
// The output is cut into K units, unit k holding global samples [k N / K, (k + 1) N / K). Every
// rank computes whole units (the pending ones, dealt round-robin) and writes each one itself, as it
// goes: nothing is gathered, so memory does not grow with N. A unit is committed atomically
// (written under a temporary name, fsync'ed, renamed; a marker for PNG units), so a job killed at
// any moment and started again with the same configuration continues from the committed units and
// ends with the same output as an uninterrupted run. The output folder keeps the job record
// (sampling.pbtxt); a different configuration on an existing output is refused (or, with force,
// the old output is replaced). Sample i depends only on (seed, i, its class, alpha) and on the
// unit layout, never on the number of ranks: 1 and W ranks write the same bytes.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "comm/communicator.h"

namespace driftlab::sampler {

struct SampleConfig {
  std::string checkpoint;          // step dir, checkpoints folder or run dir (newest complete)
  int64_t num_samples = 1000;
  std::string classes = "prior";   // prior, all, uniform, or a comma-separated list of class ids
  double alpha = 1.0;              // guidance scale
  uint64_t seed = 0;
  int64_t batch_size = 256;
  std::string out;                 // output folder
  std::string format = "h5";       // h5, png, npz
  int units = 0;                   // K; 0: ceil(num_samples / unit_size)
  int64_t unit_size = 1024;
  bool force = false;              // replace an existing output made with another configuration
  bool ema = true;
  double ema_decay = 0;            // which EMA: 0 the main one, else one of the run's --ema_extra_decays
  int picture_count = 64;          // images in OUT.png (points: up to 50 000)
  std::string device = "auto";     // auto, cpu, cuda, cuda:N
  std::string precision = "auto";  // auto, fp32, bf16 (common/precision.h)
};

// UserError naming the flag for any bad value.
void validate(const SampleConfig& config);

// The step directory a --checkpoint value names (UserError when there is none).
std::string resolve_checkpoint(const std::string& path);

// Classes of samples [first, first + count): num_classes <= 0 gives null_class for all.
// "prior": drawn from `class_counts` (deterministic per sample index; uniform when empty);
// "all": i mod C; "uniform": uniformly at random per sample; or a list of ids used in turn.
std::vector<int64_t> class_of_samples(const std::string& spec, int64_t num_classes, int64_t null_class, uint64_t seed,
                                      int64_t first, int64_t count, const std::vector<int64_t>& class_counts = {});

// Runs the job on every rank of `comm` (collective). Returns the exit code: 0 when the output is
// complete, or when a stop signal (SIGTERM, SIGUSR1, SIGINT) ended the job after committing its
// current units (run again to continue; the log says so).
int run_sampling(const SampleConfig& config, comm::Communicator& comm);

}  // namespace driftlab::sampler
