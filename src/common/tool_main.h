// The shared main() of every binary: flag parsing with --help, the error path, exit codes.
//
//   int main(int argc, char** argv) {
//     return driftlab::run_tool(argc, argv, "drift_x: what it does\nUsage: ...", [&] { ...; return 0; });
//   }
//
// A UserError thrown by the body prints "error: <message>" and exits with status 2 (under several
// ranks through MPI_Abort, so no peer hangs); any other exception is reported the same way with
// status 1. Flags are gflags: --help lists every flag of the binary, --flagfile reads a config.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>

namespace driftlab {

int run_tool(int argc, char** argv, const std::string& usage, const std::function<int()>& body);

// Positional arguments left after flag parsing (argv[1..]); valid inside the body of run_tool.
const std::vector<std::string>& tool_args();

// Every flag defined in driftlab's own sources linked into this binary, name -> current value
// (what a checkpoint records as the run's resolved configuration).
std::map<std::string, std::string> project_flag_values();

}  // namespace driftlab
