// Raw NCCL layer (see nccl_comm.h).
#include "comm/nccl_comm.h"

#include <chrono>
#include <memory>
#include <string>
#include <thread>

#include "common/check.h"
#include "common/check_cuda.h"

namespace driftlab::comm {
namespace {

// Completion of one NCCL collective on the GPU, polled by the watchdog thread.
class CudaEventWork final : public PendingWork {
 public:
  CudaEventWork(int device, cudaEvent_t event) : device_(device), event_(event) {}
  ~CudaEventWork() override {
    cudaSetDevice(device_);
    cudaEventDestroy(event_);
  }
  bool done() override {
    cudaSetDevice(device_);  // per thread: the watchdog thread has its own current device
    const cudaError_t q = cudaEventQuery(event_);
    if (q == cudaErrorNotReady) return false;
    // An error here is reported by the collective's own thread (check_async_error, synchronize).
    if (q != cudaSuccess) cudaGetLastError();
    return true;
  }

 private:
  int device_;
  cudaEvent_t event_;
};

}  // namespace

int cuda_device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no driver / no device" error
    return 0;
  }
  return n;
}

size_t nccl_type_size(ncclDataType_t type) {
  switch (type) {
    case ncclInt8:
    case ncclUint8: return 1;
    case ncclFloat16:
    case ncclBfloat16: return 2;
    case ncclInt32:
    case ncclUint32:
    case ncclFloat32: return 4;
    case ncclInt64:
    case ncclUint64:
    case ncclFloat64: return 8;
    default: break;
  }
  fatal_error("nccl_type_size: unknown NCCL data type " + std::to_string(static_cast<int>(type)));
}

NcclComm::NcclComm(MPI_Comm comm, int device) : device_(device) {
  DL_CHECK_MPI(MPI_Comm_rank(comm, &rank_));
  DL_CHECK_MPI(MPI_Comm_size(comm, &size_));
  int devices = cuda_device_count();
  DL_REQUIRE(device >= 0 && device < devices, "NCCL communicator: rank " << rank_ << " asked for CUDA device "
                                                  << device << " but " << devices << " device(s) are visible");
  DL_CHECK_CUDA(cudaSetDevice(device));
  ncclUniqueId id;
  if (rank_ == 0) DL_CHECK_NCCL(ncclGetUniqueId(&id));
  DL_CHECK_MPI(MPI_Bcast(&id, sizeof(id), MPI_BYTE, 0, comm));
  DL_CHECK_NCCL(ncclCommInitRank(&comm_, size_, id, rank_));
}

NcclComm::~NcclComm() {
  if (comm_ != nullptr) ncclCommDestroy(comm_);
}

void NcclComm::abort() {
  if (comm_ != nullptr) ncclCommAbort(comm_);
}

void NcclComm::watch_completion(const char* op, cudaStream_t stream) {
  if (watchdog_ == nullptr) return;
  cudaEvent_t event;
  DL_CHECK_CUDA(cudaEventCreateWithFlags(&event, cudaEventDisableTiming));
  DL_CHECK_CUDA(cudaEventRecord(event, stream));
  watchdog_->watch_async(op, std::make_unique<CudaEventWork>(device_, event));
}

void NcclComm::all_reduce(const void* send, void* recv, size_t count, ncclDataType_t type, ncclRedOp_t op,
                          cudaStream_t stream) {
  {
    CollectiveWatchdog::Scope deadline(watchdog_, "nccl all_reduce (enqueue)");
    DL_CHECK_NCCL(ncclAllReduce(send, recv, count, type, op, comm_, stream));
  }
  watch_completion("nccl all_reduce", stream);
  check_async_error();
}

void NcclComm::all_gather(const void* send, void* recv, size_t count, ncclDataType_t type, cudaStream_t stream) {
  {
    CollectiveWatchdog::Scope deadline(watchdog_, "nccl all_gather (enqueue)");
    DL_CHECK_NCCL(ncclAllGather(send, recv, count, type, comm_, stream));
  }
  watch_completion("nccl all_gather", stream);
  check_async_error();
}

void NcclComm::all_gather_varying(const void* send, void* recv, const std::vector<size_t>& counts,
                                  ncclDataType_t type, cudaStream_t stream) {
  DL_CHECK(static_cast<int>(counts.size()) == size_, "counts has " << counts.size() << " entries for " << size_ << " ranks");
  const size_t elem = nccl_type_size(type);
  size_t offset = 0;
  // Grouped so NCCL schedules the size() broadcasts as one operation, without deadlock.
  {
    CollectiveWatchdog::Scope deadline(watchdog_, "nccl all_gather_varying (enqueue)");
    DL_CHECK_NCCL(ncclGroupStart());
    for (int r = 0; r < size_; ++r) {
      void* dst = static_cast<char*>(recv) + offset * elem;
      if (counts[r] > 0) DL_CHECK_NCCL(ncclBroadcast(send, dst, counts[r], type, r, comm_, stream));
      offset += counts[r];
    }
    DL_CHECK_NCCL(ncclGroupEnd());
  }
  watch_completion("nccl all_gather_varying", stream);
  check_async_error();
}

void NcclComm::broadcast(void* buffer, size_t count, ncclDataType_t type, int root, cudaStream_t stream) {
  DL_REQUIRE(root >= 0 && root < size_, "communicator backend 'nccl': broadcast root " << root
                                            << " is not a rank of this world of " << size_);
  {
    CollectiveWatchdog::Scope deadline(watchdog_, "nccl broadcast (enqueue)");
    DL_CHECK_NCCL(ncclBroadcast(buffer, buffer, count, type, root, comm_, stream));
  }
  watch_completion("nccl broadcast", stream);
  check_async_error();
}

void NcclComm::check_async_error() {
  ncclResult_t state = ncclSuccess;
  DL_CHECK_NCCL(ncclCommGetAsyncError(comm_, &state));
  if (state != ncclSuccess && state != ncclInProgress) {
    // Abort rather than destroy: destroy would wait for the operations that can no longer finish.
    ncclCommAbort(comm_);
    comm_ = nullptr;
    fatal_error(std::string("NCCL reported an asynchronous error: ") + ncclGetErrorString(state) +
                " (a peer rank may have died; NCCL_DEBUG=WARN shows NCCL's own diagnosis)");
  }
}

void NcclComm::synchronize(cudaStream_t stream) {
  CollectiveWatchdog::Scope deadline(watchdog_, "nccl synchronize");
  for (;;) {
    cudaError_t q = cudaStreamQuery(stream);
    if (q == cudaSuccess) return;
    if (q != cudaErrorNotReady) DL_CHECK_CUDA(q);
    check_async_error();
    std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
}

}  // namespace driftlab::comm
