// Always-on checks and the one error path of the project.
//
// Two kinds of failure:
//  * UserError: bad input (a missing file, a wrong shape, a bad flag). Thrown by DL_REQUIRE; the
//    tool's main (run_tool in tool_main.h) prints the message once and exits with status 2.
//  * Library failures (MPI, HDF5; CUDA and NCCL in check_cuda.h): DL_CHECK_* names the call,
//    file:line, the rank and the library's own message, then ends the process cleanly (MPI_Abort
//    when several ranks run, so no rank hangs waiting for a dead peer).
// Never use assert() for either: these checks stay on in release builds.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace driftlab {

// Bad input from the user: the message names the thing (file, flag, value) and what was expected.
class UserError : public std::runtime_error {
 public:
  explicit UserError(const std::string& what) : std::runtime_error(what) {}
};

// Rank and world size used in messages; set by the topology set-up (src/comm) once known.
void set_process_identity(int rank, int world_size);
int process_rank();
int process_world_size();

// Prints "[rank r/w] <what>" to stderr and ends the process (MPI_Abort under several ranks).
[[noreturn]] void fatal_error(const std::string& what);

namespace detail {
[[noreturn]] void mpi_failure(const char* call, const char* file, int line, int code);
[[noreturn]] void hdf5_failure(const char* call, const char* file, int line);
std::string format_location(const char* file, int line);
}  // namespace detail

// The HDF5 error stack of the calling thread as one line ("" when empty); clears the stack.
std::string hdf5_error_stack();
// Turns off HDF5's automatic printing of its error stack (we report errors ourselves).
void hdf5_silence_errors();

}  // namespace driftlab

#define DL_STR_CONCAT_(a, b) a##b

// DL_REQUIRE(cond, message-stream): throws UserError with the streamed message when cond fails.
#define DL_REQUIRE(cond, msg)                      \
  do {                                             \
    if (!(cond)) {                                 \
      std::ostringstream dl_require_os_;           \
      dl_require_os_ << msg;                       \
      throw ::driftlab::UserError(dl_require_os_.str()); \
    }                                              \
  } while (0)

// DL_CHECK(cond, message-stream): an internal invariant; failure is a bug, reported fatally.
#define DL_CHECK(cond, msg)                                                          \
  do {                                                                               \
    if (!(cond)) {                                                                   \
      std::ostringstream dl_check_os_;                                               \
      dl_check_os_ << "internal check failed: " #cond " at "                         \
                   << ::driftlab::detail::format_location(__FILE__, __LINE__) << ": " << msg; \
      ::driftlab::fatal_error(dl_check_os_.str());                                   \
    }                                                                                \
  } while (0)

// DL_CHECK_MPI(MPI_Allreduce(...)): requires MPI_ERRORS_RETURN on the communicator (src/comm sets it).
#define DL_CHECK_MPI(call)                                                              \
  do {                                                                                  \
    int dl_mpi_rc_ = (call);                                                            \
    if (dl_mpi_rc_ != 0) ::driftlab::detail::mpi_failure(#call, __FILE__, __LINE__, dl_mpi_rc_); \
  } while (0)

// DL_CHECK_HDF5(H5Dread(...)): HDF5 calls return a negative herr_t / hid_t on failure.
#define DL_CHECK_HDF5(call)                                                   \
  ([&]() {                                                                    \
    auto dl_h5_rc_ = (call);                                                  \
    if (dl_h5_rc_ < 0) ::driftlab::detail::hdf5_failure(#call, __FILE__, __LINE__); \
    return dl_h5_rc_;                                                         \
  }())
