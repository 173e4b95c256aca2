// Graceful stop on SIGTERM, SIGUSR1 (Slurm's warning before a time limit) and SIGINT: the
// handler only records the signal; the long-running loop polls it (the training loop agrees on it
// across ranks at a step boundary, commits a checkpoint and exits 0; the sampler finishes its
// current unit of work and exits 0). A second SIGINT ends the process at once.
#pragma once

#include <string>

namespace driftlab {

void install_stop_handlers();
// The signal number that asked for a stop, or 0.
int stop_signal();

// The marker a job leaves in its output folder when a signal stopped it before the end (the Slurm
// templates requeue on it; a run that finishes removes it): `dir`/STOPPED, written atomically,
// one line "stopped by signal S" + `detail`.
constexpr const char* kStopMarker = "STOPPED";
void write_stop_marker(const std::string& dir, int signal, const std::string& detail = "");
// Removes the marker; none is fine.
void clear_stop_marker(const std::string& dir);

}  // namespace driftlab
