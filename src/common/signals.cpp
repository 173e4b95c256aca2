// Stop-signal handlers and the stop marker (see signals.h). The handler is async-signal-safe:
// only an atomic store, or _exit.
#include "common/signals.h"

#include <csignal>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <system_error>

#include "common/fileio.h"  // write_file_atomic

namespace driftlab {
namespace {
std::atomic<int> g_signal{0};

extern "C" void on_stop_signal(int sig) {
  if (sig == SIGINT && g_signal.load() == SIGINT) _exit(130);
  g_signal.store(sig);
}
}  // namespace

void install_stop_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  for (int s : {SIGTERM, SIGUSR1, SIGINT}) sigaction(s, &sa, nullptr);
}

int stop_signal() { return g_signal.load(); }

void write_stop_marker(const std::string& dir, int signal, const std::string& detail) {
  write_file_atomic((std::filesystem::path(dir) / kStopMarker).string(),
                    "stopped by signal " + std::to_string(signal) + detail + "\n");
}

void clear_stop_marker(const std::string& dir) {
  std::error_code ec;
  std::filesystem::remove(std::filesystem::path(dir) / kStopMarker, ec);
}

}  // namespace driftlab
