// drift_ckpt: inspect and verify sharded checkpoints.
#include <gflags/gflags.h>

#include <iostream>

#include "common/check.h"
#include "common/tool_main.h"
#include "trainer/checkpoint.h"

DEFINE_bool(flags, true, "inspect: also print the resolved flags of the run stored in the manifest");
DEFINE_bool(verify, false, "inspect: also read every tensor and check its size and checksum");

int main(int argc, char** argv) {
  return driftlab::run_tool(argc, argv,
      "drift_ckpt: inspect driftlab checkpoints.\n"
      "Usage:\n"
      "  drift_ckpt inspect STEP_DIR   print the manifest (step, flags, tensors, sizes)\n"
      "  drift_ckpt list ROOT          list complete and incomplete checkpoints under ROOT\n",
      [] {
        using namespace driftlab;
        const auto& args = tool_args();
        DL_REQUIRE(args.size() == 2, "expected a subcommand (inspect or list) and a directory; see --help");
        if (args[0] == "inspect") {
          auto m = ckpt::read_manifest(args[1]);
          std::cout << ckpt::describe(m, FLAGS_flags);
          if (FLAGS_verify) {
            for (const auto& e : m.tensors()) ckpt::read_entry(args[1], e);
            std::cout << "verified " << m.tensors_size() << " tensor entries: sizes and checksums match\n";
          }
        } else if (args[0] == "list") {
          std::vector<std::string> incomplete;
          for (const auto& s : ckpt::list_complete(args[1], &incomplete)) std::cout << "complete    " << s.path << "\n";
          for (const auto& p : incomplete) std::cout << "incomplete  " << p << " (no valid manifest)\n";
        } else {
          throw UserError("unknown subcommand '" + args[0] + "' (expected inspect or list)");
        }
        return 0;
      });
}
