// glog prefix with the rank, and INFO filtering by rank.
#include "common/logging.h"

#include <gflags/gflags.h>

#include <atomic>
#include <cstdio>
#include <iomanip>

#include "common/check.h"

namespace driftlab {
namespace {
std::atomic<bool> g_initialized{false};
std::atomic<bool> g_all_ranks{false};

void prefix(std::ostream& s, const google::LogMessageInfo& l, void*) {
  const auto& t = l.time;
  s << l.severity[0] << std::setw(2) << std::setfill('0') << (1 + t.month()) << std::setw(2) << t.day()
    << ' ' << std::setw(2) << t.hour() << ':' << std::setw(2) << t.min() << ':' << std::setw(2)
    << t.sec() << '.' << std::setw(3) << (t.usec() / 1000) << std::setfill(' ') << " r"
    << process_rank() << '/' << process_world_size() << ' ' << l.filename << ':' << l.line_number;
}
}  // namespace

void init_logging(const char* argv0, int rank, int world_size) {
  set_process_identity(rank, world_size);
  FLAGS_logtostderr = true;
  FLAGS_colorlogtostderr = false;
  FLAGS_minloglevel = (rank == 0 || g_all_ranks.load()) ? google::GLOG_INFO : google::GLOG_WARNING;
  if (!g_initialized.exchange(true)) google::InitGoogleLogging(argv0, &prefix, nullptr);
}

void set_log_all_ranks(bool all) { g_all_ranks.store(all); }

}  // namespace driftlab
