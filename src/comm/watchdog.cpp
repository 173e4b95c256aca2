// Collective watchdog (see watchdog.h).
#include "comm/watchdog.h"

#include <fcntl.h>
#include <glog/logging.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <vector>

#include "common/check.h"

namespace driftlab::comm {
namespace {

// Fixed size: every refresh rewrites the whole record in place with one pwrite.
constexpr size_t kRecordBytes = 160;

int64_t steady_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// "5", "0.3", "12": whole seconds without decimals, one decimal below 10 s otherwise.
std::string seconds_text(double s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, (s >= 10 || s == std::floor(s)) ? "%.0f" : "%.1f", s);
  return buf;
}

}  // namespace

std::string CollectiveWatchdog::record_path(const std::string& heartbeat_dir, int rank) {
  char name[32];
  std::snprintf(name, sizeof name, "rank_%05d", rank);
  return (std::filesystem::path(heartbeat_dir) / name).string();
}

CollectiveWatchdog::Record CollectiveWatchdog::read_record(const std::string& heartbeat_dir, int rank) {
  Record r;
  const std::string path = record_path(heartbeat_dir, rank);
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) return r;
  char buf[kRecordBytes + 1] = {0};
  const ssize_t n = ::pread(fd, buf, kRecordBytes, 0);
  ::close(fd);
  if (n <= 0) return r;
  unsigned long long seq = 0;
  long long step = 0, ms = 0;
  int inside = 0;
  char op[64] = {0};
  if (std::sscanf(buf, "driftlab-heartbeat 1 seq=%llu step=%lld inside=%d wall_ms=%lld op=%63s", &seq, &step, &inside,
                  &ms, op) != 5)
    return r;
  r.found = true;
  r.seq = seq;
  r.step = step;
  r.inside = inside != 0;
  r.wall_ms = ms;
  r.op = op;
  return r;
}

CollectiveWatchdog::CollectiveWatchdog(WatchdogOptions options, int rank, int world, std::function<void(int)> abort)
    : options_(std::move(options)), rank_(rank), world_(world), abort_(std::move(abort)) {
  DL_REQUIRE(options_.timeout_s > 0, "collective watchdog: timeout of " << options_.timeout_s
                                         << " s; expected a positive number of seconds");
  poll_s_ = std::clamp(options_.timeout_s / 20, 0.05, 1.0);
  if (!options_.heartbeat_dir.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(options_.heartbeat_dir, ec);
    const std::string path = record_path(options_.heartbeat_dir, rank_);
    fd_ = ec ? -1 : ::open(path.c_str(), O_WRONLY | O_CREAT, 0644);
    if (fd_ < 0)
      LOG(WARNING) << "collective watchdog: cannot write the heartbeat record '" << path << "' ("
                   << (ec ? ec.message() : std::strerror(errno))
                   << "); a timeout will not be able to name the ranks that did not arrive";
    else
      write_record();  // replaces a record left by an earlier run before any peer reads it
  }
  thread_ = std::thread([this] { run(); });
}

CollectiveWatchdog::~CollectiveWatchdog() {
  {
    std::lock_guard<std::mutex> lock(stop_mutex_);
    stop_ = true;
  }
  stop_cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  if (fd_ >= 0) ::close(fd_);
}

// The collective's thread only stores (no clock read, no locked instruction): the watchdog
// thread times a collective from the first poll that finds it running.
void CollectiveWatchdog::enter(const char* op) {
  op_.store(op, std::memory_order_relaxed);
  seq_.store(seq_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);  // one writer
  inside_.store(true, std::memory_order_release);
}

void CollectiveWatchdog::leave() { inside_.store(false, std::memory_order_release); }

void CollectiveWatchdog::watch_async(const char* op, std::unique_ptr<PendingWork> work) {
  const uint64_t seq = seq_.load(std::memory_order_relaxed) + 1;
  seq_.store(seq, std::memory_order_relaxed);
  op_.store(op, std::memory_order_relaxed);
  std::lock_guard<std::mutex> lock(pending_mutex_);
  pending_.push_back(Pending{op, seq, step(), steady_ns(), std::move(work)});
}

