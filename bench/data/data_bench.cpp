// data_bench: random-access batch reads on MNIST shards, with and without prefetch, and the share
// of a training step the loader adds. Every figure is printed next to a baseline measured in the
// same run. The "training step" is SIMULATED: a fixed number of 512x512 float matmuls (sized by
// --step_ms at start-up) standing in for the generator/encoder work; the real trainer's step
// differs, so read the share as "loader cost relative to a step of this length".
#include <gflags/gflags.h>
#include <torch/torch.h>

#include <cstdio>
#include <filesystem>
#include <string>

#include "common/check.h"
#include "common/rng.h"
#include "common/timer.h"
#include "common/tool_main.h"
#include "data/converters.h"
#include "data/loader.h"
#include "data/reader.h"

DEFINE_string(data, "/tmp/driftlab_bench_mnist", "Data set to read; created from --mnist_dir (train split) when missing");
DEFINE_string(mnist_dir, DRIFTLAB_SOURCE_DIR "/.cache/data/mnist", "Folder with the MNIST IDX files used to create --data");
DEFINE_int32(shards, 4, "Shards when creating --data");
DEFINE_int32(classes, 10, "Class slots per step");
DEFINE_int32(pos_per_class, 32, "Positives per class slot");
DEFINE_int32(unc_per_class, 8, "Unconditional samples per class slot");
DEFINE_int32(steps, 60, "Steps per measurement");
DEFINE_int32(depth, 4, "Prefetch queue depth");
DEFINE_double(step_ms, 100.0, "Target length of the simulated training step (compute only), milliseconds");
DEFINE_uint64(seed, 1, "Seed of the draws");

