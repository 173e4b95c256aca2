// Logging set-up on glog: every line carries the rank; INFO comes from rank 0 only unless
// --log_all_ranks is given (warnings and errors always come from every rank).
#pragma once

#include <glog/logging.h>

namespace driftlab {

// Call once, after the rank is known (src/comm/topology). Safe to call again: later calls only
// update the rank shown in the prefix.
void init_logging(const char* argv0, int rank, int world_size);
// INFO lines from every rank (true) or from rank 0 only (false, the default); takes effect at the
// next init_logging. run_tool sets it from --log_all_ranks.
void set_log_all_ranks(bool all);

}  // namespace driftlab