void CollectiveWatchdog::write_record() {
  if (fd_ < 0) return;
  bool inside = inside_.load(std::memory_order_acquire);
  if (!inside) {
    std::lock_guard<std::mutex> lock(pending_mutex_);
    inside = !pending_.empty();
  }
  char buf[kRecordBytes];
  std::memset(buf, ' ', sizeof buf);
  int n = std::snprintf(buf, sizeof buf, "driftlab-heartbeat 1 seq=%" PRIu64 " step=%" PRId64 " inside=%d wall_ms=%" PRId64 " op=%s",
                        seq_.load(std::memory_order_relaxed), step(), inside ? 1 : 0, wall_ms(),
                        op_.load(std::memory_order_relaxed));
  if (n < 0 || n >= static_cast<int>(sizeof buf)) n = static_cast<int>(sizeof buf) - 1;
  buf[n] = ' ';
  buf[sizeof buf - 1] = '\n';
  // A failed refresh only makes this rank look stale to a peer that times out: not worth an error.
  if (::pwrite(fd_, buf, sizeof buf, 0) < 0) {
  }
}

void CollectiveWatchdog::run() {
  const auto poll = std::chrono::duration<double>(poll_s_);
  const int64_t timeout_ns = static_cast<int64_t>(options_.timeout_s * 1e9);
  const int64_t poll_ns = static_cast<int64_t>(poll_s_ * 1e9);
  int64_t last_wake = steady_ns();
  // When this process itself was suspended (SIGSTOP, a paused VM), the time it slept is not a
  // peer's fault: deadlines restart when it runs again. Without this, a frozen rank that the
  // launcher resumes to kill it would blame its peers for its own absence.
  int64_t resumed_ns = 0;
  // The blocking collective being timed: its sequence number and when a poll first found it.
  uint64_t watched_seq = 0;
  int64_t watched_since = 0;
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(stop_mutex_);
      if (stop_cv_.wait_for(lock, poll, [this] { return stop_; })) return;
    }
    const int64_t now = steady_ns();
    if (now - last_wake > 4 * poll_ns + 1000000000) resumed_ns = now;
    last_wake = now;
    write_record();
    // A blocking collective: read the sequence number around the other fields, so a collective
    // that ended (and the next one that began) meanwhile is not mistaken for a long one. It is
    // timed from the first poll that saw it, so it expires between timeout and timeout + poll.
    const uint64_t seq = seq_.load(std::memory_order_acquire);
    const bool inside = inside_.load(std::memory_order_acquire);
    const char* op = op_.load(std::memory_order_relaxed);
    const int64_t step_now = step();
    if (inside && seq_.load(std::memory_order_acquire) == seq) {
      if (seq != watched_seq) {
        watched_seq = seq;
        watched_since = now;
      } else if (now - std::max(watched_since, resumed_ns) >= timeout_ns) {
        expire(op, seq, step_now, (now - std::max(watched_since, resumed_ns)) * 1e-9 + poll_s_);
      }
    } else {
      watched_seq = 0;
    }
    // Asynchronous work, oldest first.
    std::unique_lock<std::mutex> lock(pending_mutex_);
    while (!pending_.empty() && pending_.front().work->done()) pending_.pop_front();
    if (!pending_.empty() && now - std::max(pending_.front().started_ns, resumed_ns) > timeout_ns) {
      const Pending& p = pending_.front();
      const char* op = p.op;
      const uint64_t s = p.seq;
      const int64_t st = p.step;
      const double waited = (now - std::max(p.started_ns, resumed_ns)) * 1e-9;
      lock.unlock();
      expire(op, s, st, waited);
    }
  }
}

