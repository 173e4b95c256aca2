// MPI backend (see mpi_communicator.h).
#include "comm/mpi_communicator.h"

#include <climits>
#include <sstream>

#include "common/text.h"

namespace driftlab::comm {
namespace {

// MPI counts are ints: larger broadcasts go in chunks of this many bytes.
constexpr int64_t kMaxChunk = int64_t{1} << 30;

// Gathers exchange a fixed-size description of each rank's tensor: dtype, ndim, sizes.
constexpr int kMaxDims = 8;
constexpr int kMetaLen = 2 + kMaxDims;

// The MPI type reductions run in, or MPI_DATATYPE_NULL when there is none. 16-bit floats have
// no MPI type: they are reduced in float32 (staged), which also keeps their sums accurate.
MPI_Datatype reduce_type(torch::ScalarType s) {
  switch (s) {
    case torch::kFloat: return MPI_FLOAT;
    case torch::kDouble: return MPI_DOUBLE;
    case torch::kInt: return MPI_INT32_T;
    case torch::kLong: return MPI_INT64_T;
    default: return MPI_DATATYPE_NULL;
  }
}

bool staged_in_float(torch::ScalarType s) { return s == torch::kBFloat16 || s == torch::kHalf; }

MPI_Op mpi_op(ReduceOp op) { return op == ReduceOp::kMax ? MPI_MAX : MPI_SUM; }

// Names of the collectives in the watchdog's records (string literals: they outlive every scope).
const char* all_reduce_name(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum: return "all_reduce(sum)";
    case ReduceOp::kMax: return "all_reduce(max)";
    case ReduceOp::kAvg: return "all_reduce(avg)";
  }
  return "all_reduce";
}
const char* async_wait_name(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum: return "wait(all_reduce_async(sum))";
    case ReduceOp::kMax: return "wait(all_reduce_async(max))";
    case ReduceOp::kAvg: return "wait(all_reduce_async(avg))";
  }
  return "wait(all_reduce_async)";
}

// The buffer a reduction runs on: t itself when it is a contiguous CPU tensor of a type MPI
// reduces, else a contiguous host copy (float32 for 16-bit floats) written back afterwards.
torch::Tensor reduction_buffer(const torch::Tensor& t) {
  const auto dtype = staged_in_float(t.scalar_type()) ? torch::kFloat : t.scalar_type();
  if (!t.device().is_cpu() || dtype != t.scalar_type()) return t.to(torch::kCPU, dtype).contiguous();
  return t.is_contiguous() ? t : t.contiguous();
}

// A contiguous host tensor with t's values (t itself when it already is one); 0-d tensors as 1-d.
torch::Tensor host_contiguous(const torch::Tensor& t) {
  torch::Tensor src = t.dim() == 0 ? t.reshape({1}) : t;
  return src.device().is_cpu() ? src.contiguous() : src.to(torch::kCPU).contiguous();
}

void finish_reduction(torch::Tensor& t, torch::Tensor& buffer, ReduceOp op, int world) {
  if (op == ReduceOp::kAvg) buffer.div_(world);
  if (!buffer.is_same(t)) t.copy_(buffer);
}

// "Float[2, 3]" from the {dtype, ndim, sizes...} header the collectives compare across ranks.
std::string meta_string(const int64_t* meta) {
  return std::string(c10::toString(static_cast<torch::ScalarType>(meta[0]))) +
         shape_string(c10::ArrayRef<int64_t>(meta + 2, static_cast<size_t>(meta[1])));
}