namespace driftlab::data {
namespace {

// The bench's settings, typed: filled from the flags in one place (config_from_flags), validated once.
struct DataBenchConfig {
  std::string data;       // data set read (created from mnist_dir when missing)
  std::string mnist_dir;  // MNIST IDX files
  int shards = 4;         // shards when creating data
  int classes = 10, pos_per_class = 32, unc_per_class = 8;  // rows per step
  int steps = 60;         // steps per measurement
  int depth = 4;          // prefetch queue depth
  double step_ms = 100.0;  // length of the simulated step
  uint64_t seed = 1;
};

DataBenchConfig config_from_flags() {
  DataBenchConfig c;
  c.data = FLAGS_data, c.mnist_dir = FLAGS_mnist_dir, c.shards = FLAGS_shards;
  c.classes = FLAGS_classes, c.pos_per_class = FLAGS_pos_per_class, c.unc_per_class = FLAGS_unc_per_class;
  c.steps = FLAGS_steps, c.depth = FLAGS_depth, c.step_ms = FLAGS_step_ms, c.seed = FLAGS_seed;
  return c;
}

void validate(const DataBenchConfig& c) {
  DL_REQUIRE(c.steps >= 1, "--steps must be >= 1, got " << c.steps);
}

StepRequest plan(const DataBenchConfig& c, uint64_t t) {
  StepRequest r;
  r.step = t;
  rng::Draw d(rng::Key{c.seed, rng::Stream::kClass, t, 0});
  for (int j = 0; j < c.classes; ++j) r.classes.push_back(static_cast<int64_t>(d.below(10)));
  r.pos_per_class = c.pos_per_class;
  r.unc_per_class = c.unc_per_class;
  return r;
}

// The stand-in for a training step: `iters` chained matmuls.
struct FakeStep {
  torch::Tensor a = torch::randn({512, 512}), b = torch::randn({512, 512}) * (1.0 / 22.6);
  int iters = 1;
  float run() {
    torch::Tensor x = a;
    for (int i = 0; i < iters; ++i) x = torch::tanh(torch::mm(x, b));
    return x[0][0].item<float>();
  }
};

int body(const DataBenchConfig& c) {
  validate(c);
  auto plan = [&c](uint64_t t) { return data::plan(c, t); };
  std::error_code ec;
  if (!std::filesystem::exists(c.data, ec)) {
    const std::string m = c.mnist_dir;
    std::printf("creating %s from %s\n", c.data.c_str(), m.c_str());
    WriteOptions o;
    o.num_shards = c.shards;
    convert_idx(m + "/train-images-idx3-ubyte", m + "/train-labels-idx1-ubyte", c.data, o, preset_class_names("mnist"));
  }
  auto set = ShardSet::open(c.data);
  DL_REQUIRE(set->labelled(), c.data << ": the benchmark needs a labelled data set");
  const int64_t rows_per_step = int64_t{c.classes} * (c.pos_per_class + c.unc_per_class);
  std::printf("data set %s: %lld samples, %s, %d shards; %lld rows per step (%d classes x (%d pos + %d unc))\n",
              c.data.c_str(), static_cast<long long>(set->size()), set->spec().describe().c_str(), set->num_shards(),
              static_cast<long long>(rows_per_step), c.classes, c.pos_per_class, c.unc_per_class);
  std::printf("torch intra-op threads: %d; files are in the OS page cache after the warm-up (warm reads)\n",
              at::get_num_threads());

  // Warm-up: the page cache and HDF5's chunk cache.
  for (int t = 0; t < 5; ++t) load_step(*set, c.seed, plan(1000 + t), 0, 1);

  // 1. Random-access reads: one HDF5 read per row (baseline) vs the batched read per shard.
  std::vector<std::vector<int64_t>> steps;
  for (int t = 0; t < c.steps; ++t) {
    StepIndices s = draw_step_indices(*set, c.seed, plan(t));
    s.positives.insert(s.positives.end(), s.unconditional.begin(), s.unconditional.end());
    steps.push_back(std::move(s.positives));
  }
  Stopwatch sw;
  for (const auto& idx : steps)
    for (int64_t g : idx) {
      auto [shard, row] = set->locate(g);
      set->read_shard_rows(shard, row, 1);
    }
  const double per_row_s = sw.seconds();
  sw.reset();
  for (const auto& idx : steps) set->read_stored(idx);
  const double batched_s = sw.seconds();
  const double n_rows = static_cast<double>(steps.size()) * rows_per_step;
  std::printf("\n[random-access reads, %d batches of %lld rows]\n", c.steps, static_cast<long long>(rows_per_step));
  std::printf("  one HDF5 read per row (baseline): %9.0f rows/s  %7.1f batches/s\n", n_rows / per_row_s, steps.size() / per_row_s);
  std::printf("  batched read per shard          : %9.0f rows/s  %7.1f batches/s  = %.2fx baseline\n", n_rows / batched_s,
              steps.size() / batched_s, per_row_s / batched_s);

  // 2. Whole steps (draw + read + decode to float): synchronous vs prefetched, loader alone.
  sw.reset();
  for (int t = 0; t < c.steps; ++t) load_step(*set, c.seed, plan(t), 0, 1);
  const double sync_s = sw.seconds();
  double pre_s = 0;
  {
    LoaderOptions o;
    o.seed = c.seed;
    o.depth = c.depth;
    sw.reset();
    PrefetchLoader loader(set, o, plan);
    for (int t = 0; t < c.steps; ++t) loader.next();
    pre_s = sw.seconds();
  }
  std::printf("\n[whole steps, draw + read + decode, no compute]\n");
  std::printf("  synchronous load_step (baseline): %7.1f steps/s\n", c.steps / sync_s);
  std::printf("  prefetch thread, depth %d        : %7.1f steps/s  = %.2fx baseline\n", c.depth, c.steps / pre_s,
              sync_s / pre_s);

  // 3. Share of a (simulated) training step. The three variants run interleaved in rounds so
  // that load from other processes on the machine hits them alike.
  FakeStep step;
  {
    Stopwatch cal;
    for (int i = 0; i < 3; ++i) step.run();
    const double one = cal.seconds() / 3;
    step.iters = std::max(1, static_cast<int>(c.step_ms / 1000.0 / std::max(one, 1e-6)));
  }
  const int rounds = 5, per_round = std::max(1, c.steps / rounds), n = rounds * per_round;
  double compute_s = 0, with_sync_s = 0, with_pre_s = 0, waited = 0, loading = 0;
  uint64_t next_step = 0;
  for (int r = 0; r < rounds; ++r) {
    sw.reset();
    for (int t = 0; t < per_round; ++t) step.run();
    compute_s += sw.seconds();
    sw.reset();
    for (int t = 0; t < per_round; ++t) {
      StepBatch b = load_step(*set, c.seed, plan(next_step++), 0, 1);
      step.run();
    }
    with_sync_s += sw.seconds();
    LoaderOptions o;
    o.seed = c.seed;
    o.depth = c.depth;
    o.first_step = next_step;
    PrefetchLoader loader(set, o, plan);
    loader.next();  // the first step of a fresh loader is never hidden; measure the steady state
    const double first_wait = loader.wait_seconds(), first_load = loader.load_seconds();
    sw.reset();
    for (int t = 0; t < per_round; ++t) {
      StepBatch b = loader.next();
      step.run();
    }
    with_pre_s += sw.seconds();
    waited += loader.wait_seconds() - first_wait;
    loading += loader.load_seconds() - first_load;
    next_step += per_round + 1;
  }
  auto share = [&](double total) { return 100.0 * std::max(0.0, total - compute_s) / total; };
  std::printf("\n[simulated training step: %d chained 512x512 matmuls = %.1f ms (compute only, baseline); "
              "%d steps in %d interleaved rounds]\n", step.iters, 1000.0 * compute_s / n, n, rounds);
  std::printf("  step + synchronous load : %7.1f ms/step  loader share %5.1f%%\n", 1000.0 * with_sync_s / n,
              share(with_sync_s));
  std::printf("  step + prefetched load  : %7.1f ms/step  loader share %5.1f%% of wall time; next() blocked "
              "%.3f ms/step = %.2f%% of the step  (target < 5%%)\n",
              1000.0 * with_pre_s / n, share(with_pre_s), 1000.0 * waited / n, 100.0 * waited / with_pre_s);
  std::printf("  the prefetch thread worked %.2f ms per step (%.1f%% of a step) off the critical path\n",
              1000.0 * loading / n, 100.0 * loading / with_pre_s);
  std::printf("  (wall-time shares are only meaningful on an otherwise idle machine; 'blocked' is the\n"
              "   loader's direct cost to the step whatever the load)\n");
  return 0;
}

}  // namespace
}  // namespace driftlab::data

int main(int argc, char** argv) {
  return driftlab::run_tool(argc, argv, "data_bench: data loader throughput and its share of a training step",
                            [] { return driftlab::data::body(driftlab::data::config_from_flags()); });
}
