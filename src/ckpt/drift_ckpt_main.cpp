// drift_ckpt: inspect and verify sharded checkpoints.
#include <gflags/gflags.h>

#include <filesystem>
#include <iostream>

#include <torch/torch.h>

#include "common/check.h"
#include "common/tool_main.h"
#include "ckpt/checkpoint.h"

DEFINE_bool(flags, true, "inspect: also print the resolved flags of the run stored in the manifest");
DEFINE_bool(verify, false, "inspect: also read every tensor and check its size and checksum");
DEFINE_double(tol, 0.0, "compare: largest allowed |a - b| per element (0: bit-identical)");
DEFINE_string(prefix, "", "compare: only tensors whose name starts with this (e.g. model/)");

int main(int argc, char** argv) {
  return driftlab::run_tool(argc, argv,
      "drift_ckpt: inspect driftlab checkpoints.\n"
      "Usage:\n"
      "  drift_ckpt inspect STEP_DIR   print the manifest (step, flags, tensors, sizes)\n"
      "  drift_ckpt list ROOT          list complete and incomplete checkpoints under ROOT\n"
      "  drift_ckpt compare A B        compare every tensor of two checkpoints (exit 1 beyond --tol)\n",
      [] {
        using namespace driftlab;
        const auto& args = tool_args();
        DL_REQUIRE(args.size() >= 2, "expected a subcommand (inspect, list or compare) and a directory; see --help");
        if (args[0] == "compare") {
          DL_REQUIRE(args.size() == 3, "compare expects two step directories");
          auto ma = ckpt::read_manifest(args[1]), mb = ckpt::read_manifest(args[2]);
          auto names = ckpt::tensor_names(ma);
          DL_REQUIRE(names == ckpt::tensor_names(mb) || !FLAGS_prefix.empty(),
                     "the checkpoints hold different tensor sets (" << names.size() << " vs " << ckpt::tensor_names(mb).size() << " tensors)");
          double worst = 0;
          std::string worst_name;
          int compared = 0;
          for (const auto& n : names) {
            if (n.rfind(FLAGS_prefix, 0) != 0) continue;
            auto a = ckpt::read_tensor(args[1], ma, n), b = ckpt::read_tensor(args[2], mb, n);
            DL_REQUIRE(a.sizes() == b.sizes(), "tensor " << n << ": shapes " << a.sizes() << " vs " << b.sizes());
            const double d = a.numel() ? (a.to(torch::kFloat64) - b.to(torch::kFloat64)).abs().max().item<double>() : 0.0;
            if (!(d <= worst)) { worst = d; worst_name = n; }
            ++compared;
          }
          std::cout << "compared " << compared << " tensors: max |a - b| = " << worst
                    << (worst_name.empty() ? "" : " (" + worst_name + ")") << ", tolerance " << FLAGS_tol << "\n";
          return worst <= FLAGS_tol ? 0 : 1;
        }
        DL_REQUIRE(args.size() == 2, "expected a subcommand (inspect or list) and a directory; see --help");
        if (args[0] == "inspect") {
          auto m = ckpt::read_manifest(args[1]);
          std::cout << ckpt::describe(m, FLAGS_flags);
          if (FLAGS_verify) {
            for (const auto& e : m.tensors()) ckpt::read_entry(args[1], e);
            std::cout << "verified " << m.tensors_size() << " tensor entries: sizes and checksums match\n";
          }
        } else if (args[0] == "list") {
          // ROOT may be a run directory (its checkpoints/ folder is listed) or a checkpoints folder.
          std::string root = args[1];
          if (std::filesystem::is_directory(std::filesystem::path(root) / "checkpoints")) root += "/checkpoints";
          DL_REQUIRE(std::filesystem::is_directory(root), "drift_ckpt list: '" << args[1] << "' is not a directory");
          std::vector<std::string> incomplete;
          const auto done = ckpt::list_complete(root, &incomplete);
          for (const auto& s : done) std::cout << "complete    " << s.path << "\n";
          for (const auto& p : incomplete) std::cout << "incomplete  " << p << " (no valid manifest)\n";
          if (done.empty() && incomplete.empty()) std::cout << "no checkpoints under " << root << "\n";
        } else {
          throw UserError("unknown subcommand '" + args[0] + "' (expected inspect or list)");
        }
        return 0;
      });
}
