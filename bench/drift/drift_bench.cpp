// drift_bench: speed of the drifting field against the paper's Algorithm 2 written plainly in
// LibTorch (measured in the same run), achieved GFLOP/s next to a GEMM peak measured in the
// same run, and the peak allocated memory of the dense and tiled paths. Prints figures; not a test.
#include <atomic>
#include <cmath>
#include <cstdio>
#include <thread>
#include <ctime>

#include <c10/core/CPUAllocator.h>
#include <gflags/gflags.h>
#include <torch/torch.h>
#include <torch/version.h>

#include "common/check.h"
#include "common/timer.h"
#include "common/tool_main.h"
#include "drift/field.h"

DEFINE_int32(threads, static_cast<int32_t>(std::thread::hardware_concurrency()),
             "LibTorch intra-op threads (default: all cores of this machine)");
DEFINE_int32(reps, 3, "timed repetitions per measurement (the best is reported: robust to other load on a shared machine), after one warm-up");
DEFINE_string(shapes, "small,large,batched",
              "comma-separated shapes to time: small (G=1, N=P=Q=2048, D=64), large (G=1, N=P=Q=4096, "
              "D=256), batched (G=256, N=64, P=64, Q=80, D=128)");
DEFINE_bool(cpu_time, false,
            "report process CPU time instead of wall time: with --threads=1 and OPENBLAS_NUM_THREADS=1 it "
            "estimates the uncontended single-core time on a machine busy with other work");
DEFINE_bool(baseline, true, "time the baseline (off: only the drift paths, speed-ups are then meaningless)");
DEFINE_int64(memory_n, 16384, "N = P = Q of the dense-vs-tiled peak-memory measurement (D=256); 0 skips it");
DEFINE_string(memory_paths, "tiled,dense", "paths whose peak memory is measured (comma-separated: tiled, dense)");
DEFINE_int64(tile_mb, 10, "tile budget of the tiled path in MiB (FieldOptions::tile_bytes)");
DEFINE_bool(fused, true, "the field's fused CPU loops (false: its chain of tensor operations, what CUDA runs)");
DEFINE_int64(dense_tile_elems, 1 << 18, "matrix entries per tile of the dense path's passes (FieldOptions::dense_tile_elems)");

namespace {

using torch::Tensor;
using namespace driftlab;

// ---- allocation accounting: a wrapper around LibTorch's CPU allocator -----------------------
std::atomic<int64_t> g_current{0}, g_peak{0};

struct Counted {
  c10::DataPtr inner;
  int64_t bytes;
};

class CountingAllocator final : public c10::Allocator {
 public:
  explicit CountingAllocator(c10::Allocator* base) : base_(base) {}
  // LibTorch 2.3 made Allocator::allocate non-const and added the pure virtual copy_data (used
  // by Allocator::clone); the wrapped CPU allocator's blocks are plain memory.
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 3)
  c10::DataPtr allocate(size_t n) override { return counted(n); }
  void copy_data(void* dest, const void* src, std::size_t count) const override {
    default_copy_data(dest, src, count);
  }
#else
  c10::DataPtr allocate(size_t n) const override { return counted(n); }
#endif
  c10::DeleterFnPtr raw_deleter() const override { return nullptr; }

 private:
  c10::DataPtr counted(size_t n) const {
    c10::DataPtr inner = base_->allocate(n);
    void* data = inner.get();
    const int64_t now = g_current += static_cast<int64_t>(n);
    int64_t peak = g_peak.load();
    while (now > peak && !g_peak.compare_exchange_weak(peak, now)) {
    }
    return {data, new Counted{std::move(inner), static_cast<int64_t>(n)}, &release, c10::Device(c10::kCPU)};
  }
  static void release(void* ctx) {
    auto* c = static_cast<Counted*>(ctx);
    g_current -= c->bytes;
    delete c;
  }
  c10::Allocator* base_;
};

