// run_tool (see tool_main.h).
#include "common/tool_main.h"

#include <gflags/gflags.h>
#include <mpi.h>

#include <malloc.h>

#include <cstdio>
#include <exception>
#include <fstream>
#include <string>
#include <vector>

#include "common/check.h"
#include "common/logging.h"
#include "driftlab_config.h"

// Every tool's logging flag (the shared edge of every binary; library code reads no flag).
DEFINE_bool(log_all_ranks, false, "Print INFO log lines from every rank, not only rank 0");

namespace driftlab {
namespace {
std::vector<std::string> g_args;

// gflags skips unknown flags inside a --flagfile without a word, so a typo in a config would be
// silently ignored: every --name=value line of a flagfile (nested ones too) must name a flag.
void check_flagfile(const std::string& path, int depth = 0) {
  DL_REQUIRE(depth < 16, "--flagfile=" << path << ": flagfiles nested more than 16 deep (a cycle?)");
  std::ifstream in(path);
  DL_REQUIRE(in, "--flagfile=" << path << ": cannot read the file");
  std::string line;
  for (int no = 1; std::getline(in, line); ++no) {
    const auto start = line.find_first_not_of(" \t");
    if (start == std::string::npos || line[start] != '-') continue;  // blank, comment, or a program-name filter
    const auto body = line.substr(line.find_first_not_of('-', start));
    const auto eq = body.find('=');
    const std::string name = body.substr(0, eq);
    if (name == "flagfile" && eq != std::string::npos) {
      check_flagfile(body.substr(eq + 1), depth + 1);
      continue;
    }
    gflags::CommandLineFlagInfo info;
    const bool known = gflags::GetCommandLineFlagInfo(name.c_str(), &info) ||
                       (eq == std::string::npos && name.rfind("no", 0) == 0 &&
                        gflags::GetCommandLineFlagInfo(name.substr(2).c_str(), &info) && info.type == "bool");
    DL_REQUIRE(known, path << ":" << no << ": unknown flag '--" << name << "' (see --help for the flags of this program)");
  }
}

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

// This file is <root>/src/common/tool_main.cpp: flags defined under <root>/src/, <root>/bench/
// or <root>/tests/ are ours.
const std::string& source_root() {
  static const std::string self = __FILE__;
  static const std::string root = self.substr(0, self.size() - std::string("src/common/tool_main.cpp").size());
  return root;
}

bool is_ours(const std::string& file) {
  for (const char* dir : {"src/", "bench/", "tests/"})
    if (file.rfind(source_root() + dir, 0) == 0) return true;
  return false;
}

std::vector<gflags::CommandLineFlagInfo> own_flags() {
  std::vector<gflags::CommandLineFlagInfo> flags, out;
  gflags::GetAllFlags(&flags);
  for (auto& f : flags)
    if (is_ours(f.filename)) out.push_back(std::move(f));
  return out;
}

// --help: the usage text and every flag defined in driftlab's own sources (LibTorch and glog
// register gflags too; those would bury ours), grouped by source file.
void print_help(const std::string& usage) {
  std::printf("%s\n", usage.c_str());
  std::string file;
  for (const auto& f : own_flags()) {
    const size_t at = source_root().size();  // print the path relative to the project root
    if (f.filename != file) {
      file = f.filename;
      std::printf("\nFlags from %s:\n", file.substr(at).c_str());
    }
    std::printf("  --%s (%s, default: %s)\n      %s\n", f.name.c_str(), f.type.c_str(),
                f.type == "string" ? ("\"" + f.default_value + "\"").c_str() : f.default_value.c_str(),
                f.description.c_str());
  }
  std::printf("\nCommon gflags: --flagfile=FILE reads flags from a file (one --name=value per line), "
              "--version prints the version.\n");
}

}  // namespace

const std::vector<std::string>& tool_args() { return g_args; }

std::map<std::string, std::string> project_flag_values() {
  std::map<std::string, std::string> out;
  for (const auto& f : own_flags()) out[f.name] = f.current_value;
  return out;
}

int run_tool(int argc, char** argv, const std::string& usage, const std::function<int()>& body) {
  // Keep freed memory in the process: LibTorch frees and re-allocates the same large buffers
  // every step, and glibc's defaults would hand each one back to the kernel (munmap/trim), so the
  // next step pays a page fault per 4 KiB page again (toy config: 9.3k -> 17.6k samples/s
  // together with the drift workspace).
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--help" || a == "-help" || a == "-h" || a == "--helpfull") {
      print_help(usage);
      return 0;
    }
  }
  std::vector<std::string> flagfiles;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    for (const char* p : {"--flagfile=", "-flagfile="})
      if (a.rfind(p, 0) == 0) flagfiles.push_back(a.substr(std::string(p).size()));
    if ((a == "--flagfile" || a == "-flagfile") && i + 1 < argc) flagfiles.push_back(argv[i + 1]);
  }
  gflags::SetUsageMessage(usage);
  gflags::SetVersionString(DRIFTLAB_VERSION);
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  g_args.assign(argv + 1, argv + argc);
  set_log_all_ranks(FLAGS_log_all_ranks);
  init_logging(argv[0], process_rank(), process_world_size());
  hdf5_silence_errors();
  try {
    for (const auto& f : flagfiles) check_flagfile(f);
    return body();
  } catch (const UserError& e) {
    fail(e.what(), 2);
  } catch (const std::exception& e) {
    fail(e.what(), 1);
  }
}

}  // namespace driftlab