class MpiWork final : public Work {
 public:
  MpiWork(torch::Tensor& target, torch::Tensor buffer, std::vector<MPI_Request> requests, ReduceOp op, int world,
          CollectiveWatchdog* watchdog)
      : target_(target), buffer_(std::move(buffer)), requests_(std::move(requests)), op_(op), world_(world),
        watchdog_(watchdog) {}
  ~MpiWork() override { wait(); }
  void wait() override {
    if (done_) return;
    done_ = true;
    CollectiveWatchdog::Scope deadline(watchdog_, async_wait_name(op_));
    DL_CHECK_MPI(MPI_Waitall(static_cast<int>(requests_.size()), requests_.data(), MPI_STATUSES_IGNORE));
    finish_reduction(target_, buffer_, op_, world_);
  }

 private:
  torch::Tensor target_;  // shares storage with the caller's tensor
  torch::Tensor buffer_;
  std::vector<MPI_Request> requests_;
  ReduceOp op_;
  int world_;
  CollectiveWatchdog* watchdog_;  // the communicator's; outlives every Work (see communicator.h)
  bool done_ = false;
};

}  // namespace

MpiCommunicator::MpiCommunicator(MPI_Comm comm, int local_rank, const WatchdogOptions& watchdog)
    : local_rank_(local_rank) {
  DL_REQUIRE(comm != MPI_COMM_NULL, "MpiCommunicator: the MPI communicator is null; call comm::init_topology() first");
  DL_CHECK_MPI(MPI_Comm_rank(comm, &rank_));
  DL_CHECK_MPI(MPI_Comm_size(comm, &world_));
  // Started first, so the duplication (collective) runs under the deadline too. MPI_COMM_WORLD,
  // not comm_: the launcher then ends every rank of the job, whatever comm_ spans.
  start_watchdog(watchdog, rank_, world_, [](int code) { MPI_Abort(MPI_COMM_WORLD, code); });
  CollectiveWatchdog::Scope deadline(watchdog_.get(), "MPI_Comm_dup (communicator set-up)");
  DL_CHECK_MPI(MPI_Comm_dup(comm, &comm_));
  DL_CHECK_MPI(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN));
}

MpiCommunicator::~MpiCommunicator() {
  watchdog_.reset();
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized && comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
}

void MpiCommunicator::set_reduce_chunk_bytes(int64_t bytes) {
  DL_REQUIRE(bytes >= 8 && bytes < (int64_t{1} << 31),
             "communicator backend 'mpi': reduce chunk of " << bytes << " bytes; expected 8 bytes to 2 GiB");
  reduce_chunk_bytes_ = bytes;
}

void MpiCommunicator::require_host_or_cuda(const torch::Tensor& t, const char* operation) const {
  DL_REQUIRE(t.defined(), "communicator backend 'mpi': " << operation << " got an undefined tensor");
  if (!t.device().is_cpu() && !t.device().is_cuda())
    unsupported(operation, "tensors on " + t.device().str() + " (the MPI backend takes CPU tensors, and CUDA "
                                                             "tensors through host memory)");
}

void MpiCommunicator::check_reducible(const torch::Tensor& t, ReduceOp op, const char* operation) const {
  const std::string name = std::string(operation) + "(" + to_string(op) + ")";
  require_host_or_cuda(t, name.c_str());
  const auto s = t.scalar_type();
  if (reduce_type(s) == MPI_DATATYPE_NULL && !staged_in_float(s))
    unsupported(name, std::string("dtype ") + c10::toString(s) +
                          " (supported: float32, float64, int32, int64, bfloat16, float16)");
  if (op == ReduceOp::kAvg && !torch::isFloatingType(s))
    unsupported(name, std::string("an average of integer dtype ") + c10::toString(s) + " (use sum)");
}

