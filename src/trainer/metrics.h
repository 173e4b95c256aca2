// Training metrics as files users already know how to plot: one JSON object per line in
// metrics.jsonl, and a TensorBoard event file (events.out.tfevents.*) with the same scalars.
// Only the process that owns the writer writes (rank 0); rows are flushed as they are logged.
// Best effort: a file that cannot be opened or written is one warning (per file), never an
// error; training goes on without it.
#pragma once

#include <cstdint>
#include <cstdio>
#include <map>
#include <string>

namespace driftlab {

class MetricsWriter {
 public:
  // Creates run_dir if needed; appends to metrics.jsonl (a resumed run continues the same file)
  // and starts a new event file. enabled = false: does nothing (non-zero ranks). Failures are
  // warnings (see above).
  MetricsWriter(const std::string& run_dir, bool enabled);
  ~MetricsWriter();
  MetricsWriter(const MetricsWriter&) = delete;
  MetricsWriter& operator=(const MetricsWriter&) = delete;

  void log(int64_t step, const std::map<std::string, double>& scalars);
  const std::string& event_file() const { return event_path_; }

 private:
  void write_record(const std::string& data);
  static void warn_once(bool* warned, const std::string& path, const std::string& what, int err);
  bool enabled_ = false;
  bool jsonl_warned_ = false, events_warned_ = false;
  std::string jsonl_path_;
  std::FILE* jsonl_ = nullptr;
  std::FILE* events_ = nullptr;
  std::string event_path_;
};

// TFRecord framing: masked CRC-32C as TensorFlow defines it.
uint32_t tfrecord_masked_crc(const void* data, size_t n);

}  // namespace driftlab
