// Shared by the comm test files: the MPI communicator every test uses (built once in main).
#pragma once

#include "comm/communicator.h"

namespace driftlab::comm::testing {

// The world's MPI communicator; valid for the whole test run.
Communicator& comm();

}  // namespace driftlab::comm::testing
