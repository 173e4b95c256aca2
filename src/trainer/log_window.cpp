// Log rows of the trainer (see log_window.h).
#include "trainer/log_window.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>

#include "common/progress.h"  // ProgressBar::format_duration

namespace driftlab {
namespace {

std::string format_number(double v, int precision) {
  std::ostringstream os;
  os.precision(precision);
  os << v;
  return os.str();
}

std::string join(const std::vector<double>& v, int precision = 3, const char* sep = " ") {
  std::string out;
  for (size_t i = 0; i < v.size(); ++i) out += (i ? sep : "") + format_number(v[i], precision);
  return out;
}

}  // namespace

LogWindow::LogWindow(const ObjectiveConfig& objective, int64_t samples_per_step)
    : objective_(objective), samples_per_step_(samples_per_step), drift_norm_(objective.taus.size(), 0.0) {}

void LogWindow::add(const drift::TotalLoss& total, double grad_norm) {
  loss_ += total.value;
  grad_norm_ += grad_norm;
  if (key_order_.empty())
    for (const auto& k : total.keys) key_order_.push_back(k.name);
  for (const auto& k : total.keys) {
    for (size_t i = 0; i < drift_norm_.size(); ++i) drift_norm_[i] += k.field.raw_drift_norm[i] / total.keys.size();
    if (std::isfinite(k.spread)) {
      auto& acc = spread_[k.name];
      acc.first += k.spread;
      ++acc.second;
    }
  }
  ++steps_;
}

LogWindow::Row LogWindow::close(int64_t done, int64_t total_steps, double lr, PhaseTimes& phases) {
  const double secs = clock_.seconds();
  const double n = static_cast<double>(std::max<int64_t>(steps_, 1));
  const double per_s = steps_ * samples_per_step_ / std::max(secs, 1e-9);
  const double eta = (total_steps - done) * secs / n;
  Row row;
  auto& v = row.values;
  v = {{"loss", loss_ / n}, {"grad_norm", grad_norm_ / n}, {"lr", lr}, {"samples_per_s", per_s}};
  std::vector<double> dn;
  for (double d : drift_norm_) dn.push_back(d / n);
  for (size_t i = 0; i < dn.size(); ++i) v["drift_norm/tau_" + std::to_string(objective_.taus[i]).substr(0, 5)] = dn[i];
  // Diversity per key: spread of the generated features over that of the real ones (1: as
  // varied as the data; a collapse shows as a ratio falling toward 0).
  std::string spread_text, low_key;
  double low = std::numeric_limits<double>::infinity();
  for (const auto& name : key_order_) {
    auto it = spread_.find(name);
    if (it == spread_.end() || it->second.second == 0) continue;
    const double s = it->second.first / it->second.second;
    v["spread/" + name] = s;
    if (spread_text.empty()) spread_text = name + " " + format_number(s, 3);
    if (s < low) low = s, low_key = name;
  }
  if (!low_key.empty() && low_key != key_order_.front()) spread_text += ", lowest " + low_key + " " + format_number(low, 3);
  const double total_time = phases.sum();
  for (const auto& [k, t] : phases.totals()) v["time_share/" + k] = t / std::max(total_time, 1e-12);
  std::ostringstream line;
  line << "step " << done << "/" << total_steps << " loss " << v["loss"] << " drift(" << join(objective_.taus, 6, ",") << ") "
       << (done <= objective_.tau_warmup_steps ? "[warm-up: taus x " + format_number(objective_.tau_warmup_scale, 3) + "] " : "")
       << join(dn) << " |g| " << v["grad_norm"] << " lr " << lr << " " << static_cast<int64_t>(per_s) << " samples/s"
       << (spread_text.empty() ? "" : " spread(gen/real) " + spread_text) << " ETA " << ProgressBar::format_duration(eta);
  row.line = line.str();
  // Start over.
  steps_ = 0;
  loss_ = grad_norm_ = 0;
  std::fill(drift_norm_.begin(), drift_norm_.end(), 0.0);
  spread_.clear();
  phases.clear();
  clock_.reset();
  return row;
}

}  // namespace driftlab
