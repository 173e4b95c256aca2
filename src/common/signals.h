// Graceful stop on SIGTERM, SIGUSR1 (Slurm's warning before a time limit) and SIGINT: the
// handler only records the signal; the long-running loop polls it (the training loop agrees on it
// across ranks at a step boundary, commits a checkpoint and exits 0; the sampler finishes its
// current unit of work and exits 0). A second SIGINT ends the process at once.
#pragma once

namespace driftlab {

void install_stop_handlers();
// The signal number that asked for a stop, or 0.
int stop_signal();

}  // namespace driftlab
