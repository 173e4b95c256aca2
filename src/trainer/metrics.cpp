// MetricsWriter (see metrics.h). Event files are TFRecord streams of serialized Event messages:
// [uint64 length][uint32 masked crc(length)][data][uint32 masked crc(data)], little endian.
#include "trainer/metrics.h"

#include <glog/logging.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <cmath>
#include <filesystem>

#include "common/check.h"
#include "tensorboard_event.pb.h"
#include "ckpt/checkpoint.h"

namespace driftlab {
namespace {
double wall_time() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}
}  // namespace

uint32_t tfrecord_masked_crc(const void* data, size_t n) {
  const uint32_t crc = ckpt::crc32c(data, n);
  return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}

MetricsWriter::MetricsWriter(const std::string& run_dir, bool enabled) {
  if (!enabled) return;
  enabled_ = true;
  std::error_code ec;
  std::filesystem::create_directories(run_dir, ec);
  if (ec) LOG(WARNING) << "metrics: cannot create run directory '" << run_dir << "': " << ec.message();
  jsonl_path_ = run_dir + "/metrics.jsonl";
  jsonl_ = std::fopen(jsonl_path_.c_str(), "a");
  if (!jsonl_) warn_once(&jsonl_warned_, jsonl_path_, "cannot open it for appending", errno);
  char host[256] = "host";
  gethostname(host, sizeof host - 1);
  event_path_ = run_dir + "/events.out.tfevents." + std::to_string(static_cast<long long>(wall_time())) + "." + host;
  events_ = std::fopen(event_path_.c_str(), "wb");
  if (!events_) warn_once(&events_warned_, event_path_, "cannot create it", errno);
  tb::Event first;
  first.set_wall_time(wall_time());
  first.set_file_version("brain.Event:2");
  write_record(first.SerializeAsString());
}

MetricsWriter::~MetricsWriter() {
  if (jsonl_) std::fclose(jsonl_);
  if (events_) std::fclose(events_);
}

void MetricsWriter::warn_once(bool* warned, const std::string& path, const std::string& what, int err) {
  if (*warned) return;
  *warned = true;
  LOG(WARNING) << "metrics: " << what << " ('" << path << "': " << (err ? std::strerror(err) : "write error")
               << "); training continues without it (further errors on this file are not reported)";
}

void MetricsWriter::write_record(const std::string& data) {
  if (!events_) return;
  const uint64_t len = data.size();
  const uint32_t len_crc = tfrecord_masked_crc(&len, sizeof len), data_crc = tfrecord_masked_crc(data.data(), data.size());
  std::string rec;
  rec.reserve(data.size() + 16);
  rec.append(reinterpret_cast<const char*>(&len), sizeof len);
  rec.append(reinterpret_cast<const char*>(&len_crc), sizeof len_crc);
  rec.append(data);
  rec.append(reinterpret_cast<const char*>(&data_crc), sizeof data_crc);
  errno = 0;
  if (std::fwrite(rec.data(), 1, rec.size(), events_) != rec.size() || std::fflush(events_) != 0) {
    warn_once(&events_warned_, event_path_, "cannot write the TensorBoard event file", errno);
    std::clearerr(events_);
  }
}

void MetricsWriter::log(int64_t step, const std::map<std::string, double>& scalars) {
  if (!enabled_) return;
  std::string line = "{\"step\": " + std::to_string(step);
  tb::Event ev;
  ev.set_wall_time(wall_time());
  ev.set_step(step);
  char num[64];
  for (const auto& [k, v] : scalars) {
    // JSON has no NaN/Inf literals: write null so every line stays parseable.
    if (std::isfinite(v)) std::snprintf(num, sizeof num, "%.9g", v);
    else std::snprintf(num, sizeof num, "null");
    line += ", \"" + k + "\": " + num;
    auto* sv = ev.mutable_summary()->add_value();
    sv->set_tag(k);
    sv->set_simple_value(static_cast<float>(v));
  }
  line += "}\n";
  if (jsonl_) {
    errno = 0;
    if (std::fwrite(line.data(), 1, line.size(), jsonl_) != line.size() || std::fflush(jsonl_) != 0) {
      warn_once(&jsonl_warned_, jsonl_path_, "cannot append a metrics row", errno);
      std::clearerr(jsonl_);
    }
  }
  write_record(ev.SerializeAsString());
}

}  // namespace driftlab
