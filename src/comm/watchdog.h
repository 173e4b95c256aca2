// Collective watchdog: a deadline on every collective and every wait on a peer.
//
// A communicator backend marks each blocking collective with a Scope (main thread; three plain
// stores on entry and one on exit: no clock read, no lock, no system call) and hands asynchronous work
// it cannot wait on itself (NCCL kernels on a stream) to watch_async(). One background thread per
// process wakes every poll interval (at most 1 s) to
//   * refresh this rank's heartbeat record `<heartbeat_dir>/rank_KKKKK` (the collective it last
//     entered, its sequence number, the step, whether it is inside, the wall time), and
//   * compare the oldest unfinished collective against the deadline.
// When a collective runs past the deadline, the thread prints ONE line naming the collective,
// the step, this rank and the ranks that did not arrive (read from their heartbeat records: a
// rank whose record stopped being refreshed is stopped, hung or dead; one that refreshes it but
// has not entered this collective is busy elsewhere), then ends the job through the backend's
// abort (MPI_Abort: the launcher kills every rank), with _Exit as the fallback if the abort does
// not end the process within a few seconds. Exit status kWatchdogExitCode.
//
// The heartbeat records tell who did not arrive only when every rank's record can be read from
// here (one node, or a run directory on a shared file system); otherwise the line says the
// ranks are unknown. A world of one process needs no watchdog (its collectives are local).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

namespace driftlab::comm {

// The deadline tools default to (drift_train's --collective_timeout), in seconds: long enough
// for any wait a healthy training run has (checkpoint writes, pictures on rank 0, slow start-up
// on a loaded file system), short enough that a hung job does not burn an allocation. PyTorch's
// process groups default to 10 to 30 minutes.
inline constexpr double kDefaultCollectiveTimeoutSeconds = 600;
// The exit status of a process ended by the watchdog (and the MPI_Abort error code).
inline constexpr int kWatchdogExitCode = 3;

struct WatchdogOptions {
  // <= 0: no watchdog. Off unless the tool asks for it: a tool whose ranks wait for each other
  // on purpose (a final barrier after uneven work) chooses its own deadline.
  double timeout_s = 0;
  // Folder of the per-rank heartbeat records (created if missing); empty: no records, and the
  // expiry line cannot name the ranks that did not arrive.
  std::string heartbeat_dir;
  // After the expiry line: how long the abort may take before the process ends itself.
  double abort_grace_s = 5;
};

// Completion of work the watchdog thread polls (e.g. a CUDA event after an NCCL kernel).
// done() is called from the watchdog thread only; the object is destroyed there too.
class PendingWork {
 public:
  virtual ~PendingWork() = default;
  virtual bool done() = 0;
};

class CollectiveWatchdog {
 public:
  // abort: ends the whole job (all ranks) with the given exit code; called from the watchdog
  // thread after the expiry line is printed. Starts the thread.
  CollectiveWatchdog(WatchdogOptions options, int rank, int world, std::function<void(int)> abort);
  ~CollectiveWatchdog();
  CollectiveWatchdog(const CollectiveWatchdog&) = delete;
  CollectiveWatchdog& operator=(const CollectiveWatchdog&) = delete;

  // The step the caller is in, named in the expiry line (any thread; a relaxed store).
  void set_step(int64_t step) { step_.store(step, std::memory_order_relaxed); }
  int64_t step() const { return step_.load(std::memory_order_relaxed); }
  double timeout_s() const { return options_.timeout_s; }
  double poll_interval_s() const { return poll_s_; }

  // Marks one blocking collective (or wait on peers) of the calling thread. `op` must outlive
  // the scope (a string literal). Nesting is not supported; a null watchdog makes it a no-op.
  class Scope {
   public:
    Scope(CollectiveWatchdog* w, const char* op) : w_(w) {
      if (w_) w_->enter(op);
    }
    ~Scope() {
      if (w_) w_->leave();
    }
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    CollectiveWatchdog* w_;
  };

  // Work started now that completes later on its own (asynchronous backends): the deadline runs
  // from now until work->done() returns true. Counts as one collective in the sequence.
  void watch_async(const char* op, std::unique_ptr<PendingWork> work);

  // Heartbeat record of one rank as read back from its file (for the expiry line and tests).
  struct Record {
    bool found = false;
    uint64_t seq = 0;        // collectives entered so far
    std::string op;          // the last one entered ("-" before the first)
    int64_t step = -1;
    bool inside = false;     // still inside it when the record was written
    int64_t wall_ms = 0;     // when the record was written (system clock, ms since the epoch)
  };
  static Record read_record(const std::string& heartbeat_dir, int rank);
  static std::string record_path(const std::string& heartbeat_dir, int rank);

 private:
  void enter(const char* op);
  void leave();
  void run();
  void write_record();
  [[noreturn]] void expire(const char* op, uint64_t seq, int64_t step, double waited_s);
  std::string describe_peers(uint64_t seq, int64_t now_ms) const;

  const WatchdogOptions options_;
  const int rank_, world_;
  const std::function<void(int)> abort_;
  double poll_s_ = 1.0;
  int fd_ = -1;  // heartbeat record, rewritten in place

  // Written by the collective's thread, read by the watchdog thread.
  std::atomic<uint64_t> seq_{0};
  std::atomic<const char*> op_{"-"};
  std::atomic<int64_t> step_{-1};
  std::atomic<bool> inside_{false};

  struct Pending {
    const char* op;
    uint64_t seq;
    int64_t step;
    int64_t started_ns;
    std::unique_ptr<PendingWork> work;
  };
  std::mutex pending_mutex_;
  std::deque<Pending> pending_;

  std::mutex stop_mutex_;
  std::condition_variable stop_cv_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace driftlab::comm
