// NCCL backend (see nccl_communicator.h). Compiled only when DRIFTLAB_WITH_CUDA is 1.
#include "driftlab_config.h"
#if DRIFTLAB_WITH_CUDA && DRIFTLAB_WITH_NCCL
#include "comm/nccl_communicator.h"

#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "comm/topology.h"

namespace driftlab::comm {
namespace {

// The NCCL type of a dtype, and whether it can be reduced (bool moves as bytes, never sums).
bool nccl_type(torch::ScalarType s, ncclDataType_t* out) {
  switch (s) {
    case torch::kFloat: *out = ncclFloat32; return true;
    case torch::kDouble: *out = ncclFloat64; return true;
    case torch::kHalf: *out = ncclFloat16; return true;
    case torch::kBFloat16: *out = ncclBfloat16; return true;
    case torch::kInt: *out = ncclInt32; return true;
    case torch::kLong: *out = ncclInt64; return true;
    case torch::kChar: *out = ncclInt8; return true;
    case torch::kByte: *out = ncclUint8; return true;
    default: return false;
  }
}

ncclRedOp_t nccl_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum: return ncclSum;
    case ReduceOp::kMax: return ncclMax;
    case ReduceOp::kAvg: return ncclAvg;
  }
  return ncclSum;
}

cudaStream_t current_stream(int device) { return c10::cuda::getCurrentCUDAStream(device).stream(); }

}  // namespace

NcclCommunicator::NcclCommunicator(const Topology& topology, const WatchdogOptions& watchdog)
    : local_rank_(topology.local_rank) {
  DL_CHECK_MPI(MPI_Comm_dup(topology.world, &mpi_));
  DL_CHECK_MPI(MPI_Comm_set_errhandler(mpi_, MPI_ERRORS_RETURN));
  int devices = cuda_device_count();
  DL_REQUIRE(devices > 0, "communicator backend 'nccl': no CUDA device is visible to rank " << topology.rank);
  DL_REQUIRE(topology.local_world_size <= devices,
             "communicator backend 'nccl': " << topology.local_world_size << " ranks on this node but only " << devices
                                             << " visible CUDA device(s); NCCL needs one device per rank (start at most "
                                             << devices << " ranks per node)");
  // Started first, so the bootstrap (MPI_Bcast of the id, ncclCommInitRank: both wait for every
  // rank) runs under the deadline too. The abort unblocks NCCL's kernels before MPI_Abort.
  start_watchdog(watchdog, topology.rank, topology.world_size, [this](int code) {
    if (nccl_) nccl_->abort();
    MPI_Abort(MPI_COMM_WORLD, code);
  });
  {
    CollectiveWatchdog::Scope deadline(watchdog_.get(), "nccl init");
    nccl_ = std::make_unique<NcclComm>(mpi_, topology.local_rank % devices);
  }
  nccl_->set_watchdog(watchdog_.get());
}

NcclCommunicator::~NcclCommunicator() {
  watchdog_.reset();
  nccl_.reset();
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized && mpi_ != MPI_COMM_NULL) MPI_Comm_free(&mpi_);
}

torch::Device NcclCommunicator::device() const {
  return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(nccl_->device()));
}

void NcclCommunicator::require_device(const torch::Tensor& t, const char* operation) const {
  DL_REQUIRE(t.defined(), "communicator backend 'nccl': " << operation << " got an undefined tensor");
  if (t.device() != device())
    unsupported(operation, "tensors on " + t.device().str() + " (this rank's NCCL communicator works on " +
                               device().str() + "; use the mpi backend for CPU tensors)");
}

void NcclCommunicator::all_reduce(torch::Tensor& t, ReduceOp op) {
  const std::string name = std::string("all_reduce(") + to_string(op) + ")";
  require_device(t, name.c_str());
  ncclDataType_t type;
  if (!nccl_type(t.scalar_type(), &type))
    unsupported(name, std::string("dtype ") + c10::toString(t.scalar_type()));
  if (op == ReduceOp::kAvg && !torch::isFloatingType(t.scalar_type()))
    unsupported(name, std::string("an average of integer dtype ") + c10::toString(t.scalar_type()) + " (use sum)");
  c10::cuda::CUDAGuard guard(device());
  torch::Tensor buffer = t.is_contiguous() ? t : t.contiguous();
  nccl_->all_reduce(buffer.data_ptr(), buffer.data_ptr(), static_cast<size_t>(buffer.numel()), type, nccl_op(op),
                    current_stream(nccl_->device()));
  if (!buffer.is_same(t)) t.copy_(buffer);
}

