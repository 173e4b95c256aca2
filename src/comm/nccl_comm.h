// Raw NCCL layer: an NCCL communicator over the ranks of an MPI communicator, working on device
// pointers and CUDA streams. Needs only nccl.h and the CUDA runtime (compiled wherever
// DRIFTLAB_WITH_NCCL is 1, even with a CPU LibTorch); the tensor-level backend on top of it is
// nccl_communicator.h. Include only where DRIFTLAB_WITH_NCCL is 1.
//
// Bootstrap as in llm.c: rank 0 makes the NCCL unique id, MPI_Bcast shares it, every rank calls
// ncclCommInitRank on its own device. Collectives are enqueued on the caller's stream and return
// at once; synchronize() waits for a stream while watching ncclCommGetAsyncError, so a failed
// peer ends this process with NCCL's message instead of a hang. With a collective watchdog
// (set_watchdog), the enqueue and every wait run under its deadline, and each collective's
// completion on the GPU is watched through a CUDA event recorded after it, so a peer that never
// arrives ends the job even when the host is blocked elsewhere (e.g. in a device-to-host copy).
#pragma once

#include <cuda_runtime_api.h>
#include <mpi.h>
#include <nccl.h>

#include <cstddef>
#include <vector>

#include "comm/watchdog.h"

namespace driftlab::comm {

// CUDA devices this process can use; 0 (never an error) without a driver or a device.
int cuda_device_count();

// Bytes per element of an NCCL data type.
size_t nccl_type_size(ncclDataType_t type);

class NcclComm {
 public:
  // Collective over `comm`: every rank passes its own device (one device per rank; NCCL refuses
  // two ranks of a communicator on one device).
  NcclComm(MPI_Comm comm, int device);
  ~NcclComm();
  NcclComm(const NcclComm&) = delete;
  NcclComm& operator=(const NcclComm&) = delete;

  int rank() const { return rank_; }
  int size() const { return size_; }
  int device() const { return device_; }
  ncclComm_t raw() const { return comm_; }

  // send may equal recv (in place). count is in elements.
  void all_reduce(const void* send, void* recv, size_t count, ncclDataType_t type, ncclRedOp_t op, cudaStream_t stream);
  // recv holds size() * count elements, rank r's at offset r * count.
  void all_gather(const void* send, void* recv, size_t count, ncclDataType_t type, cudaStream_t stream);
  // recv holds sum(counts) elements, rank r's after those of ranks < r. NCCL has no all-gather
  // of unequal sizes; this is one grouped broadcast per rank.
  void all_gather_varying(const void* send, void* recv, const std::vector<size_t>& counts, ncclDataType_t type,
                          cudaStream_t stream);
  void broadcast(void* buffer, size_t count, ncclDataType_t type, int root, cudaStream_t stream);

  // Ends the process (after aborting the communicator) if NCCL reported an asynchronous error.
  void check_async_error();
  // Waits until everything enqueued on stream has run, checking for asynchronous NCCL errors.
  void synchronize(cudaStream_t stream);

  // The deadline of every collective and wait (null: none). Not owned; must outlive this.
  void set_watchdog(CollectiveWatchdog* watchdog) { watchdog_ = watchdog; }
  // Aborts the NCCL communicator from any thread (the watchdog's), unblocking its kernels.
  void abort();

 private:
  // Records a CUDA event after the collective just enqueued on stream and hands it to the watchdog.
  void watch_completion(const char* op, cudaStream_t stream);
  CollectiveWatchdog* watchdog_ = nullptr;
  ncclComm_t comm_ = nullptr;
  int rank_ = 0;
  int size_ = 1;
  int device_ = 0;
};

}  // namespace driftlab::comm
