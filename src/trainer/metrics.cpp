// MetricsWriter (see metrics.h). Event files are TFRecord streams of serialized Event messages:
// [uint64 length][uint32 masked crc(length)][data][uint32 masked crc(data)], little endian.
#include "trainer/metrics.h"

#include <unistd.h>

#include <chrono>
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
  std::error_code ec;
  std::filesystem::create_directories(run_dir, ec);
  DL_REQUIRE(!ec, "cannot create run directory '" << run_dir << "': " << ec.message());
  const std::string jsonl = run_dir + "/metrics.jsonl";
  jsonl_ = std::fopen(jsonl.c_str(), "a");
  DL_REQUIRE(jsonl_, "cannot open '" << jsonl << "' for appending");
  char host[256] = "host";
  gethostname(host, sizeof host - 1);
  event_path_ = run_dir + "/events.out.tfevents." + std::to_string(static_cast<long long>(wall_time())) + "." + host;
  events_ = std::fopen(event_path_.c_str(), "wb");
  DL_REQUIRE(events_, "cannot create '" << event_path_ << "'");
  tb::Event first;
  first.set_wall_time(wall_time());
  first.set_file_version("brain.Event:2");
  write_record(first.SerializeAsString());
}

MetricsWriter::~MetricsWriter() {
  if (jsonl_) std::fclose(jsonl_);
  if (events_) std::fclose(events_);
}

void MetricsWriter::write_record(const std::string& data) {
  const uint64_t len = data.size();
  const uint32_t len_crc = tfrecord_masked_crc(&len, sizeof len), data_crc = tfrecord_masked_crc(data.data(), data.size());
  std::fwrite(&len, sizeof len, 1, events_);
  std::fwrite(&len_crc, sizeof len_crc, 1, events_);
  std::fwrite(data.data(), 1, data.size(), events_);
  std::fwrite(&data_crc, sizeof data_crc, 1, events_);
  std::fflush(events_);
}

void MetricsWriter::log(int64_t step, const std::map<std::string, double>& scalars) {
  if (!jsonl_) return;
  std::fprintf(jsonl_, "{\"step\": %lld", static_cast<long long>(step));
  tb::Event ev;
  ev.set_wall_time(wall_time());
  ev.set_step(step);
  for (const auto& [k, v] : scalars) {
    // JSON has no NaN/Inf literals: write null so every line stays parseable.
    if (std::isfinite(v)) std::fprintf(jsonl_, ", \"%s\": %.9g", k.c_str(), v);
    else std::fprintf(jsonl_, ", \"%s\": null", k.c_str());
    auto* sv = ev.mutable_summary()->add_value();
    sv->set_tag(k);
    sv->set_simple_value(static_cast<float>(v));
  }
  std::fprintf(jsonl_, "}\n");
  std::fflush(jsonl_);
  write_record(ev.SerializeAsString());
}

}  // namespace driftlab
