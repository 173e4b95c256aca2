// Always-on checks for CUDA runtime and NCCL calls (include only where DRIFTLAB_WITH_NCCL is 1).
// A failure names the call, file:line, the rank and the library's own message, then ends the
// process through fatal_error (MPI_Abort under several ranks).
#pragma once

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <string>

#include "common/check.h"

#define DL_CHECK_CUDA(call)                                                              \
  do {                                                                                   \
    cudaError_t dl_cuda_rc_ = (call);                                                    \
    if (dl_cuda_rc_ != cudaSuccess)                                                      \
      ::driftlab::fatal_error(std::string("CUDA call " #call " failed at ") +            \
                              ::driftlab::detail::format_location(__FILE__, __LINE__) +  \
                              ": " + cudaGetErrorString(dl_cuda_rc_));                   \
  } while (0)

#define DL_CHECK_NCCL(call)                                                              \
  do {                                                                                   \
    ncclResult_t dl_nccl_rc_ = (call);                                                   \
    if (dl_nccl_rc_ != ncclSuccess && dl_nccl_rc_ != ncclInProgress)                     \
      ::driftlab::fatal_error(std::string("NCCL call " #call " failed at ") +            \
                              ::driftlab::detail::format_location(__FILE__, __LINE__) +  \
                              ": " + ncclGetErrorString(dl_nccl_rc_) +                   \
                              " (hint: NCCL_DEBUG=WARN shows NCCL's own diagnosis)");    \
  } while (0)
