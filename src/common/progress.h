// Progress of long jobs: on a terminal a bar redrawn in place with rate and ETA; otherwise (logs,
// batch jobs) one INFO line every `log_every_seconds`. Only the process that owns it prints.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace driftlab {

class ProgressBar {
 public:
  // total <= 0: unknown total (no percentage or ETA). enabled = false: silent (non-zero ranks).
  ProgressBar(std::string label, int64_t total, bool enabled = true, double log_every_seconds = 10.0);
  ~ProgressBar();
  ProgressBar(const ProgressBar&) = delete;
  ProgressBar& operator=(const ProgressBar&) = delete;

  void set(int64_t done, const std::string& status = "");  // absolute position
  void add(int64_t n = 1, const std::string& status = "");
  void finish(const std::string& status = "");  // prints the final line once
  double rate() const;                          // items per second so far
  int64_t done() const { return done_; }

  // "1h02m03s" style durations for ETAs and summaries.
  static std::string format_duration(double seconds);

 private:
  void draw(bool final_line);

  std::string label_;
  int64_t total_, done_ = 0;
  bool enabled_, tty_, finished_ = false;
  double log_every_;
  std::string status_;
  std::chrono::steady_clock::time_point start_, last_draw_;
};

}  // namespace driftlab
