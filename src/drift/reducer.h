// The only collectives the drifting field needs: in-place all-reduce SUM and MAX on tensors.
//
// src/drift stays pure tensor code: the distributed form (docs/DRIFTING.md section 5) is written
// against this interface. LocalReducer is the world of one; tests use a fake that splits rows
// into W parts inside one process; src/comm adapts its MPI/NCCL Communicator to it.
#pragma once

#include <torch/types.h>

namespace driftlab::drift {

class Reducer {
 public:
  virtual ~Reducer() = default;
  // Every rank calls these in the same order with tensors of identical shape and dtype.
  virtual void all_reduce_sum(torch::Tensor& t) = 0;
  virtual void all_reduce_max(torch::Tensor& t) = 0;
};

// World of size 1: both reductions are the identity.
class LocalReducer final : public Reducer {
 public:
  void all_reduce_sum(torch::Tensor&) override {}
  void all_reduce_max(torch::Tensor&) override {}
};

}  // namespace driftlab::drift
