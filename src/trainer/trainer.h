// The drifting trainer (drift_train): the step of docs/ARCHITECTURE.md ('One training step') on
// every rank, sharded checkpoints, resume, metrics and pictures. Single process is a world of
// one: same code path.
//
//   global step RNG -> classes, alpha, noise ──► generator (this rank's rows)
//   data shards ──► positives / unconditional negatives (this rank's slice) ──► encoder (no grad)
//   all-gather features ──► distributed drift field per key ──► loss share ──► backward
//   ──► bucketed gradient average ──► clip ──► AdamW ──► EMA ──► checkpoint every K steps
//
// The run is described by a TrainConfig (trainer/config.h); drift_train fills it from its flags
// (trainer/train_flags.cpp, --help lists them).
#pragma once

#include "trainer/config.h"

namespace driftlab {

// Runs training as `config` describes. Collective: every rank calls it with the same config.
// Returns the process exit status (0 also after a clean stop on SIGTERM / SIGUSR1).
int run_training(const TrainConfig& config);

}  // namespace driftlab