torch::Tensor NcclCommunicator::all_gather(const torch::Tensor& t) {
  require_device(t, "all_gather");
  c10::cuda::CUDAGuard guard(device());
  torch::Tensor src = (t.dim() == 0 ? t.reshape({1}) : t).contiguous();
  auto sizes = src.sizes().vec();
  sizes[0] *= world_size();
  torch::Tensor out = torch::empty(sizes, src.options());
  // Moved as bytes: any dtype gathers, and sizes are in bytes throughout.
  nccl_->all_gather(src.data_ptr(), out.data_ptr(), static_cast<size_t>(src.numel() * src.element_size()), ncclUint8,
                    current_stream(nccl_->device()));
  return out;
}

torch::Tensor NcclCommunicator::all_gather_varying(const torch::Tensor& t, std::vector<int64_t>* counts) {
  require_device(t, "all_gather_varying");
  if (world_size() == 1) {
    torch::Tensor out = t.dim() == 0 ? t.reshape({1}) : t;
    if (counts) counts->assign(1, out.size(0));
    return out;
  }
  c10::cuda::CUDAGuard guard(device());
  torch::Tensor src = (t.dim() == 0 ? t.reshape({1}) : t).contiguous();
  int64_t row_elems = 1;
  for (int64_t d = 1; d < src.dim(); ++d) row_elems *= src.size(d);
  // Rows per rank over MPI (host memory); the other dims and the dtype must agree everywhere.
  int64_t mine[3] = {src.size(0), row_elems, static_cast<int64_t>(src.scalar_type())};
  std::vector<int64_t> all(static_cast<size_t>(world_size()) * 3);
  {
    CollectiveWatchdog::Scope deadline(watchdog_.get(), "all_gather_varying (row counts over MPI)");
    DL_CHECK_MPI(MPI_Allgather(mine, 3, MPI_INT64_T, all.data(), 3, MPI_INT64_T, mpi_));
  }
  std::vector<size_t> bytes(world_size());
  int64_t total_rows = 0;
  if (counts) counts->assign(world_size(), 0);
  for (int r = 0; r < world_size(); ++r) {
    DL_REQUIRE(all[3 * r + 1] == all[1] && all[3 * r + 2] == all[2], "communicator backend 'nccl': all_gather_varying needs the same dtype and "
                                         "sizes after dim 0 on every rank; rank " << r << " differs from rank 0");
    if (counts) (*counts)[r] = all[3 * r];
    bytes[r] = static_cast<size_t>(all[3 * r] * row_elems * src.element_size());
    total_rows += all[3 * r];
  }
  auto sizes = src.sizes().vec();
  sizes[0] = total_rows;
  torch::Tensor out = torch::empty(sizes, src.options());
  nccl_->all_gather_varying(src.data_ptr(), out.data_ptr(), bytes, ncclUint8, current_stream(nccl_->device()));
  return out;
}

void NcclCommunicator::broadcast(torch::Tensor& t, int root) {
  require_device(t, "broadcast");
  c10::cuda::CUDAGuard guard(device());
  torch::Tensor buffer = t.is_contiguous() ? t : t.contiguous();
  nccl_->broadcast(buffer.data_ptr(), static_cast<size_t>(buffer.numel() * buffer.element_size()), ncclUint8, root,
                   current_stream(nccl_->device()));
  if (!buffer.is_same(t)) t.copy_(buffer);
}

void NcclCommunicator::barrier() {
  c10::cuda::CUDAGuard guard(device());
  torch::Tensor one = torch::ones({1}, torch::TensorOptions().dtype(torch::kFloat).device(device()));
  all_reduce(one, ReduceOp::kSum);
  nccl_->synchronize(current_stream(nccl_->device()));
}

}  // namespace driftlab::comm
#endif  // DRIFTLAB_WITH_CUDA && DRIFTLAB_WITH_NCCL