// Blocking calls use MPI_Allreduce, not MPI_Iallreduce + wait: OpenMPI's blocking collectives pick
// size-tuned algorithms, while its nonblocking ones (libnbc) are much slower on large messages.
void MpiCommunicator::all_reduce(torch::Tensor& t, ReduceOp op) {
  check_reducible(t, op, "all_reduce");
  torch::Tensor buffer = reduction_buffer(t);
  MPI_Datatype type = reduce_type(buffer.scalar_type());
  const int64_t n = buffer.numel();
  char* base = static_cast<char*>(buffer.data_ptr());
  const int64_t chunk = std::max<int64_t>(1, reduce_chunk_bytes_ / buffer.element_size());
  CollectiveWatchdog::Scope deadline(watchdog_.get(), all_reduce_name(op));
  for (int64_t off = 0; off < n; off += chunk) {
    int count = static_cast<int>(std::min(chunk, n - off));
    DL_CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, base + off * buffer.element_size(), count, type, mpi_op(op), comm_));
  }
  finish_reduction(t, buffer, op, world_);
}

std::unique_ptr<Work> MpiCommunicator::all_reduce_async(torch::Tensor& t, ReduceOp op) {
  check_reducible(t, op, "all_reduce");
  torch::Tensor buffer = reduction_buffer(t);
  MPI_Datatype type = reduce_type(buffer.scalar_type());
  std::vector<MPI_Request> requests;
  const int64_t n = buffer.numel();
  char* base = static_cast<char*>(buffer.data_ptr());
  const int64_t chunk = std::max<int64_t>(1, reduce_chunk_bytes_ / buffer.element_size());
  for (int64_t off = 0; off < n; off += chunk) {
    int count = static_cast<int>(std::min(chunk, n - off));
    requests.emplace_back();
    DL_CHECK_MPI(MPI_Iallreduce(MPI_IN_PLACE, base + off * buffer.element_size(), count, type, mpi_op(op), comm_,
                                &requests.back()));
  }
  return std::make_unique<MpiWork>(t, std::move(buffer), std::move(requests), op, world_, watchdog_.get());
}

// Every rank learns every rank's dtype and shape, and all ranks raise the same error on a mismatch
// (they all see the same table), so a wrong call fails everywhere instead of hanging or corrupting.
static std::vector<int64_t> exchange_shapes(MPI_Comm comm, int world, const torch::Tensor& t, bool equal_dim0,
                                            const char* operation) {
  DL_REQUIRE(t.dim() <= kMaxDims, "communicator backend 'mpi': " << operation << " supports up to " << kMaxDims
                                      << " dimensions, got " << t.dim());
  int64_t mine[kMetaLen] = {0};
  mine[0] = static_cast<int64_t>(t.scalar_type());
  mine[1] = std::max<int64_t>(1, t.dim());
  for (int64_t d = 0; d < t.dim(); ++d) mine[2 + d] = t.size(d);
  if (t.dim() == 0) mine[2] = 1;
  std::vector<int64_t> all(static_cast<size_t>(world) * kMetaLen);
  DL_CHECK_MPI(MPI_Allgather(mine, kMetaLen, MPI_INT64_T, all.data(), kMetaLen, MPI_INT64_T, comm));
  const int64_t* r0 = all.data();
  for (int r = 1; r < world; ++r) {
    const int64_t* m = all.data() + static_cast<size_t>(r) * kMetaLen;
    bool same = m[0] == r0[0] && m[1] == r0[1] && (!equal_dim0 || m[2] == r0[2]);
    for (int64_t d = 1; d < r0[1]; ++d) same = same && m[2 + d] == r0[2 + d];
    DL_REQUIRE(same, "communicator backend 'mpi': " << operation << " needs "
                         << (equal_dim0 ? "the same dtype and shape" : "the same dtype and sizes after dim 0")
                         << " on every rank, but rank 0 has " << meta_string(r0) << " and rank " << r << " has "
                         << meta_string(m));
  }
  return all;
}

