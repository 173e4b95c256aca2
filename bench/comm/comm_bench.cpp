// comm_bench: all-reduce bus bandwidth over message sizes, and bucketed vs one-call-per-parameter
// gradient synchronisation for a model of a few million parameters (ratio printed).
//
//   mpirun -np 2 ./build/bin/comm_bench
//
// Bus bandwidth follows nccl-tests: algbw = bytes / time, busbw = algbw * 2(n-1)/n, comparable
// across world sizes (it is what each link carries in a ring all-reduce). Times are the slowest
// rank's, averaged over the iterations.
#include <gflags/gflags.h>
#include <torch/torch.h>

#include <cstdio>
#include <sstream>
#include <string>
#include <vector>

#include "common/check.h"
#include "common/timer.h"
#include "common/tool_main.h"
#include "comm/communicator.h"
#include "comm/grad_buckets.h"
#include "comm/mpi_communicator.h"
#include "comm/topology.h"

DEFINE_int64(min_bytes, 4 << 10, "Smallest all-reduce message in bytes");
DEFINE_int64(max_bytes, 64 << 20, "Largest all-reduce message in bytes (sizes double from min_bytes)");
DEFINE_int64(bytes_per_trial, 256 << 20, "Bytes all-reduced per timing trial of one message size (sets the iterations)");
DEFINE_int32(trials, 5, "Timing trials per measurement; the best is reported");
DEFINE_int32(blocks, 8, "Blocks of the benchmark model (each Linear(256,1024), Linear(1024,256), LayerNorm(256))");
DEFINE_string(backend, "auto", "Communicator backend: auto (nccl when built with CUDA and a GPU is visible, else mpi), mpi, nccl");
DEFINE_int32(small_tensors, 2048, "Tensors of 1024 floats in the latency-bound gradient sync case");
DEFINE_int32(sync_iters, 10, "Gradient synchronisations per timing trial and method");
DEFINE_string(reduce_chunks, "", "MPI backend: comma-separated reduction chunk sizes in bytes to compare (empty: the default only)");
DEFINE_double(collective_timeout, 600, "Deadline of every collective in seconds, as drift_train's flag (0: no watchdog)");
DEFINE_int32(watchdog_iters, 2000,
             "Latency-bound all-reduces (8 bytes) per trial timed with and without the collective watchdog, "
             "interleaved on two communicators (0: skip)");

