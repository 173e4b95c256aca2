// drift_ckpt: inspect and verify sharded checkpoints. The flags are read in main() only, into one
// small config per subcommand.
#include <gflags/gflags.h>

#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "common/check.h"
#include "common/tool_main.h"
#include "ckpt/checkpoint.h"

DEFINE_bool(flags, true, "inspect: also print the resolved flags of the run stored in the manifest");
DEFINE_bool(verify, false, "inspect: also read every tensor and check its size and checksum");
DEFINE_double(tol, 0.0, "compare: largest allowed |a - b| per element (0: bit-identical)");
DEFINE_string(prefix, "", "compare: only tensors whose name starts with this (e.g. model/)");

namespace {

using namespace driftlab;

// One typed config per subcommand, filled from the flags and arguments in main() only.
struct InspectConfig {
  std::string step_dir;
  bool flags = true;    // also print the run record's flags
  bool verify = false;  // also read every tensor and check its size and checksum
};

struct ListConfig {
  std::string root;  // a run directory (its checkpoints/ folder) or a checkpoints folder
};

struct CompareConfig {
  std::string a, b;    // two step directories
  double tol = 0.0;    // largest allowed |a - b| per element; 0: bit-identical
  std::string prefix;  // only tensors whose name starts with this; empty: all (the sets must match)
};

void validate(const CompareConfig& c) {
  DL_REQUIRE(c.tol >= 0, "--tol must be >= 0 (0: bit-identical), got " << c.tol);
}

int compare(const CompareConfig& c) {
  validate(c);
  auto ma = ckpt::read_manifest(c.a), mb = ckpt::read_manifest(c.b);
  auto names = ckpt::tensor_names(ma);
  DL_REQUIRE(names == ckpt::tensor_names(mb) || !c.prefix.empty(),
             "the checkpoints hold different tensor sets (" << names.size() << " vs " << ckpt::tensor_names(mb).size() << " tensors)");
  double worst = 0;
  std::string worst_name;
  int compared = 0;
  for (const auto& n : names) {
    if (n.rfind(c.prefix, 0) != 0) continue;
    auto a = ckpt::read_tensor(c.a, ma, n), b = ckpt::read_tensor(c.b, mb, n);
    DL_REQUIRE(a.sizes() == b.sizes(), "tensor " << n << ": shapes " << a.sizes() << " vs " << b.sizes());
    const double d = a.numel() ? (a.to(torch::kFloat64) - b.to(torch::kFloat64)).abs().max().item<double>() : 0.0;
    if (!(d <= worst)) { worst = d; worst_name = n; }
    ++compared;
  }
  std::cout << "compared " << compared << " tensors: max |a - b| = " << worst
            << (worst_name.empty() ? "" : " (" + worst_name + ")") << ", tolerance " << c.tol << "\n";
  return worst <= c.tol ? 0 : 1;
}

int inspect(const InspectConfig& c) {
  auto m = ckpt::read_manifest(c.step_dir);
  std::cout << ckpt::describe(m, c.flags);
  if (c.verify) {
    for (const auto& e : m.tensors()) ckpt::read_entry(c.step_dir, e);
    std::cout << "verified " << m.tensors_size() << " tensor entries: sizes and checksums match\n";
  }
  return 0;
}

int list(const ListConfig& c) {
  std::string root = c.root;
  if (std::filesystem::is_directory(std::filesystem::path(root) / "checkpoints")) root += "/checkpoints";
  DL_REQUIRE(std::filesystem::is_directory(root), "drift_ckpt list: '" << c.root << "' is not a directory");
  std::vector<std::string> incomplete;
  const auto done = ckpt::list_complete(root, &incomplete);
  for (const auto& s : done) std::cout << "complete    " << s.path << "\n";
  for (const auto& p : incomplete) std::cout << "incomplete  " << p << " (no valid manifest)\n";
  if (done.empty() && incomplete.empty()) std::cout << "no checkpoints under " << root << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return driftlab::run_tool(argc, argv,
      "drift_ckpt: inspect driftlab checkpoints.\n"
      "Usage:\n"
      "  drift_ckpt inspect STEP_DIR   print the manifest (step, flags, tensors, sizes)\n"
      "  drift_ckpt list ROOT          list complete and incomplete checkpoints under ROOT\n"
      "  drift_ckpt compare A B        compare every tensor of two checkpoints (exit 1 beyond --tol)\n",
      [] {
        const auto& args = tool_args();
        DL_REQUIRE(args.size() >= 2, "expected a subcommand (inspect, list or compare) and a directory; see --help");
        // The only place that reads the flags.
        if (args[0] == "compare") {
          DL_REQUIRE(args.size() == 3, "compare expects two step directories");
          return compare(CompareConfig{args[1], args[2], FLAGS_tol, FLAGS_prefix});
        }
        DL_REQUIRE(args.size() == 2, "expected a subcommand (inspect or list) and a directory; see --help");
        if (args[0] == "inspect") return inspect(InspectConfig{args[1], FLAGS_flags, FLAGS_verify});
        if (args[0] == "list") return list(ListConfig{args[1]});
        throw UserError("unknown subcommand '" + args[0] + "' (expected inspect or list)");
      });
}
