// Communicator defaults (each one names the backend that lacks the operation) and the factory.
#include "comm/communicator.h"

#include "comm/mpi_communicator.h"
#include "comm/topology.h"
#include "driftlab_config.h"

#include <torch/cuda.h>

#include <algorithm>
#include <cstdlib>

#if DRIFTLAB_WITH_CUDA && DRIFTLAB_WITH_NCCL
#include <glog/logging.h>

#include "comm/nccl_communicator.h"
#endif

namespace driftlab::comm {
namespace {
std::string unsupported_message(const std::string& backend, const std::string& operation, const std::string& detail) {
  std::string m = "communicator backend '" + backend + "' does not support " + operation;
  if (!detail.empty()) m += ": " + detail;
  return m;
}
}  // namespace

const char* to_string(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum: return "sum";
    case ReduceOp::kMax: return "max";
    case ReduceOp::kAvg: return "avg";
  }
  return "?";
}

UnsupportedOperation::UnsupportedOperation(const std::string& backend, const std::string& operation,
                                           const std::string& detail)
    : UserError(unsupported_message(backend, operation, detail)) {}

void Communicator::unsupported(const std::string& operation, const std::string& detail) const {
  throw UnsupportedOperation(backend(), operation, detail);
}

void Communicator::all_reduce(torch::Tensor&, ReduceOp op) { unsupported(std::string("all_reduce(") + to_string(op) + ")"); }

namespace {
class CompletedWork final : public Work {
 public:
  void wait() override {}
};
}  // namespace

std::unique_ptr<Work> Communicator::all_reduce_async(torch::Tensor& t, ReduceOp op) {
  all_reduce(t, op);
  return std::make_unique<CompletedWork>();
}

torch::Tensor Communicator::all_gather(const torch::Tensor&) { unsupported("all_gather"); }
torch::Tensor Communicator::all_gather_varying(const torch::Tensor&, std::vector<int64_t>*) {
  unsupported("all_gather_varying");
}
void Communicator::broadcast(torch::Tensor&, int) { unsupported("broadcast"); }
void Communicator::barrier() { unsupported("barrier"); }

void Communicator::start_watchdog(const WatchdogOptions& options, int rank, int world, std::function<void(int)> abort) {
  // A world of one has nothing to wait for; a timeout of 0 turns the deadline off.
  if (world > 1 && options.timeout_s > 0)
    watchdog_ = std::make_unique<CollectiveWatchdog>(options, rank, world, std::move(abort));
}

std::unique_ptr<Communicator> make_communicator(const Topology& topology, const std::string& backend,
                                                const CommOptions& options) {
  DL_REQUIRE(backend == "auto" || backend == "mpi" || backend == "nccl",
             "communicator backend '" << backend << "': expected one of auto, mpi, nccl");
#if DRIFTLAB_WITH_CUDA && DRIFTLAB_WITH_NCCL
  const bool gpu = torch::cuda::is_available();
  const int devices = gpu ? static_cast<int>(torch::cuda::device_count()) : 0;
  // NCCL needs a GPU per rank: auto falls back to MPI where the node's ranks share GPUs.
  if (backend == "nccl" || (backend == "auto" && gpu && devices >= topology.local_world_size)) {
    DL_REQUIRE(gpu, "communicator backend 'nccl' needs a visible CUDA device; none is visible on this "
                    "process (check CUDA_VISIBLE_DEVICES and the driver), or use --backend=mpi");
    return std::make_unique<NcclCommunicator>(topology, options.watchdog);
  }
  if (gpu && topology.rank == 0)
    LOG(WARNING) << "communicator backend auto: MPI, since " << topology.local_world_size << " ranks on a node share "
                 << devices << " GPU(s) and NCCL needs one per rank; with --device=cuda the ranks compute on the "
                 << "GPU and their collectives go through host memory";
#else
  DL_REQUIRE(backend != "nccl",
             "communicator backend 'nccl' is not in this build: it needs a CUDA-enabled LibTorch and NCCL "
             "at configure time (see README, 'Distributed runtime'); use the mpi backend");
#endif
  return std::make_unique<MpiCommunicator>(topology.world, topology.local_rank, options.watchdog);
}

int lowest_failed_rank(Communicator& comm, bool ok) {
  // The lowest failing rank r contributes world - r, so the maximum names it (0: none failed).
  const int world = comm.world_size();
  auto v = torch::tensor({static_cast<int64_t>(ok ? 0 : world - comm.rank())}, torch::kLong).to(comm.device());
  comm.all_reduce_max(v);
  const int64_t m = v.item<int64_t>();
  return m == 0 ? -1 : static_cast<int>(world - m);
}

torch::Device select_device(const std::string& request, const Topology& topology, const std::string& what) {
  const bool gpu = DRIFTLAB_WITH_CUDA && torch::cuda::is_available();
  const int count = gpu ? static_cast<int>(torch::cuda::device_count()) : 0;
  if (request == "cpu" || (request == "auto" && !gpu)) return torch::kCPU;
  if (request == "auto" || request == "cuda") {
    DL_REQUIRE(gpu && count > 0, what << "=" << request << ": no CUDA device is visible to this process"
                                      << (DRIFTLAB_WITH_CUDA ? " (check CUDA_VISIBLE_DEVICES and the driver)"
                                                             : " (this build has no CUDA: configure with a CUDA LibTorch)")
                                      << "; use " << what << "=cpu");
    return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(topology.local_rank % std::max(count, 1)));
  }
  if (request.rfind("cuda:", 0) == 0) {
    char* end = nullptr;
    const long n = std::strtol(request.c_str() + 5, &end, 10);
    DL_REQUIRE(end && *end == '\0' && request.size() > 5 && n >= 0,
               what << "=" << request << ": expected cuda:N with N a device number");
    DL_REQUIRE(gpu && n < count, what << "=" << request << ": " << count << " CUDA device(s) visible to this process");
    return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(n));
  }
  throw UserError(what + "=" + request + ": expected auto, cpu, cuda or cuda:N");
}

}  // namespace driftlab::comm
