// Collectives with closed-form answers (every rank contributes its rank), the topology, the
// world of one, unsupported operations, the drift Reducer adapter, and the raw NCCL layer.
#include <gflags/gflags.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <string>
#include <vector>

#include "comm/communicator.h"
#include "comm/drift_reducer.h"
#include "comm/topology.h"
#include "comm_test_env.h"
#include "driftlab_config.h"

#if DRIFTLAB_WITH_NCCL
#include <cuda_runtime_api.h>

#include <chrono>
#include <cstdio>
#include <thread>

#include "comm/watchdog.h"

#include "common/check_cuda.h"
#include "comm/nccl_comm.h"
#endif

DEFINE_int32(expect_world_size, 0, "When > 0, the world size the test run must see (1: run without mpirun)");

namespace driftlab::comm {
namespace {

using testing::comm;

double n_ranks() { return comm().world_size(); }
double rank_sum() { return n_ranks() * (n_ranks() - 1) / 2; }  // 0 + 1 + ... + (n-1)

TEST(Topology, AgreesWithTheCommunicatorAndTheNodes) {
  const Topology& t = topology();
  EXPECT_EQ(t.rank, comm().rank());
  EXPECT_EQ(t.world_size, comm().world_size());
  EXPECT_EQ(t.local_rank, comm().local_rank());
  EXPECT_GE(t.local_rank, 0);
  EXPECT_LT(t.local_rank, t.local_world_size);
  // Summing the node sizes over node leaders gives the world; counting leaders gives the nodes.
  torch::Tensor counts = torch::tensor({t.local_rank == 0 ? t.local_world_size : 0, t.local_rank == 0 ? 1 : 0});
  comm().all_reduce_sum(counts);
  EXPECT_EQ(counts[0].item<int64_t>(), t.world_size);
  EXPECT_EQ(counts[1].item<int64_t>(), t.node_count);
  if (FLAGS_expect_world_size > 0) { EXPECT_EQ(t.world_size, FLAGS_expect_world_size); }
  if (t.world_size == 1) {
    EXPECT_EQ(t.rank, 0);
    EXPECT_EQ(t.local_rank, 0);
  }
  EXPECT_EQ(&init_topology(), &t);  // idempotent
}

class AllReduceByDtype : public ::testing::TestWithParam<torch::ScalarType> {};

TEST_P(AllReduceByDtype, SumMaxAvg) {
  const auto dtype = GetParam();
  const double r = comm().rank(), n = n_ranks();
  torch::Tensor idx = torch::arange(12, torch::kDouble).reshape({3, 4});
  // sum over ranks of (rank + i) = n(n-1)/2 + n*i
  torch::Tensor t = (idx + r).to(dtype);
  comm().all_reduce_sum(t);
  EXPECT_EQ(t.scalar_type(), dtype);
  EXPECT_TRUE(torch::equal(t.to(torch::kDouble), idx * n + rank_sum())) << t;
  // max over ranks of rank * (+1 even i, -1 odd i) = n-1 on even i, 0 on odd i
  torch::Tensor sign = 1 - 2 * (idx.remainder(2));
  torch::Tensor m = (sign * r).to(dtype);
  comm().all_reduce_max(m);
  EXPECT_TRUE(torch::equal(m.to(torch::kDouble), torch::where(sign > 0, torch::full_like(idx, n - 1), torch::zeros_like(idx))))
      << m;
  if (torch::isFloatingType(dtype)) {
    torch::Tensor a = torch::full({5}, 2 * r, torch::TensorOptions().dtype(dtype));
    comm().all_reduce_avg(a);
    EXPECT_TRUE(torch::allclose(a.to(torch::kDouble), torch::full({5}, n - 1, torch::kDouble))) << a;
  }
}

INSTANTIATE_TEST_SUITE_P(Dtypes, AllReduceByDtype,
                         ::testing::Values(torch::kFloat, torch::kDouble, torch::kInt, torch::kLong, torch::kBFloat16),
                         [](const auto& info) { return std::string(c10::toString(info.param)); });

TEST(AllReduce, NonContiguousAndEmptyAndLargeOddSizes) {
  const double r = comm().rank();
  torch::Tensor base = torch::zeros({4, 6}, torch::kFloat);
  torch::Tensor view = base.t();  // non-contiguous: written back through the view
  view.fill_(r + 1);
  comm().all_reduce_sum(view);
  EXPECT_TRUE(torch::equal(base, torch::full({4, 6}, rank_sum() + n_ranks(), torch::kFloat)));
  torch::Tensor empty = torch::empty({0}, torch::kFloat);
  comm().all_reduce_sum(empty);
  EXPECT_EQ(empty.numel(), 0);
  // 20 MB of float64: more than one 16 MiB reduction chunk, with an odd tail; the pattern
  // catches a chunk reduced at the wrong offset.
  torch::Tensor pattern = torch::arange(2500003, torch::kDouble).remainder(1000);
  torch::Tensor big = pattern + r, big_async = pattern * 2 + r;
  comm().all_reduce_sum(big);
  comm().all_reduce_async(big_async, ReduceOp::kSum)->wait();
  EXPECT_TRUE(torch::equal(big, pattern * n_ranks() + rank_sum()));
  EXPECT_TRUE(torch::equal(big_async, pattern * 2 * n_ranks() + rank_sum()));
}

TEST(AllReduce, AsyncHandlesCompleteInAnyWaitOrder) {
  const double r = comm().rank();
  std::vector<torch::Tensor> ts;
  std::vector<std::unique_ptr<Work>> work;
  for (int k = 0; k < 4; ++k) ts.push_back(torch::full({100 + k}, r * (k + 1), torch::kFloat));
  for (auto& t : ts) work.push_back(comm().all_reduce_async(t, ReduceOp::kSum));
  for (int k = 3; k >= 0; --k) work[k]->wait();
  for (int k = 0; k < 4; ++k) EXPECT_TRUE(torch::equal(ts[k], torch::full({100 + k}, rank_sum() * (k + 1), torch::kFloat)));
  // A handle dropped without wait() completes in its destructor.
  torch::Tensor dropped = torch::full({7}, r, torch::kFloat);
  comm().all_reduce_async(dropped, ReduceOp::kMax);
  EXPECT_TRUE(torch::equal(dropped, torch::full({7}, n_ranks() - 1, torch::kFloat)));
}

TEST(AllGather, EqualSizesInRankOrder) {
  const int n = comm().world_size();
  torch::Tensor mine = torch::full({2, 3}, comm().rank(), torch::kLong);
  torch::Tensor all = comm().all_gather(mine);
  ASSERT_EQ(all.sizes(), (std::vector<int64_t>{2 * n, 3}));
  EXPECT_TRUE(torch::equal(all, torch::arange(n, torch::kLong).repeat_interleave(2).unsqueeze(1).expand({2 * n, 3})));
  torch::Tensor scalar = torch::tensor(static_cast<double>(comm().rank()) * 0.5, torch::kDouble);
  EXPECT_TRUE(torch::equal(comm().all_gather(scalar), torch::arange(n, torch::kDouble) * 0.5));
}

TEST(AllGather, VaryingSizesInRankOrder) {
  // Rank r contributes r rows (rank 0 none) of [r, 10 r]: n(n-1)/2 rows in all.
  const int n = comm().world_size(), r = comm().rank();
  torch::Tensor mine = torch::tensor({static_cast<float>(r), 10.f * r}).repeat({r, 1});
  std::vector<int64_t> counts;
  torch::Tensor all = comm().all_gather_varying(mine, &counts);
  ASSERT_EQ(all.size(0), n * (n - 1) / 2);
  ASSERT_EQ(all.size(1), 2);
  ASSERT_EQ(counts.size(), static_cast<size_t>(n));
  int64_t row = 0;
  for (int q = 0; q < n; ++q) {
    EXPECT_EQ(counts[q], q);
    for (int k = 0; k < q; ++k, ++row) {
      EXPECT_EQ(all[row][0].item<float>(), q);
      EXPECT_EQ(all[row][1].item<float>(), 10.f * q);
    }
  }
}

TEST(AllGather, MismatchedShapesFailOnEveryRank) {
  // Every rank sees the same table of shapes, so every rank throws: no hang, same message.
  const int r = comm().rank();
  torch::Tensor mine = torch::zeros({2, r == 1 ? 4 : 3}, torch::kFloat);
  if (comm().world_size() > 1) {
    EXPECT_THROW(comm().all_gather(mine), UserError);
    EXPECT_THROW(comm().all_gather_varying(mine), UserError);
  }
  torch::Tensor rows = torch::zeros({r + 1, 3}, torch::kFloat);
  if (comm().world_size() > 1) { EXPECT_THROW(comm().all_gather(rows), UserError); }
  EXPECT_EQ(comm().all_gather_varying(rows).size(0), comm().world_size() * (comm().world_size() + 1) / 2);
}

TEST(AllGather, WorldOfOneReturnsTheInputItself) {
  // Callers never branch on the world size: in a world of one the gather is the input, no copy.
  if (comm().world_size() != 1) GTEST_SKIP() << "a world of one only";
  torch::Tensor t = torch::arange(6, torch::kFloat).view({3, 2});
  std::vector<int64_t> counts;
  torch::Tensor out = comm().all_gather_varying(t, &counts);
  EXPECT_EQ(out.data_ptr(), t.data_ptr());
  EXPECT_EQ(counts, std::vector<int64_t>{3});
  EXPECT_EQ(comm().all_gather_varying(torch::tensor(5.0f)).sizes(), (std::vector<int64_t>{1}));
}

TEST(Broadcast, FromTheLastRankInEveryDtype) {
  const int root = comm().world_size() - 1;  // non-zero whenever there are several ranks
  for (auto dtype : {torch::kFloat, torch::kDouble, torch::kInt, torch::kLong, torch::kBFloat16, torch::kBool, torch::kByte}) {
    torch::Tensor t = (torch::arange(10) * 0 + comm().rank() + 1).remainder(2 + root).to(dtype);
    torch::Tensor expected = (torch::arange(10) * 0 + root + 1).remainder(2 + root).to(dtype);
    comm().broadcast(t, root);
    EXPECT_TRUE(torch::equal(t, expected)) << c10::toString(dtype);
  }
  torch::Tensor t = torch::zeros({3, 5}, torch::kFloat).t();
  t.fill_(comm().rank());
  comm().broadcast(t, root);
  EXPECT_TRUE(torch::equal(t, torch::full({5, 3}, root, torch::kFloat)));
  EXPECT_THROW(comm().broadcast(t, comm().world_size()), UserError);
  comm().barrier();
}

TEST(Unsupported, MpiNamesTheBackendAndTheOperation) {
  torch::Tensor flags = torch::ones({3}, torch::kBool);
  try {
    comm().all_reduce_sum(flags);
    FAIL() << "no throw";
  } catch (const UnsupportedOperation& e) {
    EXPECT_NE(std::string(e.what()).find("backend 'mpi'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("all_reduce(sum)"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("Bool"), std::string::npos) << e.what();
  }
  torch::Tensor ints = torch::ones({3}, torch::kInt);
  EXPECT_THROW(comm().all_reduce_avg(ints), UnsupportedOperation);
  EXPECT_THROW(make_communicator(topology(), "gloo"), UserError);
#if !(DRIFTLAB_WITH_CUDA && DRIFTLAB_WITH_NCCL)
  try {
    make_communicator(topology(), "nccl");
    FAIL() << "no throw";
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("nccl"), std::string::npos) << e.what();
  }
#endif
}

// A backend that implements only the queries: every collective falls to the interface's default.
class QueriesOnly final : public Communicator {
 public:
  std::string backend() const override { return "queries-only"; }
  int rank() const override { return 0; }
  int world_size() const override { return 1; }
  int local_rank() const override { return 0; }
  torch::Device device() const override { return torch::kCPU; }
};

TEST(Unsupported, DefaultsNameTheBackendAndTheOperation) {
  QueriesOnly q;
  torch::Tensor t = torch::zeros({2});
  auto expect_named = [](const std::function<void()>& call, const std::string& op) {
    try {
      call();
      ADD_FAILURE() << op << ": no throw";
    } catch (const UnsupportedOperation& e) {
      EXPECT_EQ(std::string(e.what()), "communicator backend 'queries-only' does not support " + op);
    }
  };
  expect_named([&] { q.all_reduce_max(t); }, "all_reduce(max)");
  expect_named([&] { q.all_reduce_async(t, ReduceOp::kAvg); }, "all_reduce(avg)");
  expect_named([&] { q.all_gather(t); }, "all_gather");
  expect_named([&] { q.all_gather_varying(t); }, "all_gather_varying");
  expect_named([&] { q.broadcast(t, 0); }, "broadcast");
  expect_named([&] { q.barrier(); }, "barrier");
}

// Every collective of `c` on tensors on `device`, with closed-form answers: results stay on that
// device and keep their dtype. Run by the MPI backend on the CPU here, and on a GPU machine by the
// MPI backend with CUDA tensors (through host memory) and by the NCCL backend.
void check_collectives_on(Communicator& c, const torch::Device& device) {
  const double r = c.rank(), n = c.world_size(), sum = n * (n - 1) / 2;
  const auto on = torch::TensorOptions().device(device);
  const torch::Tensor idx = torch::arange(12, torch::kDouble).reshape({3, 4});
  for (auto dtype : {torch::kFloat, torch::kDouble, torch::kBFloat16, torch::kInt, torch::kLong}) {
    SCOPED_TRACE(std::string(c10::toString(dtype)) + " on " + device.str());
    torch::Tensor t = (idx + r).to(on.dtype(dtype));
    c.all_reduce_sum(t);
    EXPECT_EQ(t.device(), device);
    EXPECT_EQ(t.scalar_type(), dtype);
    EXPECT_TRUE(torch::equal(t.cpu().to(torch::kDouble), idx * n + sum)) << t;
    torch::Tensor m = (idx - r).to(on.dtype(dtype));
    c.all_reduce_max(m);
    EXPECT_TRUE(torch::equal(m.cpu().to(torch::kDouble), idx)) << m;
  }
  torch::Tensor a = torch::full({5}, 2 * r, on.dtype(torch::kFloat));
  c.all_reduce_avg(a);
  EXPECT_TRUE(torch::allclose(a.cpu(), torch::full({5}, static_cast<float>(n - 1)))) << a;
  // a non-contiguous view is written back through the view; the asynchronous form completes on wait
  torch::Tensor base = torch::zeros({4, 6}, on.dtype(torch::kFloat));
  torch::Tensor view = base.t();
  view.fill_(r + 1);
  c.all_reduce_async(view, ReduceOp::kSum)->wait();
  EXPECT_TRUE(torch::equal(base.cpu(), torch::full({4, 6}, static_cast<float>(sum + n))));
  torch::Tensor all = c.all_gather(torch::full({2, 3}, c.rank(), on.dtype(torch::kLong)));
  EXPECT_EQ(all.device(), device);
  const int w = c.world_size();
  EXPECT_TRUE(torch::equal(all.cpu(), torch::arange(w, torch::kLong).repeat_interleave(2).unsqueeze(1).expand({2 * w, 3})));
  // rank q contributes q + 1 rows of q
  std::vector<int64_t> counts;
  torch::Tensor varying = c.all_gather_varying(torch::full({c.rank() + 1, 2}, r, on.dtype(torch::kFloat)), &counts);
  EXPECT_EQ(varying.device(), device);
  std::vector<int64_t> rows;
  for (int q = 0; q < w; ++q) rows.push_back(q + 1);
  EXPECT_EQ(counts, rows);
  EXPECT_TRUE(torch::equal(varying.cpu(), torch::arange(w, torch::kFloat)
                                              .repeat_interleave(torch::arange(1, w + 1, torch::kLong))
                                              .unsqueeze(1)
                                              .expand({w * (w + 1) / 2, 2})));
  torch::Tensor b = torch::full({7}, r, on.dtype(torch::kDouble));
  c.broadcast(b, w - 1);
  EXPECT_EQ(b.device(), device);
  EXPECT_TRUE(torch::equal(b.cpu(), torch::full({7}, n - 1, torch::kDouble)));
  c.barrier();
}

TEST(Collectives, EveryOperationOnTheCommunicatorsDevice) { check_collectives_on(comm(), comm().device()); }

TEST(Unsupported, MpiRefusesTensorsOnOtherDevices) {
  torch::Tensor meta = torch::empty({3}, torch::TensorOptions().device(torch::kMeta));
  try {
    comm().all_reduce_sum(meta);
    FAIL() << "no throw";
  } catch (const UnsupportedOperation& e) {
    EXPECT_NE(std::string(e.what()).find("tensors on meta"), std::string::npos) << e.what();
  }
  EXPECT_THROW(comm().broadcast(meta, 0), UnsupportedOperation);
}

TEST(LowestFailedRank, EveryRankLearnsTheSameRank) {
  const int r = comm().rank(), n = comm().world_size();
  EXPECT_EQ(lowest_failed_rank(comm(), true), -1);
  EXPECT_EQ(lowest_failed_rank(comm(), false), 0);
  // ranks 1 and 2 fail (where they exist): every rank hears 1
  EXPECT_EQ(lowest_failed_rank(comm(), r != 1 && r != 2), n > 1 ? 1 : -1);
  EXPECT_EQ(lowest_failed_rank(comm(), r != n - 1), n - 1);
}

TEST(SelectDevice, NamesTheFlagAndWhatIsExpected) {
  EXPECT_EQ(select_device("cpu", topology()), torch::Device(torch::kCPU));
  for (const std::string bad : {"tpu", "cuda:", "cuda:x", "cuda:-1"}) {
    try {
      select_device(bad, topology(), "--device");
      ADD_FAILURE() << bad << ": no throw";
    } catch (const UserError& e) {
      EXPECT_NE(std::string(e.what()).find("--device=" + bad + ": expected"), std::string::npos) << e.what();
    }
  }
  if (!(DRIFTLAB_WITH_CUDA && torch::cuda::is_available())) {
    EXPECT_EQ(select_device("auto", topology()), torch::Device(torch::kCPU));
    try {
      select_device("cuda", topology(), "--device");
      ADD_FAILURE() << "cuda without a GPU: no throw";
    } catch (const UserError& e) {
      EXPECT_NE(std::string(e.what()).find("--device=cuda: no CUDA device is visible"), std::string::npos) << e.what();
    }
  } else {
    const torch::Device d = select_device("cuda", topology());
    EXPECT_TRUE(d.is_cuda());
    EXPECT_EQ(d.index(), topology().local_rank % static_cast<int>(torch::cuda::device_count()));
  }
}

#if DRIFTLAB_WITH_CUDA
// The MPI backend with CUDA tensors (copied through host memory): several ranks on one GPU.
TEST(MpiCuda, CudaTensorsTravelThroughHostMemory) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "needs a CUDA device";
  check_collectives_on(comm(), select_device("cuda", topology()));
}
#endif

TEST(DriftReducer, AdaptsTheCommunicator) {
  CommunicatorReducer reducer(comm());
  drift::Reducer& red = reducer;
  torch::Tensor s = torch::full({4}, comm().rank(), torch::kFloat);
  torch::Tensor m = s.clone();
  red.all_reduce_sum(s);
  red.all_reduce_max(m);
  EXPECT_TRUE(torch::equal(s, torch::full({4}, rank_sum(), torch::kFloat)));
  EXPECT_TRUE(torch::equal(m, torch::full({4}, n_ranks() - 1, torch::kFloat)));
}

#if DRIFTLAB_WITH_NCCL
// The raw NCCL layer on device buffers; runs wherever each rank of the node has its own GPU
// (a CPU LibTorch is enough), skips elsewhere.
TEST(RawNccl, AllReduceAndVaryingGatherOnDevices) {
  const Topology& t = topology();
  if (cuda_device_count() < t.local_world_size) GTEST_SKIP() << "needs one CUDA device per local rank";
  NcclComm nccl(t.world, t.local_rank);
  const int n = nccl.size(), r = nccl.rank();
  cudaStream_t stream;
  DL_CHECK_CUDA(cudaStreamCreate(&stream));
  std::vector<float> host(1000, static_cast<float>(r));
  float* dev = nullptr;
  DL_CHECK_CUDA(cudaMalloc(&dev, host.size() * sizeof(float) * (n + 1)));
  DL_CHECK_CUDA(cudaMemcpy(dev, host.data(), host.size() * sizeof(float), cudaMemcpyHostToDevice));
  nccl.all_reduce(dev, dev, host.size(), ncclFloat32, ncclSum, stream);
  nccl.synchronize(stream);
  DL_CHECK_CUDA(cudaMemcpy(host.data(), dev, host.size() * sizeof(float), cudaMemcpyDeviceToHost));
  for (float v : host) ASSERT_EQ(v, n * (n - 1) / 2.0f);
  // Rank q contributes q + 1 values equal to q.
  std::vector<size_t> counts(n);
  size_t total = 0;
  for (int q = 0; q < n; ++q) total += (counts[q] = static_cast<size_t>(q + 1));
  std::vector<float> mine(r + 1, static_cast<float>(r));
  DL_CHECK_CUDA(cudaMemcpy(dev, mine.data(), mine.size() * sizeof(float), cudaMemcpyHostToDevice));
  float* out = dev + 1000;
  nccl.all_gather_varying(dev, out, counts, ncclFloat32, stream);
  nccl.synchronize(stream);
  std::vector<float> gathered(total);
  DL_CHECK_CUDA(cudaMemcpy(gathered.data(), out, total * sizeof(float), cudaMemcpyDeviceToHost));
  size_t k = 0;
  for (int q = 0; q < n; ++q)
    for (int j = 0; j <= q; ++j) EXPECT_EQ(gathered[k++], static_cast<float>(q));
  DL_CHECK_CUDA(cudaFree(dev));
  DL_CHECK_CUDA(cudaStreamDestroy(stream));
}

// The collective watchdog on the NCCL path: a collective whose completion on the GPU never comes
// (the stream is held by a host function, as an NCCL kernel is held by a peer that stopped) ends
// the process with the expiry line through the abort hook, which aborts the NCCL communicator.
// A world of one only: the death test re-runs this binary as a singleton MPI process.
TEST(RawNcclDeath, WatchdogEndsACollectiveThatNeverCompletesOnTheGpu) {
  if (cuda_device_count() < 1) GTEST_SKIP() << "needs a CUDA device";
  if (comm().world_size() != 1) GTEST_SKIP() << "runs in a world of one (the death test re-runs this binary)";
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        NcclComm nccl(MPI_COMM_SELF, 0);
        WatchdogOptions o;
        o.timeout_s = 1.0;
        o.abort_grace_s = 10;
        // world 2 as far as the watchdog knows: a world of one starts none in the communicators
        CollectiveWatchdog w(o, 0, 2, [&nccl](int code) {
          std::fprintf(stderr, "abort hook called with %d\n", code);
          nccl.abort();
          std::fprintf(stderr, "NCCL communicator aborted\n");
          std::_Exit(40 + code);
        });
        nccl.set_watchdog(&w);
        w.set_step(7);
        cudaStream_t stream;
        DL_CHECK_CUDA(cudaStreamCreate(&stream));
        float* dev = nullptr;
        DL_CHECK_CUDA(cudaMalloc(&dev, 64 * sizeof(float)));
        DL_CHECK_CUDA(cudaLaunchHostFunc(
            stream, [](void*) { std::this_thread::sleep_for(std::chrono::seconds(60)); }, nullptr));
        nccl.all_reduce(dev, dev, 64, ncclFloat32, ncclSum, stream);
        std::this_thread::sleep_for(std::chrono::seconds(30));
        std::fprintf(stderr, "the watchdog did not fire\n");
        std::_Exit(0);
      },
      ::testing::ExitedWithCode(40 + kWatchdogExitCode),
      "collective watchdog: nccl all_reduce \\(collective #[0-9]+ of this rank\\) at step 7 on rank 0 did not complete "
      "within 1 s.*\nabort hook called with 3\nNCCL communicator aborted");
}
#endif

#if DRIFTLAB_WITH_CUDA && DRIFTLAB_WITH_NCCL
// The tensor-level NCCL backend, built as the trainer builds it: every collective on the rank's GPU,
// and a CPU tensor refused with the backend and the operation named.
TEST(NcclBackend, EveryOperationOnTheRanksGpu) {
  const Topology& t = topology();
  if (cuda_device_count() < t.local_world_size) GTEST_SKIP() << "needs one CUDA device per local rank";
  auto nccl = make_communicator(t, "nccl");
  ASSERT_EQ(nccl->backend(), "nccl");
  EXPECT_EQ(nccl->rank(), comm().rank());
  EXPECT_EQ(nccl->world_size(), comm().world_size());
  EXPECT_EQ(nccl->device(), select_device("cuda", t));
  check_collectives_on(*nccl, nccl->device());
  torch::Tensor cpu = torch::ones({3});
  try {
    nccl->all_reduce_sum(cpu);
    FAIL() << "no throw";
  } catch (const UnsupportedOperation& e) {
    EXPECT_NE(std::string(e.what()).find("backend 'nccl'"), std::string::npos) << e.what();
  }
}
#endif

}  // namespace
}  // namespace driftlab::comm
