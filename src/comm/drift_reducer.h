// Adapter: a comm::Communicator seen as the drift library's Reducer (src/drift/reducer.h), so
// the distributed drift field runs on the real MPI or NCCL communicator.
#pragma once

#include "comm/communicator.h"
#include "drift/reducer.h"

namespace driftlab::comm {

class CommunicatorReducer final : public drift::Reducer {
 public:
  explicit CommunicatorReducer(Communicator& comm) : comm_(comm) {}
  void all_reduce_sum(torch::Tensor& t) override { comm_.all_reduce_sum(t); }
  void all_reduce_max(torch::Tensor& t) override { comm_.all_reduce_max(t); }

 private:
  Communicator& comm_;
};

}  // namespace driftlab::comm
