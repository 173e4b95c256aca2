// ProgressBar implementation (see progress.h).
#include "common/progress.h"

#include <glog/logging.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>

namespace driftlab {

ProgressBar::ProgressBar(std::string label, int64_t total, bool enabled, double log_every_seconds)
    : label_(std::move(label)), total_(total), enabled_(enabled), tty_(isatty(STDERR_FILENO) == 1),
      log_every_(log_every_seconds), start_(std::chrono::steady_clock::now()), last_draw_(start_) {}

ProgressBar::~ProgressBar() {
  if (enabled_ && tty_ && !finished_ && done_ > 0) std::fputc('\n', stderr);
}

void ProgressBar::set(int64_t done, const std::string& status) {
  done_ = done;
  if (!status.empty()) status_ = status;
  if (!enabled_) return;
  const auto now = std::chrono::steady_clock::now();
  const double since = std::chrono::duration<double>(now - last_draw_).count();
  if (since >= (tty_ ? 0.1 : log_every_)) {
    last_draw_ = now;
    draw(false);
  }
}

void ProgressBar::add(int64_t n, const std::string& status) { set(done_ + n, status); }

void ProgressBar::finish(const std::string& status) {
  if (finished_) return;
  finished_ = true;
  if (!status.empty()) status_ = status;
  if (enabled_) draw(true);
}

double ProgressBar::rate() const {
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  return s > 0 ? done_ / s : 0.0;
}

std::string ProgressBar::format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  long s = std::lround(seconds);
  char buf[32];
  if (s >= 3600) std::snprintf(buf, sizeof buf, "%ldh%02ldm%02lds", s / 3600, (s / 60) % 60, s % 60);
  else if (s >= 60) std::snprintf(buf, sizeof buf, "%ldm%02lds", s / 60, s % 60);
  else std::snprintf(buf, sizeof buf, "%lds", s);
  return buf;
}

void ProgressBar::draw(bool final_line) {
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double r = elapsed > 0 ? done_ / elapsed : 0.0;
  char head[160];
  std::string eta;
  if (total_ > 0) {
    const double frac = std::min(1.0, static_cast<double>(done_) / total_);
    eta = final_line ? "took " + format_duration(elapsed)
                     : "ETA " + format_duration(r > 0 ? (total_ - done_) / r : -1);
    std::snprintf(head, sizeof head, "%s %3.0f%% %lld/%lld %.3g/s", label_.c_str(), 100 * frac,
                  static_cast<long long>(done_), static_cast<long long>(total_), r);
    if (tty_) {
      const int width = 24, filled = static_cast<int>(frac * width);
      std::string bar = "[" + std::string(filled, '#') + std::string(width - filled, '.') + "] ";
      std::fprintf(stderr, "\r%s%s %s %s\033[K", bar.c_str(), head, eta.c_str(), status_.c_str());
      if (final_line) std::fputc('\n', stderr);
      std::fflush(stderr);
      return;
    }
  } else {
    eta = final_line ? "took " + format_duration(elapsed) : "";
    std::snprintf(head, sizeof head, "%s %lld %.3g/s", label_.c_str(), static_cast<long long>(done_), r);
  }
  if (tty_) {
    std::fprintf(stderr, "\r%s %s %s\033[K%s", head, eta.c_str(), status_.c_str(), final_line ? "\n" : "");
    std::fflush(stderr);
  } else {
    LOG(INFO) << head << ' ' << eta << (status_.empty() ? "" : " ") << status_;
  }
}

}  // namespace driftlab
