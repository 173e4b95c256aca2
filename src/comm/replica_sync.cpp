// Parameter broadcast and the replica identity check (see replica_sync.h).
#include "comm/replica_sync.h"

#include <torch/torch.h>

#include <cstring>
#include <sstream>
#include <stdexcept>


namespace driftlab::comm {
namespace {

uint64_t rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

// A multiply-rotate hash over 8-byte words: fast (memory bound) and sensitive to every bit and
// to word order; not cryptographic, it only has to expose replicas that drifted apart.
uint64_t hash_bytes(const unsigned char* p, size_t n) {
  constexpr uint64_t kMul1 = 0x9E3779B97F4A7C15ull;
  constexpr uint64_t kMul2 = 0xC2B2AE3D27D4EB4Full;
  uint64_t h = 0x27D4EB2F165667C5ull ^ (n * kMul2);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    std::memcpy(&w, p + i, 8);
    h = rotl(h ^ (w * kMul1), 29) * kMul2;
  }
  uint64_t tail = 0;
  if (n > i) std::memcpy(&tail, p + i, n - i);
  h = rotl(h ^ (tail * kMul1), 29) * kMul2;
  h ^= h >> 31;
  h *= kMul1;
  return h ^ (h >> 29);
}

// Fingerprint of a tensor's dtype and shape, for the structure checks.
int64_t layout_fingerprint(const torch::Tensor& t) {
  std::vector<int64_t> desc = {static_cast<int64_t>(t.scalar_type()), t.dim()};
  for (int64_t s : t.sizes()) desc.push_back(s);
  return static_cast<int64_t>(hash_bytes(reinterpret_cast<const unsigned char*>(desc.data()), desc.size() * 8));
}

int64_t name_fingerprint(const std::string& name) {
  return static_cast<int64_t>(hash_bytes(reinterpret_cast<const unsigned char*>(name.data()), name.size()));
}

std::string describe(const torch::Tensor& t) {
  std::ostringstream os;
  os << c10::toString(t.scalar_type()) << t.sizes();
  return os.str();
}

}  // namespace

RankComparison compare_across_ranks(Communicator& comm, const std::vector<int64_t>& values) {
  // max(x) == min(x) across ranks iff all equal; min(x) = ~max(~x) without overflow.
  auto opts = torch::TensorOptions().dtype(torch::kLong);
  const int64_t n = static_cast<int64_t>(values.size());
  RankComparison out;
  torch::Tensor len = torch::tensor(std::vector<int64_t>{n, ~n}, opts).to(comm.device());
  comm.all_reduce_max(len);
  len = len.cpu();
  if (len[0].item<int64_t>() != ~len[1].item<int64_t>()) {
    out.length_differs = true;
    return out;
  }
  if (n == 0) return out;
  std::vector<int64_t> both(values);
  for (int64_t v : values) both.push_back(~v);
  torch::Tensor t = torch::tensor(both, opts).to(comm.device());
  comm.all_reduce_max(t);
  t = t.cpu();
  const int64_t* m = t.data_ptr<int64_t>();
  for (int64_t i = 0; i < n; ++i)
    if (m[i] != ~m[n + i]) out.differing.push_back(static_cast<size_t>(i));
  return out;
}

uint64_t tensor_bytes_hash(const torch::Tensor& t) {
  torch::Tensor host = t.detach().cpu().contiguous();
  return hash_bytes(static_cast<const unsigned char*>(host.data_ptr()),
                    static_cast<size_t>(host.numel()) * host.element_size());
}

std::vector<std::pair<std::string, torch::Tensor>> replica_tensors(const torch::nn::Module& module) {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (const auto& item : module.named_parameters(/*recurse=*/true)) out.emplace_back(item.key(), item.value());
  for (const auto& item : module.named_buffers(/*recurse=*/true)) out.emplace_back(item.key(), item.value());
  return out;
}

void broadcast_module(Communicator& comm, torch::nn::Module& module, int root) {
  auto tensors = replica_tensors(module);
  std::vector<int64_t> layout;
  for (const auto& [name, t] : tensors) layout.push_back(name_fingerprint(name) ^ layout_fingerprint(t));
  RankComparison cmp = compare_across_ranks(comm, layout);
  DL_REQUIRE(!cmp.length_differs, "broadcast_module: the ranks' models have different numbers of parameters and "
                                  "buffers (this rank has " << tensors.size() << "); every rank must build the same model");
  DL_REQUIRE(cmp.differing.empty(), "broadcast_module: parameter or buffer '"
                                        << tensors[cmp.differing[0]].first << "' (" << describe(tensors[cmp.differing[0]].second)
                                        << " on rank " << comm.rank()
                                        << ") differs in name, dtype or shape between ranks; every rank must build the same model");
  torch::NoGradGuard no_grad;
  for (auto& [name, t] : tensors) {
    torch::Tensor data = t.detach();  // shares storage; the leaf's autograd state is untouched
    comm.broadcast(data, root);
  }
}

SyncReport check_replicas_in_sync(Communicator& comm, const torch::nn::Module& module) {
  auto tensors = replica_tensors(module);
  std::vector<int64_t> hashes;
  hashes.reserve(tensors.size());
  for (const auto& [name, t] : tensors) hashes.push_back(static_cast<int64_t>(tensor_bytes_hash(t) ^ layout_fingerprint(t)));
  RankComparison cmp = compare_across_ranks(comm, hashes);
  DL_REQUIRE(!cmp.length_differs, "check_replicas_in_sync: the ranks' models have different numbers of parameters "
                                  "and buffers (this rank has " << tensors.size() << ")");
  SyncReport report;
  report.tensors = static_cast<int64_t>(tensors.size());
  for (size_t i : cmp.differing) report.differing.push_back(tensors[i].first);
  return report;
}

bool maybe_check_sync(Communicator& comm, const torch::nn::Module& module, int64_t step, int64_t every) {
  DL_CHECK(every >= 0, "maybe_check_sync: every must be >= 0 (the flag is validated by its tool), got " << every);
  if (every == 0 || step % every != 0) return false;
  SyncReport report = check_replicas_in_sync(comm, module);
  if (!report.in_sync()) {
    std::ostringstream os;
    os << "replicas diverged at step " << step << ": " << report.differing.size() << " of " << report.tensors
       << " parameters/buffers differ between ranks (";
    for (size_t i = 0; i < report.differing.size() && i < 5; ++i) os << (i ? ", " : "") << report.differing[i];
    if (report.differing.size() > 5) os << ", ...";
    os << "); a rank skipped a gradient sync or an update, or ran a non-deterministic op on its own";
    throw std::runtime_error(os.str());
  }
  return true;
}

}  // namespace driftlab::comm