namespace driftlab::comm {
namespace {

// The bench's settings, typed: filled from the flags in one place (config_from_flags), validated once.
struct CommBenchConfig {
  int64_t min_bytes = 4 << 10, max_bytes = 64 << 20;  // all-reduce message sizes (doubling)
  int64_t bytes_per_trial = 256 << 20;                // sets the iterations per size
  int trials = 5;                                     // the best is reported
  int blocks = 8;                                     // blocks of the MLP model
  std::string backend = "auto";
  int small_tensors = 2048;
  int sync_iters = 10;
  std::vector<int64_t> reduce_chunks;                 // MPI reduction chunk sizes; empty: the default only
  double collective_timeout = 600;                    // watchdog deadline, seconds (0: none)
  int watchdog_iters = 2000;                          // 8-byte all-reduces per watchdog trial (0: skip)
};

CommBenchConfig config_from_flags() {
  CommBenchConfig c;
  c.min_bytes = FLAGS_min_bytes, c.max_bytes = FLAGS_max_bytes, c.bytes_per_trial = FLAGS_bytes_per_trial;
  c.trials = FLAGS_trials, c.blocks = FLAGS_blocks, c.backend = FLAGS_backend;
  c.small_tensors = FLAGS_small_tensors, c.sync_iters = FLAGS_sync_iters;
  c.collective_timeout = FLAGS_collective_timeout, c.watchdog_iters = FLAGS_watchdog_iters;
  std::stringstream list(FLAGS_reduce_chunks);
  for (std::string item; std::getline(list, item, ',');) c.reduce_chunks.push_back(std::stoll(item));
  return c;
}

void validate(const CommBenchConfig& c) {
  DL_REQUIRE(c.min_bytes >= 4 && c.min_bytes <= c.max_bytes,
             "--min_bytes=" << c.min_bytes << " / --max_bytes=" << c.max_bytes << ": expected 4 <= min_bytes <= max_bytes");
  DL_REQUIRE(c.sync_iters > 0 && c.blocks > 0, "--sync_iters and --blocks must be positive");
  DL_REQUIRE(c.collective_timeout >= 0, "--collective_timeout must be >= 0 (0: no watchdog), got " << c.collective_timeout);
  DL_REQUIRE(c.watchdog_iters >= 0, "--watchdog_iters must be >= 0, got " << c.watchdog_iters);
}

// Runs fn `iters` times after a barrier, `trials` times; returns the best trial's mean seconds
// per call, each trial timed by its slowest rank. The best trial filters out interference from
// other processes on a shared machine.
template <typename Fn>
double timed(Communicator& comm, int iters, Fn&& fn, int trials = 1) {
  double best = 1e300;
  for (int k = 0; k < trials; ++k) {
    comm.barrier();
    Stopwatch sw;
    for (int i = 0; i < iters; ++i) fn();
    torch::Tensor t = torch::tensor({sw.seconds() / iters}, torch::kDouble).to(comm.device());
    comm.all_reduce_max(t);
    best = std::min(best, t.cpu().item<double>());
  }
  return best;
}

void bandwidth_sweep(Communicator& comm, const CommBenchConfig& c) {
  const int n = comm.world_size();
  if (comm.rank() == 0) {
    std::printf("all-reduce (sum, float32, backend %s, %d ranks; best of %d trials)\n", comm.backend().c_str(), n,
                c.trials);
    std::printf("%12s %8s %12s %12s %12s\n", "bytes", "iters", "time_us", "algbw_GB/s", "busbw_GB/s");
  }
  for (int64_t bytes = c.min_bytes; bytes <= c.max_bytes; bytes *= 2) {
    torch::Tensor t = torch::ones({bytes / 4}, torch::TensorOptions().dtype(torch::kFloat).device(comm.device()));
    // About --bytes_per_trial moved per trial, the same count on every rank.
    int iters = static_cast<int>(std::clamp<int64_t>(c.bytes_per_trial / bytes, 3, 1000));
    comm.all_reduce_sum(t);  // warm-up: first touch, connection set-up
    double sec = timed(comm, iters, [&] { comm.all_reduce_sum(t); }, c.trials);
    double algbw = bytes / sec / 1e9;
    double busbw = algbw * 2.0 * (n - 1) / n;
    if (comm.rank() == 0) std::printf("%12ld %8d %12.1f %12.3f %12.3f\n", static_cast<long>(bytes), iters, sec * 1e6, algbw, busbw);
  }
}

// The cost of the collective watchdog where it would show most: 8-byte all-reduces (pure
// latency), on a communicator with the watchdog and one without, trials interleaved.
void watchdog_overhead(Communicator& with, Communicator& without, const CommBenchConfig& c) {
  if (c.watchdog_iters <= 0 || with.world_size() < 2) return;
  torch::Tensor a = torch::ones({2}, torch::TensorOptions().dtype(torch::kFloat).device(with.device()));
  torch::Tensor b = a.clone();
  with.all_reduce_sum(a);
  without.all_reduce_sum(b);
  double t_with = 1e300, t_without = 1e300;
  // The order alternates between trials, so neither variant always runs first.
  for (int k = 0; k < c.trials; ++k) {
    for (int v = 0; v < 2; ++v) {
      if ((v + k) % 2 == 0) t_with = std::min(t_with, timed(with, c.watchdog_iters, [&] { with.all_reduce_sum(a); }));
      else t_without = std::min(t_without, timed(without, c.watchdog_iters, [&] { without.all_reduce_sum(b); }));
    }
  }
  if (with.rank() == 0)
    std::printf("collective watchdog (timeout %g s): 8-byte all_reduce %.2f us with, %.2f us without (ratio %.3f; "
                "best of %d trials of %d calls, %d ranks)\n",
                with.watchdog() ? with.watchdog()->timeout_s() : 0.0, t_with * 1e6, t_without * 1e6,
                t_with / t_without, c.trials, c.watchdog_iters, with.world_size());
}

// Times per-parameter all-reduces against the buckets for gradients of these parameters.
void gradient_sync(Communicator& comm, const CommBenchConfig& c, const std::string& title,
                   std::vector<torch::Tensor> params) {
  int64_t numel = 0;
  for (auto& p : params) {
    p.mutable_grad() = torch::randn_like(p);
    numel += p.numel();
  }
  BucketOptions overlap_opts;
  overlap_opts.overlap = true;
  GradientBuckets bucketed(comm, params);
  GradientBuckets overlapped(comm, params, overlap_opts);
  auto per_param = [&] {
    for (auto& p : params) comm.all_reduce_avg(p.mutable_grad());
  };
  const int iters = c.sync_iters;
  // Warm up each path once (first-touch of buffers, MPI connection set-up).
  per_param();
  bucketed.synchronize();
  overlapped.synchronize();
  // Trials interleave the methods so slow phases of a shared machine hit them alike.
  double t_param = 1e300, t_bucket = 1e300, t_overlap = 1e300;
  for (int k = 0; k < c.trials; ++k) {
    t_param = std::min(t_param, timed(comm, iters, per_param));
    t_bucket = std::min(t_bucket, timed(comm, iters, [&] { bucketed.synchronize(); }));
    t_overlap = std::min(t_overlap, timed(comm, iters, [&] { overlapped.synchronize(); }));
  }
  if (comm.rank() == 0) {
    std::printf("gradient sync, %s: %ld parameters in %zu tensors (%.1f MiB float32), %d ranks, %d iterations x %d trials\n",
                title.c_str(), static_cast<long>(numel), params.size(), numel * 4.0 / (1 << 20), comm.world_size(), iters, c.trials);
    std::printf("  one call per parameter          : %9.3f ms\n", t_param * 1e3);
    std::printf("  %2zu buckets, one at a time       : %9.3f ms   per-parameter / bucketed = %.2f\n",
                bucketed.buckets().size(), t_bucket * 1e3, t_param / t_bucket);
    std::printf("  %2zu buckets, all started at once : %9.3f ms   per-parameter / bucketed = %.2f\n",
                overlapped.buckets().size(), t_overlap * 1e3, t_param / t_overlap);
  }
}

}  // namespace
}  // namespace driftlab::comm