// ---- the baseline: Algorithm 2 of the paper, as one would first write it ---------------------
Tensor baseline_compute_v(const Tensor& x, const Tensor& yp, const Tensor& yn, double tau, bool floor) {
  const int64_t N = x.size(1), P = yp.size(1);
  const double sqrt_d = std::sqrt(static_cast<double>(x.size(2)));
  Tensor dist_pos = torch::cdist(x, yp) / sqrt_d;  // features are normalized: distance / sqrt(D) = d / s
  Tensor dist_neg = torch::cdist(x, yn) / sqrt_d;
  Tensor eye = torch::zeros({N, yn.size(1)}, x.options());
  eye.narrow(1, 0, N).fill_diagonal_(1e6);
  dist_neg = dist_neg + eye;  // ignore self
  Tensor logit = torch::cat({-dist_pos / tau, -dist_neg / tau}, 2);
  Tensor a_row = logit.softmax(-1);
  Tensor a_col = logit.softmax(-2);
  Tensor A = floor ? torch::sqrt(torch::clamp_min(a_row * a_col, 1e-6)) : torch::sqrt(a_row * a_col);
  A.narrow(2, P, N).diagonal(0, 1, 2).zero_();  // the floor must not revive the self pairs
  Tensor A_pos = A.narrow(2, 0, P), A_neg = A.narrow(2, P, yn.size(1));
  Tensor W_pos = A_pos * A_neg.sum(-1, true);
  Tensor W_neg = A_neg * A_pos.sum(-1, true);
  return torch::bmm(W_pos, yp) - torch::bmm(W_neg, yn);
}

Tensor baseline_field(const Tensor& x, const Tensor& yp, const Tensor& yn, const std::vector<double>& taus) {
  torch::NoGradGuard no_grad;
  const int64_t N = x.size(1), D = x.size(2);
  Tensor dp = torch::cdist(x, yp), dn = torch::cdist(x, yn);
  const double masked = static_cast<double>(x.size(0) * N);
  const double s = ((dp.sum() + dn.sum() - dn.narrow(2, 0, N).diagonal(0, 1, 2).sum()) /
                    (static_cast<double>(dp.numel() + dn.numel()) - masked))
                       .item<double>();
  const double f = std::sqrt(static_cast<double>(D)) / s;
  Tensor xs = x * f, yps = yp * f, yns = yn * f;
  Tensor V = torch::zeros_like(x);
  for (double tau : taus) {
    Tensor v = baseline_compute_v(xs, yps, yns, tau, true);
    const double lambda = torch::sqrt(v.pow(2).sum(-1).mean() / static_cast<double>(D)).item<double>();
    V += v / std::max(lambda, 1e-8);
  }
  return V;
}

struct Shape {
  std::string name;
  int64_t G, N, P, Q, D;
};

// The bench's settings, typed: filled from the flags in one place (config_from_flags), validated once.
struct DriftBenchConfig {
  int threads = 1;
  int reps = 3;                    // timed repetitions after one warm-up; >= 1
  std::string shapes = "small,large,batched";
  bool cpu_time = false;           // process CPU time instead of wall time
  bool baseline = true;            // time the plain LibTorch baseline
  int64_t memory_n = 16384;        // N = P = Q of the peak-memory measurement; 0 skips it
  std::string memory_paths = "tiled,dense";
  int64_t tile_mb = 10;
  bool fused = true;
  int64_t dense_tile_elems = 1 << 18;
};

DriftBenchConfig config_from_flags() {
  DriftBenchConfig c;
  c.threads = FLAGS_threads, c.reps = FLAGS_reps, c.shapes = FLAGS_shapes, c.cpu_time = FLAGS_cpu_time;
  c.baseline = FLAGS_baseline, c.memory_n = FLAGS_memory_n, c.memory_paths = FLAGS_memory_paths;
  c.tile_mb = FLAGS_tile_mb, c.fused = FLAGS_fused, c.dense_tile_elems = FLAGS_dense_tile_elems;
  return c;
}