std::string CollectiveWatchdog::describe_peers(uint64_t seq, int64_t now_ms) const {
  if (options_.heartbeat_dir.empty() || fd_ < 0) return "not arrived: unknown (no heartbeat records)";
  // A record older than this was not refreshed by a live process (refreshed every poll interval).
  const double stale_s = std::max(4 * poll_s_, std::min(2.0, options_.timeout_s / 2));
  std::vector<std::string> missing, waiting, finished, unknown, ahead;
  for (int r = 0; r < world_; ++r) {
    if (r == rank_) continue;
    const Record rec = read_record(options_.heartbeat_dir, r);
    if (!rec.found) {
      unknown.push_back(std::to_string(r));
      continue;
    }
    const double age = (now_ms - rec.wall_ms) * 1e-3;
    const std::string last = "last heartbeat: " + std::string(rec.inside ? "in " : "after ") + rec.op + " #" +
                             std::to_string(rec.seq) + " at step " + std::to_string(rec.step);
    if (age > stale_s) {
      missing.push_back("rank " + std::to_string(r) + " (no heartbeat for " + seconds_text(age) +
                        " s: stopped, hung or dead; " + last + ")");
    } else if (rec.seq < seq && rec.inside) {
      // Held up by the same missing peer in an earlier collective (which completed here first).
      waiting.push_back("rank " + std::to_string(r) + " (in " + rec.op + " #" + std::to_string(rec.seq) + " at step " +
                        std::to_string(rec.step) + ")");
    } else if (rec.seq < seq || (rec.seq == seq && !rec.inside)) {
      missing.push_back("rank " + std::to_string(r) + " (alive but has not entered it; " + last + ")");
    } else if (rec.seq == seq + 1 && rec.inside) {
      // It completed this collective and waits in the next one: its part of this one was sent but
      // has not reached this rank (lost between them), not a different collective.
      finished.push_back("rank " + std::to_string(r) + " (in " + rec.op + " #" + std::to_string(rec.seq) + " at step " +
                         std::to_string(rec.step) + ")");
    } else if (rec.seq > seq) {
      ahead.push_back("rank " + std::to_string(r) + " (ahead: " + last + "; the ranks issued different collectives)");
    }
  }
  std::string out;
  auto join = [](const std::vector<std::string>& v) {
    std::string s;
    for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + v[i];
    return s;
  };
  if (!missing.empty()) out = "not arrived: " + join(missing);
  if (!waiting.empty()) out += std::string(out.empty() ? "" : "; ") + "still waiting in an earlier collective: " + join(waiting);
  if (!finished.empty())
    out += std::string(out.empty() ? "" : "; ") + "finished it and waiting in the next one: " + join(finished);
  if (!ahead.empty()) out += std::string(out.empty() ? "" : "; ") + join(ahead);
  if (!unknown.empty())
    out += std::string(out.empty() ? "" : "; ") + "no heartbeat record from rank(s) " + join(unknown) +
           " (another node without a shared run directory?)";
  if (out.empty())
    out = "every rank has entered it (a transport or network failure between them)";
  else if (missing.empty() && unknown.empty() && ahead.empty())
    // Every peer is alive and in this collective or next to it, waiting on a message: nobody is
    // absent, a message is (a partition between nodes, a failed link).
    out += "; no rank is missing (a transport or network failure between them)";
  return out;
}

void CollectiveWatchdog::expire(const char* op, uint64_t seq, int64_t step, double waited_s) {
  const std::string peers = describe_peers(seq, wall_ms());
  std::fprintf(stderr,
               "[rank %d/%d] error: collective watchdog: %s (collective #%" PRIu64 " of this rank) at step %" PRId64
               " on rank %d did not complete within %s s (waited about %s s); %s; ending the job\n",
               rank_, world_, op, seq, step, rank_, seconds_text(options_.timeout_s).c_str(),
               seconds_text(waited_s).c_str(), peers.c_str());
  std::fflush(stderr);
  std::fflush(stdout);
  // The abort normally ends every rank at once; should it block (a wedged transport), end this
  // process anyway: the launcher then takes the others down.
  std::thread([grace = options_.abort_grace_s] {
    std::this_thread::sleep_for(std::chrono::duration<double>(grace));
    std::_Exit(kWatchdogExitCode);
  }).detach();
  if (abort_) abort_(kWatchdogExitCode);
  std::_Exit(kWatchdogExitCode);
}

}  // namespace driftlab::comm
