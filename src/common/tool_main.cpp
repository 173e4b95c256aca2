// run_tool (see tool_main.h).
#include "common/tool_main.h"

#include <gflags/gflags.h>
#include <mpi.h>

#include <cstdio>
#include <exception>
#include <vector>

#include "common/check.h"
#include "common/logging.h"
#include "driftlab_config.h"

namespace driftlab {
namespace {
std::vector<std::string> g_args;

[[noreturn]] void fail(const std::string& what, int code) {
  if (process_world_size() > 1) std::fprintf(stderr, "[rank %d/%d] ", process_rank(), process_world_size());
  std::fprintf(stderr, "error: %s\n", what.c_str());
  std::fflush(stderr);
  std::fflush(stdout);
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (initialized && !finalized && process_world_size() > 1) MPI_Abort(MPI_COMM_WORLD, code);
  std::_Exit(code);
}
}  // namespace

const std::vector<std::string>& tool_args() { return g_args; }

int run_tool(int argc, char** argv, const std::string& usage, const std::function<int()>& body) {
  gflags::SetUsageMessage(usage);
  gflags::SetVersionString(DRIFTLAB_VERSION);
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  g_args.assign(argv + 1, argv + argc);
  init_logging(argv[0], process_rank(), process_world_size());
  hdf5_silence_errors();
  try {
    return body();
  } catch (const UserError& e) {
    fail(e.what(), 2);
  } catch (const std::exception& e) {
    fail(e.what(), 1);
  }
}

}  // namespace driftlab
