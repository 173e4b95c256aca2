// Wall-clock stopwatch and a named accumulator for per-phase step timings.
#pragma once

#include <chrono>
#include <map>
#include <string>

namespace driftlab {

class Stopwatch {
 public:
  Stopwatch() : start_(std::chrono::steady_clock::now()) {}
  void reset() { start_ = std::chrono::steady_clock::now(); }
  double seconds() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  }

 private:
  std::chrono::steady_clock::time_point start_;
};

// Sums seconds per phase name ("drift", "encoder", ...); share() gives each phase's fraction.
class PhaseTimes {
 public:
  void add(const std::string& phase, double seconds) { total_[phase] += seconds; }
  const std::map<std::string, double>& totals() const { return total_; }
  double sum() const {
    double s = 0;
    for (const auto& [k, v] : total_) s += v;
    return s;
  }
  void clear() { total_.clear(); }

 private:
  std::map<std::string, double> total_;
};

}  // namespace driftlab