torch::Tensor MpiCommunicator::all_gather(const torch::Tensor& t) {
  require_host_or_cuda(t, "all_gather");
  CollectiveWatchdog::Scope deadline(watchdog_.get(), "all_gather");
  exchange_shapes(comm_, world_, t, /*equal_dim0=*/true, "all_gather");
  torch::Tensor src = host_contiguous(t);
  auto sizes = src.sizes().vec();
  sizes[0] *= world_;
  torch::Tensor out = torch::empty(sizes, src.options());
  const int64_t bytes = src.numel() * src.element_size();
  DL_REQUIRE(bytes * world_ < INT_MAX, "communicator backend 'mpi': all_gather of " << bytes * world_
                                           << " bytes exceeds the 2 GiB limit of one MPI call; gather in parts");
  DL_CHECK_MPI(MPI_Allgather(src.data_ptr(), static_cast<int>(bytes), MPI_BYTE, out.data_ptr(),
                             static_cast<int>(bytes), MPI_BYTE, comm_));
  return out.to(t.device());
}

torch::Tensor MpiCommunicator::all_gather_varying(const torch::Tensor& t, std::vector<int64_t>* counts) {
  require_host_or_cuda(t, "all_gather_varying");
  if (world_ == 1) {
    torch::Tensor out = t.dim() == 0 ? t.reshape({1}) : t;
    if (counts) counts->assign(1, out.size(0));
    return out;
  }
  CollectiveWatchdog::Scope deadline(watchdog_.get(), "all_gather_varying");
  std::vector<int64_t> meta = exchange_shapes(comm_, world_, t, /*equal_dim0=*/false, "all_gather_varying");
  torch::Tensor src = host_contiguous(t);
  int64_t row_elems = 1;
  for (int64_t d = 1; d < src.dim(); ++d) row_elems *= src.size(d);
  const int64_t row_size = row_elems * src.element_size();
  std::vector<int> byte_counts(world_), displs(world_);
  int64_t total_rows = 0, offset = 0;
  if (counts) counts->assign(world_, 0);
  for (int r = 0; r < world_; ++r) {
    int64_t rows = meta[static_cast<size_t>(r) * kMetaLen + 2];
    if (counts) (*counts)[r] = rows;
    DL_REQUIRE(offset + rows * row_size < INT_MAX, "communicator backend 'mpi': all_gather_varying of more than 2 GiB "
                                                   "exceeds the limit of one MPI call; gather in parts");
    byte_counts[r] = static_cast<int>(rows * row_size);
    displs[r] = static_cast<int>(offset);
    offset += rows * row_size;
    total_rows += rows;
  }
  auto sizes = src.sizes().vec();
  sizes[0] = total_rows;
  torch::Tensor out = torch::empty(sizes, src.options());
  DL_CHECK_MPI(MPI_Allgatherv(src.data_ptr(), byte_counts[rank_], MPI_BYTE, out.data_ptr(), byte_counts.data(),
                              displs.data(), MPI_BYTE, comm_));
  return out.to(t.device());
}

void MpiCommunicator::broadcast(torch::Tensor& t, int root) {
  require_host_or_cuda(t, "broadcast");
  DL_REQUIRE(root >= 0 && root < world_,
             "communicator backend 'mpi': broadcast root " << root << " is not a rank of this world of " << world_);
  torch::Tensor buffer = t.device().is_cpu() ? (t.is_contiguous() ? t : t.contiguous()) : t.to(torch::kCPU).contiguous();
  const int64_t bytes = buffer.numel() * buffer.element_size();
  char* base = static_cast<char*>(buffer.data_ptr());
  CollectiveWatchdog::Scope deadline(watchdog_.get(), "broadcast");
  for (int64_t off = 0; off < bytes; off += kMaxChunk) {
    int count = static_cast<int>(std::min(kMaxChunk, bytes - off));
    DL_CHECK_MPI(MPI_Bcast(base + off, count, MPI_BYTE, root, comm_));
  }
  if (!buffer.is_same(t)) t.copy_(buffer);
}

void MpiCommunicator::barrier() {
  CollectiveWatchdog::Scope deadline(watchdog_.get(), "barrier");
  DL_CHECK_MPI(MPI_Barrier(comm_));
}

}  // namespace driftlab::comm
