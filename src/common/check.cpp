// Implementation of the error path: messages with rank and location, clean process exit.
#include "common/check.h"

#include <hdf5.h>
#include <mpi.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace driftlab {
namespace {
std::atomic<int> g_rank{0};
std::atomic<int> g_world{1};

herr_t collect_hdf5_frame(unsigned n, const H5E_error2_t* err, void* data) {
  auto* out = static_cast<std::string*>(data);
  if (!out->empty()) out->append("; ");
  out->append(err->func_name ? err->func_name : "?");
  out->append("(): ");
  out->append(err->desc ? err->desc : "unknown HDF5 error");
  return 0;
}
}  // namespace

void set_process_identity(int rank, int world_size) {
  g_rank = rank;
  g_world = world_size;
}
int process_rank() { return g_rank; }
int process_world_size() { return g_world; }

void fatal_error(const std::string& what) {
  std::fprintf(stderr, "[rank %d/%d] error: %s\n", g_rank.load(), g_world.load(), what.c_str());
  std::fflush(stderr);
  std::fflush(stdout);
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (initialized && !finalized) {
    int world = 1;
    MPI_Comm_size(MPI_COMM_WORLD, &world);
    if (world > 1) MPI_Abort(MPI_COMM_WORLD, 1);
  }
  // _Exit: destructors of LibTorch thread pools may block after a failure.
  std::_Exit(1);
}

std::string hdf5_error_stack() {
  std::string out;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, collect_hdf5_frame, &out);
  H5Eclear2(H5E_DEFAULT);
  return out;
}

void hdf5_silence_errors() { H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr); }

namespace detail {
std::string format_location(const char* file, int line) {
  const char* base = std::strstr(file, "/src/");
  return std::string(base ? base + 1 : file) + ":" + std::to_string(line);
}

void mpi_failure(const char* call, const char* file, int line, int code) {
  char text[MPI_MAX_ERROR_STRING] = {0};
  int len = 0;
  if (MPI_Error_string(code, text, &len) != MPI_SUCCESS) std::snprintf(text, sizeof(text), "code %d", code);
  fatal_error(std::string("MPI call ") + call + " failed at " + format_location(file, line) + ": " +
              text + " (hint: a peer rank may have died; check the other ranks' logs)");
}

void hdf5_failure(const char* call, const char* file, int line) {
  std::string stack = hdf5_error_stack();
  fatal_error(std::string("HDF5 call ") + call + " failed at " + format_location(file, line) + ": " +
              (stack.empty() ? "no HDF5 error message" : stack));
}
}  // namespace detail
}  // namespace driftlab
