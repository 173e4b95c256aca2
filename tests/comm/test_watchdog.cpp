// The collective watchdog (src/comm/watchdog.h) without MPI: a collective held past its deadline
// ends the process with the expiry line, through the abort hook (or the fallback exit when the
// hook blocks); the line names the ranks whose heartbeat records show they did not arrive;
// short collectives, however many, never expire; asynchronous work is watched until done.
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

#include "comm/watchdog.h"

namespace fs = std::filesystem;

namespace driftlab::comm {
namespace {

void sleep_s(double s) { std::this_thread::sleep_for(std::chrono::duration<double>(s)); }

fs::path fresh_dir(const std::string& name) {
  const fs::path d = fs::temp_directory_path() / ("driftlab_watchdog_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  return d;
}

// The hook a backend passes (MPI_Abort there): here it reports and exits with its own status,
// so the tests see that the hook, not the fallback, ended the process.
void test_abort(int code) {
  std::fprintf(stderr, "abort hook called with %d\n", code);
  std::_Exit(40 + code);
}

class WatchdogDeath : public ::testing::Test {
 protected:
  void SetUp() override { GTEST_FLAG_SET(death_test_style, "threadsafe"); }
};

TEST_F(WatchdogDeath, ExpiredCollectiveEndsTheProcessWithOneLine) {
  EXPECT_EXIT(
      {
        WatchdogOptions o;
        o.timeout_s = 0.3;
        CollectiveWatchdog w(o, 1, 2, test_abort);
        w.set_step(57);
        CollectiveWatchdog::Scope s(&w, "all_reduce(sum)");
        sleep_s(10);
      },
      ::testing::ExitedWithCode(40 + kWatchdogExitCode),
      "rank 1/2] error: collective watchdog: all_reduce\\(sum\\) \\(collective #1 of this rank\\) at step 57 on "
      "rank 1 did not complete within 0.3 s.*not arrived: unknown \\(no heartbeat records\\).*\n"
      "abort hook called with 3");
}

TEST_F(WatchdogDeath, BlockedAbortFallsBackToExit) {
  EXPECT_EXIT(
      {
        WatchdogOptions o;
        o.timeout_s = 0.2;
        o.abort_grace_s = 0.2;
        CollectiveWatchdog w(o, 0, 2, [](int) { sleep_s(30); });
        CollectiveWatchdog::Scope s(&w, "barrier");
        sleep_s(10);
      },
      ::testing::ExitedWithCode(kWatchdogExitCode), "collective watchdog: barrier");
}

TEST_F(WatchdogDeath, NamesTheRanksThatDidNotArrive) {
  const fs::path dir = fresh_dir("peers");
  EXPECT_EXIT(
      {
        WatchdogOptions o;
        o.timeout_s = 1.0;
        o.heartbeat_dir = dir.string();
        // rank 1: a record nobody refreshes (a stopped process), last seen in collective #4
        fs::create_directories(dir);
        {
          const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                              std::chrono::system_clock::now().time_since_epoch()).count() - 30000;
          std::ofstream(CollectiveWatchdog::record_path(dir.string(), 1))
              << "driftlab-heartbeat 1 seq=4 step=12 inside=0 wall_ms=" << ms << " op=all_gather\n";
        }
        // rank 2: alive (its own watchdog refreshes its record) but it never enters a collective
        CollectiveWatchdog peer(o, 2, 4, nullptr);
        // rank 3: inside the same collective as rank 0 (arrived: not named); a longer deadline,
        // so that rank 0's expires first
        WatchdogOptions longer = o;
        longer.timeout_s = 5;
        CollectiveWatchdog arrived(longer, 3, 4, nullptr);
        // the forked child computes its own folder name: it removes it before it exits
        CollectiveWatchdog w(o, 0, 4, [dir](int code) {
          fs::remove_all(dir);
          test_abort(code);
        });
        w.set_step(13);
        CollectiveWatchdog::Scope s3(&arrived, "all_reduce(max)");
        CollectiveWatchdog::Scope s(&w, "all_reduce(max)");
        sleep_s(10);
      },
      ::testing::ExitedWithCode(40 + kWatchdogExitCode),
      "all_reduce\\(max\\) \\(collective #1 of this rank\\) at step 13 on rank 0 did not complete within 1 s.*"
      "not arrived: rank 1 \\(no heartbeat for [0-9.]+ s: stopped, hung or dead; last heartbeat: after all_gather #4 at step "
      "12\\), rank 2 \\(alive but has not entered it; last heartbeat: after - #0 at step -1\\); ending the job");
}

// A network partition: no peer is missing, but one has already finished the collective this
// rank is stuck in (what it sent here was lost) and waits in the next one; another still waits
// in the previous one. The line says so instead of blaming different collectives.
TEST_F(WatchdogDeath, PeersOnBothSidesOfTheCollectiveMeanALostMessage) {
  const fs::path dir = fresh_dir("partition");
  EXPECT_EXIT(
      {
        WatchdogOptions o;
        o.timeout_s = 1.0;
        o.heartbeat_dir = dir.string();
        WatchdogOptions longer = o;
        longer.timeout_s = 5;
        CollectiveWatchdog next(longer, 1, 3, nullptr);
        next.set_step(13);
        { CollectiveWatchdog::Scope done(&next, "all_gather"); }
        { CollectiveWatchdog::Scope done(&next, "all_reduce(sum)"); }
        CollectiveWatchdog::Scope s1(&next, "broadcast");  // its collective #3
        CollectiveWatchdog w(o, 0, 3, [dir](int code) {
          fs::remove_all(dir);
          test_abort(code);
        });
        { CollectiveWatchdog::Scope done(&w, "all_gather"); }
        CollectiveWatchdog earlier(longer, 2, 3, nullptr);
        earlier.set_step(13);
        CollectiveWatchdog::Scope s2(&earlier, "all_gather");  // its collective #1, still inside
        w.set_step(13);
        CollectiveWatchdog::Scope s(&w, "all_reduce(sum)");  // collective #2 here
        sleep_s(10);
      },
      ::testing::ExitedWithCode(40 + kWatchdogExitCode),
      "all_reduce\\(sum\\) \\(collective #2 of this rank\\) at step 13 on rank 0 did not complete within 1 s.*; "
      "still waiting in an earlier collective: rank 2 \\(in all_gather #1 at step 13\\); "
      "finished it and waiting in the next one: rank 1 \\(in broadcast #3 at step 13\\); "
      "no rank is missing \\(a transport or network failure between them\\); ending the job");
}

TEST_F(WatchdogDeath, UnfinishedAsyncWorkExpires) {
  struct Never : PendingWork {
    bool done() override { return false; }
  };
  EXPECT_EXIT(
      {
        WatchdogOptions o;
        o.timeout_s = 0.3;
        CollectiveWatchdog w(o, 0, 2, test_abort);
        w.watch_async("nccl all_reduce", std::make_unique<Never>());
        sleep_s(10);
      },
      ::testing::ExitedWithCode(40 + kWatchdogExitCode), "nccl all_reduce \\(collective #1 of this rank\\)");
}

TEST(Watchdog, ShortCollectivesNeverExpire) {
  WatchdogOptions o;
  o.timeout_s = 0.3;
  CollectiveWatchdog w(o, 0, 2, [](int) { std::_Exit(99); });
  // 1.2 s of back-to-back collectives of 10 ms: the deadline is per collective, not cumulative.
  const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(1200);
  int n = 0;
  while (std::chrono::steady_clock::now() < end) {
    CollectiveWatchdog::Scope s(&w, "all_reduce(sum)");
    sleep_s(0.01);
    ++n;
  }
  // Work that completes within the deadline is dropped, not expired.
  struct Flag : PendingWork {
    explicit Flag(std::atomic<bool>* f) : f_(f) {}
    bool done() override { return f_->load(); }
    std::atomic<bool>* f_;
  };
  std::atomic<bool> finished{false};
  w.watch_async("nccl broadcast", std::make_unique<Flag>(&finished));
  sleep_s(0.15);
  finished = true;
  sleep_s(0.5);
  EXPECT_GT(n, 20);
}

TEST(Watchdog, HeartbeatRecordRoundTrip) {
  const fs::path dir = fresh_dir("record");
  WatchdogOptions o;
  o.timeout_s = 4;  // polls every 0.2 s
  o.heartbeat_dir = dir.string();
  {
    CollectiveWatchdog w(o, 5, 8, nullptr);
    auto r = CollectiveWatchdog::read_record(dir.string(), 5);
    ASSERT_TRUE(r.found);  // written at construction, before any peer could read a stale one
    EXPECT_EQ(r.seq, 0u);
    EXPECT_EQ(r.op, "-");
    w.set_step(9);
    {
      CollectiveWatchdog::Scope s(&w, "broadcast");
      sleep_s(w.poll_interval_s() * 2.5);
      r = CollectiveWatchdog::read_record(dir.string(), 5);
      EXPECT_EQ(r.seq, 1u);
      EXPECT_EQ(r.op, "broadcast");
      EXPECT_EQ(r.step, 9);
      EXPECT_TRUE(r.inside);
    }
  }
  EXPECT_FALSE(CollectiveWatchdog::read_record(dir.string(), 6).found);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace driftlab::comm
