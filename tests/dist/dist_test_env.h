// Shared by the dist test files: the MPI communicator every test uses (built once in main).
#pragma once

#include "dist/communicator.h"

namespace driftlab::dist::testing {

// The world's MPI communicator; valid for the whole test run.
Communicator& comm();

}  // namespace driftlab::dist::testing
