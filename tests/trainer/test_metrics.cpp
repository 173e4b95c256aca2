// Metrics files: JSON lines parse back, and the TensorBoard event file is valid TFRecord framing
// (checked with an independent reader here) holding the same scalars.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "tensorboard_event.pb.h"
#include "trainer/metrics.h"

namespace fs = std::filesystem;

namespace driftlab {
namespace {

TEST(Metrics, JsonlAndTfrecord) {
  const fs::path dir = fs::temp_directory_path() / ("driftlab_metrics_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  std::string events;
  {
    MetricsWriter w(dir.string(), true);
    w.log(1, {{"loss", 0.5}, {"lr", 1e-3}});
    w.log(2, {{"loss", 0.25}, {"bad", NAN}});
    events = w.event_file();
  }
  std::ifstream j(dir / "metrics.jsonl");
  std::string l1, l2;
  std::getline(j, l1);
  std::getline(j, l2);
  EXPECT_EQ(l1, "{\"step\": 1, \"loss\": 0.5, \"lr\": 0.001}");
  EXPECT_EQ(l2, "{\"step\": 2, \"bad\": null, \"loss\": 0.25}");

  std::ifstream f(events, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  const std::string bytes = ss.str();
  size_t pos = 0;
  std::vector<tb::Event> evs;
  while (pos < bytes.size()) {
    uint64_t len;
    uint32_t len_crc, data_crc;
    ASSERT_LE(pos + 12, bytes.size());
    std::memcpy(&len, bytes.data() + pos, 8);
    std::memcpy(&len_crc, bytes.data() + pos + 8, 4);
    EXPECT_EQ(len_crc, tfrecord_masked_crc(bytes.data() + pos, 8));
    ASSERT_LE(pos + 12 + len + 4, bytes.size());
    const std::string data = bytes.substr(pos + 12, len);
    std::memcpy(&data_crc, bytes.data() + pos + 12 + len, 4);
    EXPECT_EQ(data_crc, tfrecord_masked_crc(data.data(), data.size()));
    tb::Event e;
    ASSERT_TRUE(e.ParseFromString(data));
    evs.push_back(e);
    pos += 12 + len + 4;
  }
  ASSERT_EQ(evs.size(), 3u);
  EXPECT_EQ(evs[0].file_version(), "brain.Event:2");
  EXPECT_EQ(evs[1].step(), 1);
  ASSERT_EQ(evs[1].summary().value_size(), 2);
  EXPECT_EQ(evs[1].summary().value(0).tag(), "loss");
  EXPECT_FLOAT_EQ(evs[1].summary().value(0).simple_value(), 0.5f);
  fs::remove_all(dir);
}

// The masked CRC of TensorFlow's record framing, checked against the value TensorFlow's own
// writer produces for the 8-byte length field of a 0-length record (all-zero bytes).
TEST(Metrics, MaskedCrcOfZeroLength) {
  const uint64_t zero = 0;
  const uint32_t crc = tfrecord_masked_crc(&zero, 8);
  // crc32c of 8 zero bytes is 0x8C28B28A; masked: rotate right 15, add 0xa282ead8.
  const uint32_t raw = 0x8C28B28Au;
  EXPECT_EQ(crc, ((raw >> 15) | (raw << 17)) + 0xa282ead8u);
}

}  // namespace
}  // namespace driftlab
