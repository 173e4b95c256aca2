// main() of the comm tests: starts the topology, runs GoogleTest on every rank, and keeps the
// output readable under mpirun (rank 0 prints the usual report, other ranks only their failures).
#include <gflags/gflags.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <memory>

#include "comm/topology.h"
#include "comm_test_env.h"

namespace driftlab::comm::testing {
namespace {
std::unique_ptr<Communicator> g_comm;

class RankFailurePrinter : public ::testing::EmptyTestEventListener {
 public:
  explicit RankFailurePrinter(int rank) : rank_(rank) {}
  void OnTestPartResult(const ::testing::TestPartResult& r) override {
    if (r.failed())
      std::fprintf(stderr, "[rank %d] %s:%d: failure\n%s\n", rank_, r.file_name() ? r.file_name() : "?",
                   r.line_number(), r.summary());
  }

 private:
  int rank_;
};
}  // namespace

Communicator& comm() { return *g_comm; }

}  // namespace driftlab::comm::testing

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  const auto& topo = driftlab::comm::init_topology();
  driftlab::comm::testing::g_comm = driftlab::comm::make_communicator(topo, "mpi");
  if (topo.rank != 0) {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
    listeners.Append(new driftlab::comm::testing::RankFailurePrinter(topo.rank));
  }
  int rc = RUN_ALL_TESTS();
  driftlab::comm::testing::g_comm.reset();
  driftlab::comm::finalize_topology();
  return rc;
}
