// The drifting trainer (drift_train): the step of docs/ARCHITECTURE.md ('One training step') on
// every rank, sharded checkpoints, resume, metrics and pictures. Single process is a world of
// one: same code path.
//
//   global step RNG -> classes, alpha, noise ──► generator (this rank's rows)
//   data shards ──► positives / unconditional negatives (this rank's slice) ──► encoder (no grad)
//   all-gather features ──► distributed drift field per key ──► loss share ──► backward
//   ──► bucketed gradient average ──► clip ──► AdamW ──► EMA ──► checkpoint every K steps
//
// Every flag lives in trainer.cpp (--help lists them); models/flags.h adds --gen_* / --encoder.
#pragma once

namespace driftlab {

// Runs training as configured by the command-line flags. Collective: every rank calls it.
// Returns the process exit status (0 also after a clean stop on SIGTERM / SIGUSR1).
int run_training();

}  // namespace driftlab