void validate(const DriftBenchConfig& c) {
  DL_REQUIRE(c.threads >= 1, "--threads must be >= 1, got " << c.threads);
  DL_REQUIRE(c.reps >= 1, "--reps must be >= 1, got " << c.reps);
}

double process_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

double best_seconds(const std::function<void()>& fn, const DriftBenchConfig& cfg) {
  fn();  // warm-up (allocator, thread pool, BLAS buffers)
  std::vector<double> t;
  for (int r = 0; r < cfg.reps; ++r) {
    Stopwatch sw;
    const double cpu0 = process_cpu_seconds();
    fn();
    t.push_back(cfg.cpu_time ? process_cpu_seconds() - cpu0 : sw.seconds());
  }
  std::sort(t.begin(), t.end());
  return t.front();
}

double gemm_peak_gflops(const DriftBenchConfig& cfg) {
  Tensor a = torch::randn({2048, 2048}), b = torch::randn({2048, 2048});
  const double sec = best_seconds([&] { torch::mm(a, b); }, cfg);
  return 2.0 * 2048 * 2048 * 2048 / sec / 1e9;
}

void time_shape(const Shape& s, const std::vector<double>& taus, double peak, const DriftBenchConfig& cfg) {
  torch::manual_seed(1);
  Tensor x = torch::randn({s.G, s.N, s.D});
  Tensor yp = torch::randn({s.G, s.P, s.D}) + 0.2;
  Tensor yn = torch::cat({x, torch::randn({s.G, s.Q - s.N, s.D})}, 1);
  drift::Problem p;
  p.x = x, p.y_pos = yp, p.y_neg = yn;
  drift::FieldOptions o;
  o.taus = taus;
  o.fused_cpu_loops = cfg.fused;
  o.tile_bytes = cfg.tile_mb << 20;
  o.dense_tile_elems = cfg.dense_tile_elems;
  Tensor v_base, v_dense, v_tiled;
  const double t_base = cfg.baseline ? best_seconds([&] { v_base = baseline_field(x, yp, yn, taus); }, cfg) : 1.0;
  if (!cfg.baseline) v_base = torch::ones_like(x);
  o.path = drift::Path::kAuto;
  drift::Path chosen = drift::Path::kAuto;
  const double t_fresh = best_seconds([&] { drift::drift_field(p, o); }, cfg);
  drift::Workspace ws;  // what a training loop passes: scratch kept across steps
  o.workspace = &ws;
  const double t_auto = best_seconds([&] {
    auto r = drift::drift_field(p, o);
    v_dense = r.V;
    chosen = r.path;
  }, cfg);
  drift::Workspace ws_tiled;
  o.workspace = &ws_tiled;
  o.path = drift::Path::kTiled;
  const double t_tiled = best_seconds([&] { v_tiled = drift::drift_field(p, o).V; }, cfg);
  const double T = static_cast<double>(taus.size());
  // Nominal work: the distance product once plus one A @ y product per temperature.
  const double flops = (1.0 + T) * 2.0 * s.G * s.N * double(s.P + s.Q) * s.D;
  auto gf = [&](double sec) { return flops / sec / 1e9; };
  std::printf("%-8s G=%-3lld N=%-5lld P=%-5lld Q=%-5lld D=%-4lld  baseline %8.1f ms (%6.1f GFLOP/s)\n", s.name.c_str(),
              (long long)s.G, (long long)s.N, (long long)s.P, (long long)s.Q, (long long)s.D, t_base * 1e3, gf(t_base));
  std::printf("         %-5s(auto) %8.1f ms (%6.1f GFLOP/s, %4.0f%% of GEMM peak)  speed-up %.2fx\n",
              drift::path_name(chosen), t_auto * 1e3, gf(t_auto), 100 * gf(t_auto) / peak, t_base / t_auto);
  std::printf("         %-5s(auto, no workspace: fresh buffers every call) %8.1f ms  speed-up %.2fx\n",
              drift::path_name(chosen), t_fresh * 1e3, t_base / t_fresh);
  std::printf("         tiled       %8.1f ms (%6.1f GFLOP/s, %4.0f%% of GEMM peak)  speed-up %.2fx\n", t_tiled * 1e3,
              gf(t_tiled), 100 * gf(t_tiled) / peak, t_base / t_tiled);
  const double scale = v_base.abs().max().item<double>();
  std::printf("         max |V - V_baseline| / max |V_baseline|: %s %.2e, tiled %.2e\n", drift::path_name(chosen),
              (v_dense - v_base).abs().max().item<double>() / scale,
              (v_tiled - v_base).abs().max().item<double>() / scale);
}

