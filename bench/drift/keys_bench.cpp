// keys_bench: where the time of the multi-scale feature keys goes, per key family, on random
// feature maps of the shapes of a class-conditional image step (default: the MNIST config's
// encoder, 16x28x28, 32x14x14 and 64x7x7, 10 classes x 32 generated, 32 positives, 8
// unconditional). Times (best of --reps, wall): building the keys (the transforms), the field,
// and the loss with its backward pass into the feature maps. Prints figures; not a test.
#include <cstdio>
#include <map>
#include <sstream>
#include <vector>
#include <thread>

#include <gflags/gflags.h>
#include <torch/torch.h>

#include "common/check.h"
#include "common/timer.h"
#include "common/tool_main.h"
#include "drift/features.h"

DEFINE_int32(threads, 1, "LibTorch intra-op threads");
DEFINE_int32(reps, 3, "timed repetitions (the best is reported), after one warm-up");
DEFINE_int64(classes, 10, "classes per step (K)");
DEFINE_int64(gen, 32, "generated samples per class (N)");
DEFINE_int64(pos, 32, "positives per class (P)");
DEFINE_int64(unc, 8, "unconditional negatives per class (U)");
DEFINE_string(maps, "16x28x28,32x14x14,64x7x7", "feature maps CxHxW, comma separated");
DEFINE_bool(per_location, true, "per-location keys");
DEFINE_bool(patch, true, "2x2 and 4x4 patch keys");
DEFINE_bool(fused, true, "the field's fused CPU loops (false: its chain of tensor operations)");

namespace {

using namespace driftlab;
using torch::Tensor;

struct Times {
  double keys = 0, field = 0, backward = 0;
};

std::vector<std::vector<int64_t>> parse_maps(const std::string& s) {
  std::vector<std::vector<int64_t>> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    int64_t c = 0, h = 0, w = 0;
    DL_REQUIRE(std::sscanf(item.c_str(), "%ldx%ldx%ld", &c, &h, &w) == 3 && c > 0 && h > 0 && w > 0,
               "--maps: expected CxHxW items, got '" << item << "'");
    out.push_back({c, h, w});
  }
  return out;
}

// The bench's settings, typed: filled from the flags in one place (config_from_flags), validated once.
struct KeysBenchConfig {
  int threads = 1;
  int reps = 3;                          // timed repetitions after one warm-up; >= 1
  int64_t classes = 10, gen = 32, pos = 32, unc = 8;  // K, N, P, U
  std::vector<std::vector<int64_t>> maps;  // feature maps {C, H, W}
  bool per_location = true, patch = true, fused = true;
};

KeysBenchConfig config_from_flags() {
  KeysBenchConfig c;
  c.threads = FLAGS_threads;
  c.reps = FLAGS_reps;
  c.classes = FLAGS_classes, c.gen = FLAGS_gen, c.pos = FLAGS_pos, c.unc = FLAGS_unc;
  c.maps = parse_maps(FLAGS_maps);
  c.per_location = FLAGS_per_location, c.patch = FLAGS_patch, c.fused = FLAGS_fused;
  return c;
}

void validate(const KeysBenchConfig& c) {
  DL_REQUIRE(c.threads >= 1, "--threads must be >= 1, got " << c.threads);
  DL_REQUIRE(c.reps >= 1, "--reps must be >= 1, got " << c.reps);
}

int run(const KeysBenchConfig& c) {
  validate(c);
  torch::set_num_threads(c.threads);
  torch::manual_seed(0);
  const int64_t K = c.classes, N = c.gen, P = c.pos, U = c.unc;
  std::vector<Tensor> gen, pos, unc;
  for (const auto& m : c.maps) {
    gen.push_back(torch::randn({K * N, m[0], m[1], m[2]}).requires_grad_(true));
    pos.push_back(torch::randn({K * P, m[0], m[1], m[2]}));
    unc.push_back(torch::randn({K * U, m[0], m[1], m[2]}));
  }
  Tensor unc_weight = torch::full({K}, drift::cfg_unconditional_weight(2.0, N, U));
  drift::KeyOptions ko;
  ko.per_location = c.per_location;
  ko.patch2 = ko.patch4 = c.patch;
  drift::FieldOptions fo;
  drift::Workspace ws;
  fo.workspace = &ws;
  fo.fused_cpu_loops = c.fused;
  std::map<std::string, Times> best;
  std::vector<std::string> order;
  Times total_best{1e30, 1e30, 1e30};
  for (int rep = 0; rep <= c.reps; ++rep) {
    Times total;
    for (size_t m = 0; m < gen.size(); ++m) {
      drift::GroupedFeatures f;
      f.gen = gen[m], f.pos = pos[m], f.unc = unc[m], f.unc_weight = unc_weight, f.classes = K;
      Stopwatch sw;
      auto keys = drift::feature_map_keys(f, "f" + std::to_string(m), ko);
      const double tk = sw.seconds() / keys.size();
      for (auto& k : keys) {
        Times t;
        t.keys = tk;
        sw.reset();
        auto r = drift::drift_loss(k.problem, fo);
        t.field = sw.seconds();
        sw.reset();
        // Keys of one transform (a patch mean and its std) share a graph: keep it for the next key.
        r.loss.backward({}, /*retain_graph=*/true);
        t.backward = sw.seconds();
        total.keys += t.keys, total.field += t.field, total.backward += t.backward;
        if (rep == 0) {
          order.push_back(k.name);
          continue;
        }
        auto& b = best.try_emplace(k.name, Times{1e30, 1e30, 1e30}).first->second;
        b.keys = std::min(b.keys, t.keys), b.field = std::min(b.field, t.field), b.backward = std::min(b.backward, t.backward);
      }
      gen[m].mutable_grad() = Tensor();
    }
    if (rep > 0) {
      total_best.keys = std::min(total_best.keys, total.keys);
      total_best.field = std::min(total_best.field, total.field);
      total_best.backward = std::min(total_best.backward, total.backward);
    }
  }
  std::printf("%-14s %10s %10s %10s %10s   (ms, best of %d, %d thread(s))\n", "key", "problems", "keys", "field",
              "backward", c.reps, c.threads);
  for (const auto& name : order) {
    const auto& b = best[name];
    std::printf("%-14s %10s %10.2f %10.2f %10.2f\n", name.c_str(), "", 1e3 * b.keys, 1e3 * b.field, 1e3 * b.backward);
  }
  std::printf("%-14s %10s %10.2f %10.2f %10.2f   total %.2f ms\n", "all", "", 1e3 * total_best.keys,
              1e3 * total_best.field, 1e3 * total_best.backward,
              1e3 * (total_best.keys + total_best.field + total_best.backward));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return driftlab::run_tool(argc, argv,
                            "keys_bench: time of the multi-scale drift keys per key family (prints figures; not a test)",
                            [] { return run(config_from_flags()); });
}