int main(int argc, char** argv) {
  return driftlab::run_tool(argc, argv,
                            "comm_bench: all-reduce bus bandwidth, bucketed gradient sync and the collective watchdog's cost.\n"
                            "Usage: mpirun -np 2 comm_bench [--min_bytes=4096] [--max_bytes=67108864] [--reduce_chunks=1048576,16777216]",
                            [] {
                              using namespace driftlab::comm;
                              const CommBenchConfig c = config_from_flags();
                              validate(c);
                              const Topology& topo = init_topology();
                              CommOptions options;
                              options.watchdog.timeout_s = c.collective_timeout;
                              auto comm = make_communicator(topo, c.backend, options);
                              {
                                CommOptions off;
                                off.watchdog.timeout_s = 0;
                                auto plain = make_communicator(topo, c.backend, off);
                                watchdog_overhead(*comm, *plain, c);
                              }
                              auto* mpi = dynamic_cast<MpiCommunicator*>(comm.get());
                              std::vector<int64_t> chunks = c.reduce_chunks;
                              if (chunks.empty()) chunks.push_back(mpi ? mpi->reduce_chunk_bytes() : 0);
                              for (int64_t chunk : chunks) {
                                DL_REQUIRE(mpi || chunks.size() == 1, "--reduce_chunks applies to the mpi backend only");
                                if (mpi) mpi->set_reduce_chunk_bytes(chunk);
                                if (comm->rank() == 0 && mpi) std::printf("\n== MPI reduction chunk: %ld bytes\n", static_cast<long>(chunk));
                                bandwidth_sweep(*comm, c);
                                // A model of large matrices (bandwidth-bound) ...
                                torch::nn::Sequential model;
                                for (int b = 0; b < c.blocks; ++b) {
                                  model->push_back(torch::nn::Linear(256, 1024));
                                  model->push_back(torch::nn::Linear(1024, 256));
                                  model->push_back(torch::nn::LayerNorm(torch::nn::LayerNormOptions({256})));
                                }
                                model->to(comm->device());
                                gradient_sync(*comm, c, "MLP blocks", model->parameters());
                                // ... and one of many small tensors (latency-bound), as norms and biases are.
                                std::vector<torch::Tensor> small;
                                for (int i = 0; i < c.small_tensors; ++i)
                                  small.push_back(torch::zeros({1024}, torch::TensorOptions().device(comm->device())).requires_grad_());
                                gradient_sync(*comm, c, "small tensors", small);
                              }
                              comm.reset();
                              finalize_topology();
                              return 0;
                            });
}