void memory_run(const DriftBenchConfig& cfg) {
  const int64_t n = cfg.memory_n;
  const int64_t D = 256;
  torch::manual_seed(2);
  Tensor x = torch::randn({1, n, D});
  Tensor yp = torch::randn({1, n, D});
  Tensor yn = torch::cat({x, torch::randn({1, 0, D})}, 1);
  const double input_mib = (x.nbytes() + yp.nbytes() + yn.nbytes()) / 1048576.0;
  drift::Problem p;
  p.x = x, p.y_pos = yp, p.y_neg = yn;
  std::printf("\npeak memory at N=P=Q=%lld, D=%lld, 3 temperatures (inputs: %.0f MiB)\n", (long long)n,
              (long long)D, input_mib);
  for (drift::Path path : {drift::Path::kTiled, drift::Path::kDense}) {
    if (("," + cfg.memory_paths + ",").find(std::string(",") + drift::path_name(path) + ",") == std::string::npos)
      continue;
    drift::FieldOptions o;
    o.path = path;
    o.fused_cpu_loops = cfg.fused;
    o.tile_bytes = cfg.tile_mb << 20;
    g_peak = g_current.load();
    const int64_t before = g_current.load();
    Stopwatch sw;
    Tensor V = drift::drift_field(p, o).V;
    const double sec = sw.seconds();
    std::printf("  %-5s: %8.1f MiB allocated beyond the inputs at peak (output V included), %.1f s\n",
                drift::path_name(path), (g_peak.load() - before) / 1048576.0, sec);
  }
  std::printf("  (counted: every LibTorch CPU tensor allocation, through a wrapper of the CPU allocator;\n"
              "   not counted: OpenBLAS's own fixed work buffers)\n");
}

}  // namespace

int main(int argc, char** argv) {
  return run_tool(argc, argv,
                  "drift_bench: the drifting field vs the paper's Algorithm 2 in plain LibTorch.\n"
                  "Usage: drift_bench [--threads=N] [--reps=3] [--shapes=small,large,batched] [--memory_n=16384]",
                  [] {
                    static CountingAllocator counting(c10::GetCPUAllocator());
                    c10::SetCPUAllocator(&counting, /*priority=*/100);
                    const DriftBenchConfig cfg = config_from_flags();
                    validate(cfg);
                    torch::set_num_threads(cfg.threads);
                    const std::vector<double> taus{0.02, 0.05, 0.2};
                    const double peak = gemm_peak_gflops(cfg);
                    std::printf("threads %d; GEMM peak (2048^3 sgemm, same run): %.1f GFLOP/s\n", cfg.threads, peak);
                    std::printf("GFLOP/s below count the nominal work (1 + T) * 2 G N (P+Q) D for both codes\n\n");
                    const std::vector<Shape> all{{"small", 1, 2048, 2048, 2048, 64},
                                                 {"large", 1, 4096, 4096, 4096, 256},
                                                 {"batched", 256, 64, 64, 80, 128}};
                    std::string wanted = "," + cfg.shapes + ",";
                    for (const Shape& s : all)
                      if (wanted.find("," + s.name + ",") != std::string::npos) time_shape(s, taus, peak, cfg);
                    if (cfg.memory_n > 0) memory_run(cfg);
                    return 0;
                  });
}
