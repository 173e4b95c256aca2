// The drifting field (see field.h): one tile-structured kernel behind the dense, tiled and
// distributed forms.
//
// Every path runs the same three passes over row tiles of the [G, N, P+Q] distance matrix:
//   1. distances -> weighted sum (scale s), per-column and per-row minimum distance, extremes;
//   2. per tau: row log-sum-exp (rows are whole inside a tile) and per-column sum of
//      exp(logit - column max), the column max being known exactly from pass 1;
//   3. per tau: A = exp(logit - (r_i + c_j) / 2) = sqrt(a_row * a_col) with ONE exponential,
//      then A @ y for all temperatures in one matrix product.
// Dense keeps the distances of pass 1; tiled recomputes them (memory O((N+P+Q)D + tile)).
// Between passes, the only cross-row state is per column or scalar: exactly what the Reducer
// combines across ranks, so the distributed form is these passes plus four collectives.
#include "drift/field.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <sstream>
#include <utility>

#include <torch/torch.h>

#include "common/check.h"
#include "common/text.h"
#include "drift/cpu_loops.h"

namespace driftlab::drift {
namespace {

using torch::Tensor;
constexpr double kInf = std::numeric_limits<double>::infinity();
// Fused CPU loops: distances are summed directly (exact, and cheaper than a matrix product for
// small problems, whose per-call overhead dominates) up to this feature dimension, for problems
// of at most kDirectMaxEntries row x column pairs (any size when D <= 8); otherwise the centred
// matrix-product form.
constexpr int64_t kDirectMaxDim = 64;
constexpr int64_t kDirectMaxEntries = int64_t(1) << 16;

struct Tile {
  int64_t g0, gb, i0, tn;  // problems [g0, g0+gb), rows [i0, i0+tn)
};

// Whole rows only; several problems per tile when a problem is smaller than a tile.
std::vector<Tile> make_tiles(int64_t G, int64_t N, int64_t rows_per_tile) {
  std::vector<Tile> tiles;
  rows_per_tile = std::max<int64_t>(rows_per_tile, 1);
  if (rows_per_tile >= N) {
    const int64_t gb = std::max<int64_t>(1, std::min(G, rows_per_tile / N));
    for (int64_t g0 = 0; g0 < G; g0 += gb) tiles.push_back({g0, std::min(gb, G - g0), 0, N});
  } else {
    for (int64_t g = 0; g < G; ++g)
      for (int64_t i0 = 0; i0 < N; i0 += rows_per_tile)
        tiles.push_back({g, 1, i0, std::min(rows_per_tile, N - i0)});
  }
  return tiles;
}

Tensor as3d(const Tensor& t) { return t.dim() == 2 ? t.unsqueeze(0) : t; }

// Column weights as [G, len] in dtype/device of x; undefined stays undefined (all ones).
Tensor check_weights(const Tensor& w, const char* name, int64_t G, int64_t len, const Tensor& x) {
  if (!w.defined()) return w;
  DL_REQUIRE(w.dim() == 1 || w.dim() == 2,
             "drift: " << name << " must be [" << len << "] or [" << G << ", " << len << "], got " << shape_string(w.sizes()));
  DL_REQUIRE(w.size(-1) == len && (w.dim() == 1 || w.size(0) == G),
             "drift: " << name << " must be [" << len << "] or [" << G << ", " << len << "], got " << shape_string(w.sizes()));
  DL_REQUIRE(w.device() == x.device(), "drift: " << name << " is on " << w.device() << " but x is on " << x.device());
  Tensor out = w.detach().to(x.scalar_type());
  if (out.dim() == 1) out = out.unsqueeze(0).expand({G, len});
  DL_REQUIRE((out >= 0).all().item<bool>(), "drift: " << name << " must be non-negative");
  return out.contiguous();
}

// ||y - c||^2 per row without materialising y - c for all rows at once (keeps the tiled path's
// memory bound): chunks of about `chunk` elements.
Tensor centered_sq_norms(const Tensor& y, const Tensor& center, int64_t chunk, Workspace& ws) {
  const int64_t G = y.size(0), R = y.size(1), D = y.size(2);
  Tensor out = torch::empty({G, R}, y.options());
  const int64_t rows = std::max<int64_t>(1, chunk / std::max<int64_t>(D, 1));
  for (const Tile& t : make_tiles(G, R, rows)) {
    Tensor yc = ws.get("ycenter", t.gb * t.tn * D, y.options()).view({t.gb, t.tn, D});
    torch::sub_out(yc, y.narrow(0, t.g0, t.gb).narrow(1, t.i0, t.tn), center.narrow(0, t.g0, t.gb));
    out.narrow(0, t.g0, t.gb).narrow(1, t.i0, t.tn).copy_(yc.mul_(yc).sum(-1));
  }
  return out;
}

// ---- the prepared problem, shared by the kernel and its strategies -----------------------------

// Everything a pass needs: the validated inputs as [G, rows, D], sizes, options, tiles, and the
// state the kernel sets between passes (column and row minima, temperatures' k, half log-sums).
struct Prepared {
  Prepared(const FieldOptions& o, Workspace& w) : opt(o), ws(w) {}
  const FieldOptions& opt;
  Workspace& ws;
  Tensor x, yp, yn, w;  // w: [G, C] column weights, or undefined (all ones)
  int64_t G = 0, N = 0, D = 0, P = 0, Q = 0, C = 0, T = 0, off = 0;
  Path path = Path::kDense;
  int64_t rows_per_tile = 1;
  std::vector<Tile> tiles;
  Tensor dist;  // the dense path's distance matrix [G, N, C], kept from pass 1
  // Set by the kernel: after pass 1 (minima, k), after pass 2 (half log-sums, [T, G, N|C]).
  Tensor colmin, rowmin, half_row, half_col;
  std::vector<double> k;

  // The entries (i, P + self_offset + i) of a tile: a [gb, tn] strided view.
  Tensor self_diagonal(const Tile& t, const Tensor& m) const { return m.narrow(-1, P + off + t.i0, t.tn).diagonal(0, -2, -1); }
  // Calls f(T{}) with T the scalar type of x (float or double).
  template <typename F>
  void dispatch(F&& f) const {
    if (x.scalar_type() == torch::kFloat) f(float{});
    else f(double{});
  }
};

// Pass totals the kernel combines across ranks (double scalars, [T] per temperature).
struct StatsTotals {
  Tensor wd_sum, nn_sum, dmax;  // sum of weighted distances, of row minima; largest distance
};
struct FieldTotals {
  Tensor sq, nrm, ent;  // per temperature: sum ||V_i||^2, sum ||V_i||, sum of row entropies
};

// ---- strategies: how each pass is computed --------------------------------------------------------

// One way of computing the three passes (field.cpp's header): the distance tile, and each pass
// over all tiles. The kernel owns validation, the cross-rank reductions between passes and the
// final normalisation; a strategy writes each pass once. Implementations: TensorOps (LibTorch
// tensor operations: any device), FusedProducts (CPU: fused loops per entry, matrix products for
// distances and weighted sums), FusedDirect (CPU, small problems: everything in fused loops,
// whole tiles per thread).
class Strategy {
 public:
  explicit Strategy(Prepared& p) : p_(p) {}
  virtual ~Strategy() = default;
  // Pass 1: distances (kept by the dense path), their weighted sum, extremes, and the column and
  // row minima into p.colmin (pre-filled with +inf) and p.rowmin.
  virtual StatsTotals stats() = 0;
  // Pass 2: per temperature, row log-sum-exp into rowlse [T, G, N] and column sums of
  // exp(logit - column max) into csum [T, G, C] (zeros on entry).
  virtual void sums(Tensor& rowlse, Tensor& csum) = 0;
  // Pass 3: per temperature the raw field V_tau into vraw[tau] ([G, N, D] each).
  virtual FieldTotals fields(std::vector<Tensor>& vraw) = 0;

 protected:
  // The distance tile [gb, tn, C] into out, self pairs +inf.
  virtual void compute_distances(const Tile& t, Tensor out) = 0;
  // The distance tile for pass 1 (computed, and kept by the dense path) or later passes.
  Tensor distances(const Tile& t, bool first_pass) {
    if (p_.path == Path::kDense) {
      Tensor v = p_.dist.narrow(0, t.g0, t.gb).narrow(1, t.i0, t.tn);
      if (first_pass) compute_distances(t, v);
      return v;
    }
    Tensor v = p_.ws.get("dtile", t.gb * t.tn * p_.C, p_.x.options()).view({t.gb, t.tn, p_.C});
    compute_distances(t, v);
    return v;
  }
  // The matrix products of pass 3 for one tile, all temperatures at once: A [gb, T, tn, C] (the
  // affinities, times the column weights) -> the rows of vraw[tau], adding to sq and nrm.
  void products_to_fields(const Tile& t, const Tensor& A, std::vector<Tensor>& vraw, Tensor& sq, Tensor& nrm) {
    const int64_t T = p_.T, C = p_.C, P = p_.P, Q = p_.Q, D = p_.D;
    // [gb, T*tn, P] x [gb, P, D] (and the same for Q).
    Tensor A3 = A.view({t.gb, T * t.tn, C});
    Tensor Ap = A3.narrow(2, 0, P), An = A3.narrow(2, P, Q);
    const int64_t out_numel = t.gb * T * t.tn * D;
    Tensor pos = p_.ws.get("pos", out_numel, p_.x.options()).view({t.gb, T * t.tn, D});
    Tensor neg = p_.ws.get("neg", out_numel, p_.x.options()).view({t.gb, T * t.tn, D});
    torch::bmm_out(pos, Ap, p_.yp.narrow(0, t.g0, t.gb));
    torch::bmm_out(neg, An, p_.yn.narrow(0, t.g0, t.gb));
    Tensor spos = Ap.sum(-1, true), sneg = An.sum(-1, true);
    // V_tau = S_neg * sum A_pos y_pos - S_pos * sum A_neg y_neg (the -x terms cancel).
    Tensor v = pos.mul_(sneg).sub_(neg.mul_(spos)).view({t.gb, T, t.tn, D});
    Tensor vsq = torch::mul_out(neg, pos, pos).view({t.gb, T, t.tn, D}).sum(-1);  // [gb, T, tn]
    sq += vsq.sum(at::IntArrayRef{0, 2}).to(torch::kDouble);
    nrm += vsq.sqrt().sum(at::IntArrayRef{0, 2}).to(torch::kDouble);
    for (int64_t ti = 0; ti < T; ++ti) vraw[ti].narrow(0, t.g0, t.gb).narrow(1, t.i0, t.tn).copy_(v.select(1, ti));
  }
  FieldTotals zero_field_totals() const {
    const auto dopt = p_.x.options().dtype(torch::kDouble);
    return {torch::zeros({p_.T}, dopt), torch::zeros({p_.T}, dopt), torch::zeros({p_.T}, dopt)};
  }
  Prepared& p_;
};

// Distances as ||x - c||^2 + ||y - c||^2 - 2 (x - c).(y - c) by matrix products, centred on the
// mean of the targets (identical on every rank: the targets are gathered), which keeps the sum
// from cancelling when the data sit far from the origin.
struct CentredTargets {
  explicit CentredTargets(const Prepared& p) {
    center = ((p.yp.sum(1, true) + p.yn.sum(1, true)) / static_cast<double>(p.C)).contiguous();
    const int64_t chunk = std::max<int64_t>(p.rows_per_tile * p.C, 1 << 16);
    ynorm = torch::cat({centered_sq_norms(p.yp, center, chunk, p.ws), centered_sq_norms(p.yn, center, chunk, p.ws)}, 1);
  }
  // x - c of the tile's rows into scratch, and the row term ||x - c||^2 + 2 (x - c).c.
  std::pair<Tensor, Tensor> rows(const Prepared& p, const Tile& t) const {
    Tensor xc = p.ws.get("xc", t.gb * t.tn * p.D, p.x.options()).view({t.gb, t.tn, p.D});
    torch::sub_out(xc, p.x.narrow(0, t.g0, t.gb).narrow(1, t.i0, t.tn), center.narrow(0, t.g0, t.gb));
    Tensor rowterm = xc.pow(2).sum(-1) + 2 * (xc * center.narrow(0, t.g0, t.gb)).sum(-1);
    return {xc, rowterm};
  }
  Tensor center, ynorm;  // [G, 1, D], [G, C]
};

// LibTorch tensor operations only: the path of every device but the CPU's fused loops.
class TensorOps final : public Strategy {
 public:
  explicit TensorOps(Prepared& p) : Strategy(p), centred_(p) {}

  StatsTotals stats() override {
    const auto dopt = p_.x.options().dtype(torch::kDouble);
    Tensor wd_sum = torch::zeros({}, dopt), nn_sum = torch::zeros({}, dopt);
    Tensor dmax = torch::zeros({}, p_.x.options());
    for (const Tile& t : p_.tiles) {
      Tensor d = distances(t, true);
      if (p_.opt.mask_self) p_.self_diagonal(t, d).fill_(0);
      Tensor colsum = d.sum(1);
      wd_sum += (p_.w.defined() ? (colsum * p_.w.narrow(0, t.g0, t.gb)).sum() : colsum.sum()).to(torch::kDouble);
      dmax = torch::maximum(dmax, d.amax());
      if (p_.opt.mask_self) p_.self_diagonal(t, d).fill_(kInf);
      Tensor cm = p_.colmin.narrow(0, t.g0, t.gb);
      cm.copy_(torch::minimum(cm, d.amin(1)));
      Tensor rm = d.amin(2);
      p_.rowmin.narrow(0, t.g0, t.gb).narrow(1, t.i0, t.tn).copy_(rm);
      nn_sum += rm.sum().to(torch::kDouble);
    }
    return {wd_sum, nn_sum, dmax};
  }

  void sums(Tensor& rowlse, Tensor& csum) override {
    for (const Tile& t : p_.tiles) {
      Tensor d = distances(t, false);
      // Slot 0 of pass 3's buffer: one buffer for both passes.
      Tensor work =
          p_.ws.get("work", t.gb * p_.T * t.tn * p_.C, p_.x.options()).narrow(0, 0, t.gb * t.tn * p_.C).view({t.gb, t.tn, p_.C});
      Tensor rm = p_.rowmin.narrow(0, t.g0, t.gb).narrow(1, t.i0, t.tn);
      Tensor cm = p_.colmin.narrow(0, t.g0, t.gb).unsqueeze(1);
      for (int64_t ti = 0; ti < p_.T; ++ti) {
        const double k = p_.k[ti];
        // Row: logits minus the row max (-k * rowmin), so the largest term is exp(0).
        torch::add_out(work, (rm * k).unsqueeze(-1), d, -k).exp_();
        rowlse[ti].narrow(0, t.g0, t.gb).narrow(1, t.i0, t.tn).copy_(work.sum(-1).log_().sub_(rm, k));
        torch::add_out(work, cm * k, d, -k).exp_();
        csum[ti].narrow(0, t.g0, t.gb).add_(work.sum(1));
      }
    }
  }

  FieldTotals fields(std::vector<Tensor>& vraw) override {
    FieldTotals out = zero_field_totals();
    const double floor_a = std::sqrt(p_.opt.floor_value);
    for (const Tile& t : p_.tiles) {
      Tensor d = distances(t, false);
      Tensor A = p_.ws.get("work", t.gb * p_.T * t.tn * p_.C, p_.x.options()).view({t.gb, p_.T, t.tn, p_.C});
      for (int64_t ti = 0; ti < p_.T; ++ti) {
        Tensor a = A.select(1, ti);
        Tensor hr = p_.half_row[ti].narrow(0, t.g0, t.gb).narrow(1, t.i0, t.tn).unsqueeze(-1);
        Tensor hc = p_.half_col[ti].narrow(0, t.g0, t.gb).unsqueeze(1);
        // logit - r/2 - c/2 = (logit - r)/2 + (logit - c)/2 <= 0: no overflow, and exactly
        // log sqrt(a_row * a_col).
        torch::add_out(a, hr, hc).add_(d, -p_.k[ti]).exp_();
        if (p_.opt.floor) a.clamp_min_(floor_a);
        if (p_.opt.mask_self) p_.self_diagonal(t, a).fill_(0);
        if (p_.opt.compute_entropy) {
          Tensor s = a.sum(-1);
          Tensor h = s.log() - torch::xlogy(a, a).sum(-1) / s;
          out.ent[ti] += h.sum().to(torch::kDouble);
        }
        if (p_.w.defined()) a.mul_(p_.w.narrow(0, t.g0, t.gb).unsqueeze(1));
      }
      products_to_fields(t, A, vraw, out.sq, out.nrm);
    }
    return out;
  }

 private:
  void compute_distances(const Tile& t, Tensor out) override {
    auto [xc, rowterm] = centred_.rows(p_, t);
    Tensor yn2 = centred_.ynorm.narrow(0, t.g0, t.gb).unsqueeze(1);
    Tensor op = out.narrow(2, 0, p_.P), on = out.narrow(2, p_.P, p_.Q);
    op.copy_(yn2.narrow(2, 0, p_.P).expand({t.gb, t.tn, p_.P}));
    on.copy_(yn2.narrow(2, p_.P, p_.Q).expand({t.gb, t.tn, p_.Q}));
    op.baddbmm_(xc, p_.yp.narrow(0, t.g0, t.gb).transpose(1, 2), 1, -2);
    on.baddbmm_(xc, p_.yn.narrow(0, t.g0, t.gb).transpose(1, 2), 1, -2);
    out.add_(rowterm.unsqueeze(-1)).clamp_min_(0).sqrt_();
    if (p_.opt.mask_self) p_.self_diagonal(t, out).fill_(kInf);
  }
  CentredTargets centred_;
};

// The CPU's fused loops (cpu_loops.h) for the per-entry work of every pass: one sweep over a
// tile's entries per pass. Scalar sums are kept per tile and added in tile order, so the result
// is the same for any thread count. Subclasses choose the distances and pass 3's products.
class FusedLoops : public Strategy {
 public:
  using Strategy::Strategy;

  StatsTotals stats() override {
    const size_t n = p_.tiles.size();
    std::vector<double> wd(n, 0.0), mx(n, 0.0), nn(n, 0.0);  // per tile, added in tile order below
    for_each_tile([&](size_t i, const Tile& t, int) {
      Tensor d = distances(t, true);
      p_.dispatch([&](auto zero) {
        using T = decltype(zero);
        cpu::distance_stats<T>(d.data_ptr<T>(), shape(t, d), p_.w.defined() ? p_.w.data_ptr<T>() + t.g0 * p_.C : nullptr,
                               &wd[i], &mx[i], p_.colmin.data_ptr<T>() + t.g0 * p_.C,
                               p_.rowmin.data_ptr<T>() + t.g0 * p_.N + t.i0, &nn[i]);
      });
    });
    double f_wd = 0, f_max = 0, f_nn = 0;
    for (size_t i = 0; i < n; ++i) f_wd += wd[i], f_max = std::max(f_max, mx[i]), f_nn += nn[i];
    const auto dopt = p_.x.options().dtype(torch::kDouble);
    // 0 + f: the same double rounding as the tensor path's accumulators starting from zero.
    return {torch::zeros({}, dopt) + f_wd, torch::zeros({}, dopt) + f_nn, torch::full({}, f_max, p_.x.options())};
  }

  void sums(Tensor& rowlse, Tensor& csum) override {
    for_each_tile([&](size_t, const Tile& t, int) {
      Tensor d = distances(t, false);
      p_.dispatch([&](auto zero) {
        using T = decltype(zero);
        const auto s = shape(t, d);
        T* lse = rowlse.data_ptr<T>();
        T* cs = csum.data_ptr<T>();
        for (int64_t ti = 0; ti < p_.T; ++ti)
          cpu::row_col_sums<T>(d.data_ptr<T>(), s, static_cast<T>(p_.k[ti]), p_.rowmin.data_ptr<T>() + t.g0 * p_.N + t.i0,
                               p_.colmin.data_ptr<T>() + t.g0 * p_.C, lse + ti * p_.G * p_.N + t.g0 * p_.N + t.i0,
                               cs + ti * p_.G * p_.C + t.g0 * p_.C);
      });
    });
  }

 protected:
  // f(index, tile, slot) for every tile: in order on this thread, or (tile_parallel_) whole tiles
  // per thread, slot being the thread's index in [0, at::get_num_threads()).
  template <typename F>
  void for_each_tile(F&& f) {
    if (!tile_parallel_) {
      for (size_t i = 0; i < p_.tiles.size(); ++i) f(i, p_.tiles[i], 0);
      return;
    }
    at::parallel_for(0, static_cast<int64_t>(p_.tiles.size()), 1, [&](int64_t b, int64_t e) {
      const int slot = at::get_thread_num();
      for (int64_t i = b; i < e; ++i) f(static_cast<size_t>(i), p_.tiles[static_cast<size_t>(i)], slot);
    });
  }

  // The fused loops' view of a distance tile d ([gb, tn, C], rows contiguous).
  cpu::TileShape shape(const Tile& t, const Tensor& d) const {
    cpu::TileShape s;
    s.gb = t.gb, s.tn = t.tn, s.C = p_.C, s.P = p_.P;
    s.d_gstride = d.stride(0);
    s.r_gstride = p_.N;
    s.mask = p_.opt.mask_self;
    s.self_col0 = p_.P + p_.off + t.i0;
    return s;
  }

  // Pass 3's affinities of one tile for temperature ti into its slot of A ([gb, T, tn, C]), times
  // the column weights, adding the rows' entropies to *h.
  template <typename T>
  void affinities(const Tile& t, const Tensor& d, const Tensor& A, int64_t ti, double* h) const {
    const double floor_a = p_.opt.floor ? std::sqrt(p_.opt.floor_value) : 0.0;
    T* a = A.data_ptr<T>() + ti * t.tn * p_.C;
    cpu::affinities<T>(d.data_ptr<T>(), shape(t, d), static_cast<T>(p_.k[ti]),
                       p_.half_row[ti].data_ptr<T>() + t.g0 * p_.N + t.i0, p_.half_col[ti].data_ptr<T>() + t.g0 * p_.C,
                       static_cast<T>(floor_a), p_.w.defined() ? p_.w.data_ptr<T>() + t.g0 * p_.C : nullptr, a,
                       p_.T * t.tn * p_.C, p_.opt.compute_entropy ? h : nullptr);
  }

  bool tile_parallel_ = false;  // whole tiles per thread (FusedDirect)
};

// Fused loops per entry, matrix products for the distances (centred) and pass 3's weighted sums:
// problems too large for the direct sums.
class FusedProducts final : public FusedLoops {
 public:
  explicit FusedProducts(Prepared& p) : FusedLoops(p), centred_(p) {}

  FieldTotals fields(std::vector<Tensor>& vraw) override {
    FieldTotals out = zero_field_totals();
    for (const Tile& t : p_.tiles) {
      Tensor d = distances(t, false);
      Tensor A = p_.ws.get("work", t.gb * p_.T * t.tn * p_.C, p_.x.options()).view({t.gb, p_.T, t.tn, p_.C});
      std::vector<double> h(static_cast<size_t>(p_.T), 0.0);
      p_.dispatch([&](auto zero) {
        for (int64_t ti = 0; ti < p_.T; ++ti) affinities<decltype(zero)>(t, d, A, ti, &h[static_cast<size_t>(ti)]);
      });
      if (p_.opt.compute_entropy) out.ent += torch::tensor(h, out.ent.options());
      products_to_fields(t, A, vraw, out.sq, out.nrm);
    }
    return out;
  }

 private:
  void compute_distances(const Tile& t, Tensor out) override {
    auto [xc, rowterm] = centred_.rows(p_, t);
    Tensor op = out.narrow(2, 0, p_.P), on = out.narrow(2, p_.P, p_.Q);
    // beta = 0 does not make every CPU kernel ignore the old contents (reused scratch): zero them.
    out.zero_();
    op.baddbmm_(xc, p_.yp.narrow(0, t.g0, t.gb).transpose(1, 2), 1, -2);
    on.baddbmm_(xc, p_.yn.narrow(0, t.g0, t.gb).transpose(1, 2), 1, -2);
    Tensor rt = rowterm.contiguous();
    p_.dispatch([&](auto zero) {
      using T = decltype(zero);
      cpu::finish_distances<T>(out.data_ptr<T>(), shape(t, out), centred_.ynorm.data_ptr<T>() + t.g0 * p_.C,
                               rt.data_ptr<T>());
    });
  }
  CentredTargets centred_;
};

// Small problems (the multi-scale keys: thousands of problems of a few dozen rows): distances and
// weighted sums in the fused loops too, reading each problem's targets as one block, row-major for
// the weighted sums and transposed for the distances (column j contiguous for each feature k).
class FusedDirect final : public FusedLoops {
 public:
  // Whether a problem of this shape is small enough (cheaper than matrix products, whose
  // per-call overhead dominates): D up to 64, at most 2^16 row x column pairs (any size when D <= 8).
  static bool suits(int64_t N, int64_t C, int64_t D) {
    return D <= kDirectMaxDim && (D <= 8 || N * C <= kDirectMaxEntries);
  }

  explicit FusedDirect(Prepared& p) : FusedLoops(p) {
    ycat_ = p.ws.get("ycat", p.G * p.C * p.D, p.x.options()).view({p.G, p.C, p.D});
    ycat_.narrow(1, 0, p.P).copy_(p.yp);
    ycat_.narrow(1, p.P, p.Q).copy_(p.yn);
    yT_ = p.ws.get("yT", p.G * p.C * p.D, p.x.options()).view({p.G, p.D, p.C});
    yT_.copy_(ycat_.transpose(1, 2));
    // Many small whole problems per tile: the threads take whole tiles (one parallel region per
    // pass, every loop of a tile inline on its thread) instead of splitting each tile's rows in
    // every loop (thousands of short regions, which did not scale past one thread). Tiles hold
    // disjoint problems, so their per-column and per-row outputs are disjoint.
    tile_parallel_ = p.path == Path::kDense && p.tiles.size() > 1 && at::get_num_threads() > 1 &&
                     std::all_of(p.tiles.begin(), p.tiles.end(), [&](const Tile& t) { return t.tn == p.N; });
  }

  FieldTotals fields(std::vector<Tensor>& vraw) override {
    // Per tile sums, added in tile order; one affinity buffer per thread.
    const size_t n = p_.tiles.size(), T = static_cast<size_t>(p_.T);
    std::vector<double> tsq(n * T, 0.0), tnrm(n * T, 0.0), h(n * T, 0.0);
    int64_t per_slot = 0;
    for (const Tile& t : p_.tiles) per_slot = std::max(per_slot, t.gb * p_.T * t.tn * p_.C);
    const int slots = tile_parallel_ ? at::get_num_threads() : 1;
    Tensor work = p_.ws.get("work", slots * per_slot, p_.x.options());
    for_each_tile([&](size_t i, const Tile& t, int slot) {
      Tensor d = distances(t, false);
      Tensor A = work.narrow(0, slot * per_slot, t.gb * p_.T * t.tn * p_.C).view({t.gb, p_.T, t.tn, p_.C});
      p_.dispatch([&](auto zero) {
        using Sc = decltype(zero);
        const auto s = shape(t, d);
        for (int64_t ti = 0; ti < p_.T; ++ti) {
          const size_t k = i * T + static_cast<size_t>(ti);
          affinities<Sc>(t, d, A, ti, &h[k]);
          cpu::weighted_sums<Sc>(A.data_ptr<Sc>() + ti * t.tn * p_.C, s, p_.T * t.tn * p_.C,
                                 ycat_.data_ptr<Sc>() + t.g0 * p_.C * p_.D, p_.D,
                                 vraw[ti].data_ptr<Sc>() + (t.g0 * p_.N + t.i0) * p_.D, p_.N * p_.D, &tsq[k], &tnrm[k]);
        }
      });
    });
    std::vector<double> s_sq(T, 0.0), s_nrm(T, 0.0), s_h(T, 0.0);
    for (size_t i = 0; i < n; ++i)
      for (size_t ti = 0; ti < T; ++ti) s_sq[ti] += tsq[i * T + ti], s_nrm[ti] += tnrm[i * T + ti], s_h[ti] += h[i * T + ti];
    const auto dopt = p_.x.options().dtype(torch::kDouble);
    return {torch::tensor(s_sq, dopt), torch::tensor(s_nrm, dopt), torch::tensor(s_h, dopt)};
  }

 private:
  void compute_distances(const Tile& t, Tensor out) override {
    p_.dispatch([&](auto zero) {
      using T = decltype(zero);
      cpu::direct_distances<T>(out.data_ptr<T>(), shape(t, out), p_.x.data_ptr<T>() + (t.g0 * p_.N + t.i0) * p_.D,
                               p_.N * p_.D, yT_.data_ptr<T>() + t.g0 * p_.D * p_.C, p_.D);
    });
  }
  Tensor ycat_, yT_;  // targets [G, C, D] and transposed [G, D, C]
};

// ---- the kernel -----------------------------------------------------------------------------------

// Validates the problem, picks the path (dense or tiled) and the strategy, runs the three passes
// with the cross-rank reductions between them, and normalises the field.
class FieldKernel {
 public:
  FieldKernel(const Problem& p, const FieldOptions& o, Reducer* reducer)
      : opt_(o), red_(reducer), p_(opt_, o.workspace ? *o.workspace : own_ws_) {
    validate_and_prepare(p);
  }

  FieldResult run() {
    FieldResult res;
    res.path = p_.path;
    pass_distances(res);
    pass_column_sums();
    pass_fields(res);
    return res;
  }

 private:
  void validate_and_prepare(const Problem& p) {
    DL_REQUIRE(p.x.defined() && p.y_pos.defined() && p.y_neg.defined(),
               "drift: x, y_pos and y_neg must all be given");
    DL_REQUIRE(p.x.dim() == 2 || p.x.dim() == 3, "drift: x must be [N, D] or [G, N, D], got " << shape_string(p.x.sizes()));
    DL_REQUIRE(p.y_pos.dim() == p.x.dim() && p.y_neg.dim() == p.x.dim(),
               "drift: x " << shape_string(p.x.sizes()) << ", y_pos " << shape_string(p.y_pos.sizes()) << " and y_neg "
                           << shape_string(p.y_neg.sizes()) << " must have the same number of dimensions");
    DL_REQUIRE(p.x.is_floating_point() && (p.x.scalar_type() == torch::kFloat || p.x.scalar_type() == torch::kDouble),
               "drift: x must be float32 or float64, got " << p.x.scalar_type());
    DL_REQUIRE(p.y_pos.scalar_type() == p.x.scalar_type() && p.y_neg.scalar_type() == p.x.scalar_type(),
               "drift: x, y_pos and y_neg must share one dtype (x is " << p.x.scalar_type() << ", y_pos "
                                                                   << p.y_pos.scalar_type() << ", y_neg "
                                                                   << p.y_neg.scalar_type() << ")");
    DL_REQUIRE(p.y_pos.device() == p.x.device() && p.y_neg.device() == p.x.device(),
               "drift: x, y_pos and y_neg must be on one device (x on " << p.x.device() << ")");
    Prepared& q = p_;
    q.x = as3d(p.x.detach()).contiguous();
    q.yp = as3d(p.y_pos.detach()).contiguous();
    q.yn = as3d(p.y_neg.detach()).contiguous();
    q.G = q.x.size(0), q.N = q.x.size(1), q.D = q.x.size(2), q.P = q.yp.size(1), q.Q = q.yn.size(1), q.C = q.P + q.Q;
    q.T = static_cast<int64_t>(opt_.taus.size());
    DL_REQUIRE(q.yp.size(0) == q.G && q.yn.size(0) == q.G,
               "drift: x, y_pos and y_neg must hold the same number of problems G; got x "
                   << shape_string(q.x.sizes()) << ", y_pos " << shape_string(q.yp.sizes()) << ", y_neg "
                   << shape_string(q.yn.sizes()));
    DL_REQUIRE(q.yp.size(2) == q.D && q.yn.size(2) == q.D,
               "drift: feature dimension D must match: x " << shape_string(q.x.sizes()) << ", y_pos "
                                                            << shape_string(q.yp.sizes()) << ", y_neg "
                                                            << shape_string(q.yn.sizes()));
    DL_REQUIRE(q.G > 0 && q.N > 0 && q.D > 0, "drift: x must be non-empty, got " << shape_string(q.x.sizes()));
    DL_REQUIRE(q.P > 0, "drift: at least one positive is needed, got y_pos " << shape_string(q.yp.sizes()));
    DL_REQUIRE(q.Q > 0, "drift: at least one negative is needed, got y_neg " << shape_string(q.yn.sizes()));
    DL_REQUIRE(q.T > 0, "drift: at least one temperature is needed (taus is empty)");
    for (double t : opt_.taus)
      DL_REQUIRE(std::isfinite(t) && t > 0, "drift: temperatures must be finite and > 0, got " << t);
    DL_REQUIRE(!opt_.floor || (opt_.floor_value > 0 && opt_.floor_value < 1),
               "drift: floor_value must be in (0, 1), got " << opt_.floor_value);
    DL_REQUIRE(opt_.scale_eps > 0 && opt_.drift_eps > 0, "drift: scale_eps and drift_eps must be > 0");
    DL_REQUIRE(opt_.tile_bytes > 0 && opt_.dense_tile_elems > 0, "drift: tile sizes must be > 0");
    if (opt_.mask_self)
      DL_REQUIRE(p.self_offset >= 0 && p.self_offset + q.N <= q.Q,
                 "drift: the self-mask needs x's " << q.N << " rows at y_neg[:, " << p.self_offset << " : "
                                                   << p.self_offset + q.N << "], but y_neg has " << q.Q
                                                   << " rows (put the generated rows first in the negatives, "
                                                      "or set mask_self = false)");
    q.off = p.self_offset;
    Tensor wp = check_weights(p.w_pos, "w_pos", q.G, q.P, q.x);
    Tensor wn = check_weights(p.w_neg, "w_neg", q.G, q.Q, q.x);
    if (wp.defined() || wn.defined()) {
      Tensor a = wp.defined() ? wp : torch::ones({q.G, q.P}, q.x.options());
      Tensor b = wn.defined() ? wn : torch::ones({q.G, q.Q}, q.x.options());
      q.w = torch::cat({a, b}, 1);
    }
    if (opt_.check_finite) {
      // max and min propagate NaN and reach +-Inf: finite extremes mean finite tensors, with no
      // input-sized temporary (fresh memory is costly, see Workspace).
      auto finite = [](const Tensor& t) { return torch::isfinite(torch::stack({t.amax(), t.amin()})).all(); };
      Tensor ok = torch::stack({finite(q.x), finite(q.yp), finite(q.yn), q.w.defined() ? finite(q.w) : finite(q.x)});
      const auto okc = ok.to(torch::kCPU);
      const char* names[] = {"x", "y_pos", "y_neg", "the column weights"};
      for (int k = 0; k < 4; ++k) DL_REQUIRE(okc[k].item<bool>(), "drift: " << names[k] << " contains NaN or Inf");
    }

    const int64_t elem = static_cast<int64_t>(q.x.element_size());
    const int64_t dense_bytes = q.G * q.N * q.C * elem;
    q.path = opt_.path;
    if (q.path == Path::kAuto) q.path = dense_bytes <= opt_.dense_budget_bytes ? Path::kDense : Path::kTiled;
    if (q.path == Path::kDense) {
      q.rows_per_tile = std::max<int64_t>(1, opt_.dense_tile_elems / q.C);
    } else {
      // Per tile row: the distances, T affinity rows, and the two [T, D] products.
      const int64_t per_row = elem * (q.C * (1 + q.T) + 2 * q.T * q.D + q.D);
      q.rows_per_tile = std::max<int64_t>(1, opt_.tile_bytes / per_row);
    }
    q.tiles = make_tiles(q.G, q.N, q.rows_per_tile);
    if (!(opt_.fused_cpu_loops && q.x.is_cpu())) strategy_ = std::make_unique<TensorOps>(q);
    else if (FusedDirect::suits(q.N, q.C, q.D)) strategy_ = std::make_unique<FusedDirect>(q);
    else strategy_ = std::make_unique<FusedProducts>(q);
  }

  void pass_distances(FieldResult& res) {
    Prepared& q = p_;
    if (q.path == Path::kDense) q.dist = q.ws.get("dist", q.G * q.N * q.C, q.x.options()).view({q.G, q.N, q.C});
    const auto dopt = q.x.options().dtype(torch::kDouble);
    q.colmin = torch::full({q.G, q.C}, kInf, q.x.options());
    q.rowmin = torch::empty({q.G, q.N}, q.x.options());
    const StatsTotals st = strategy_->stats();
    // Total weight of the unmasked pairs, in closed form.
    Tensor w_sum;
    if (q.w.defined()) {
      w_sum = q.w.sum().to(torch::kDouble) * static_cast<double>(q.N);
      if (opt_.mask_self) w_sum = w_sum - q.w.narrow(1, q.P + q.off, q.N).sum().to(torch::kDouble);
    } else {
      const double pairs = static_cast<double>(q.G) * q.N * q.C - (opt_.mask_self ? static_cast<double>(q.G) * q.N : 0.0);
      w_sum = torch::full({}, pairs, dopt);
    }
    Tensor sums = torch::stack({st.wd_sum, w_sum, st.nn_sum, torch::full({}, static_cast<double>(q.G * q.N), dopt)});
    Tensor maxes = torch::cat({q.colmin.neg().flatten(), st.dmax.reshape({1}), q.rowmin.amin().neg().reshape({1})});
    if (red_) {
      red_->all_reduce_sum(sums);
      red_->all_reduce_max(maxes);
    }
    q.colmin = maxes.narrow(0, 0, q.G * q.C).neg().view({q.G, q.C});
    // A column masked for every row (N = 1 and its self column) would give inf - inf below.
    q.colmin.masked_fill_(torch::isinf(q.colmin), 0);
    const auto s = sums.to(torch::kCPU);
    const double wsum = s[1].item<double>();
    DL_REQUIRE(wsum > 0, "drift: the column weights of the unmasked pairs sum to zero (all weights are 0?)");
    scale_ = s[0].item<double>() / wsum;
    rows_total_ = s[3].item<double>();
    const auto m = maxes.narrow(0, q.G * q.C, 2).to(torch::kCPU).to(torch::kDouble);
    res.scale = scale_;
    res.total_rows = static_cast<int64_t>(rows_total_);
    res.distances.mean = scale_;
    res.distances.max = m[0].item<double>();
    res.distances.min = -m[1].item<double>();
    res.distances.nn_mean = s[2].item<double>() / rows_total_;
    q.k.clear();
    for (double tau : opt_.taus) q.k.push_back(1.0 / (std::max(scale_, opt_.scale_eps) * tau));
  }

  void pass_column_sums() {
    Prepared& q = p_;
    Tensor csum = torch::zeros({q.T, q.G, q.C}, q.x.options());
    Tensor rowlse = torch::empty({q.T, q.G, q.N}, q.x.options());
    strategy_->sums(rowlse, csum);
    if (red_) red_->all_reduce_sum(csum);
    // c_j = colmax_j + log(csum_j); a fully masked column has csum 0 and no entry to weigh.
    Tensor kk = torch::tensor(q.k, torch::TensorOptions().dtype(torch::kDouble)).to(q.x.options()).view({q.T, 1, 1});
    Tensor collse = csum.log() - kk * q.colmin.unsqueeze(0);
    collse.masked_fill_(csum == 0, 0);
    q.half_row = rowlse.mul_(-0.5);
    q.half_col = collse.mul_(-0.5);
  }

  void pass_fields(FieldResult& res) {
    Prepared& q = p_;
    // V_tau before normalization; the first becomes the returned V, the others are scratch.
    std::vector<Tensor> vraw(q.T);
    vraw[0] = torch::empty({q.G, q.N, q.D}, q.x.options());
    Tensor extra = q.ws.get("vraw", (q.T - 1) * q.G * q.N * q.D, q.x.options());
    for (int64_t ti = 1; ti < q.T; ++ti)
      vraw[ti] = extra.narrow(0, (ti - 1) * q.G * q.N * q.D, q.G * q.N * q.D).view({q.G, q.N, q.D});
    const FieldTotals ft = strategy_->fields(vraw);
    Tensor sums = torch::cat({ft.sq, ft.nrm, ft.ent});
    if (red_) red_->all_reduce_sum(sums);
    const auto s = sums.to(torch::kCPU);
    const double sc = std::max(scale_, opt_.scale_eps);
    const double D = static_cast<double>(q.D);
    // Raw y was used in the products: normalized features are y * sqrt(D) / s.
    const double to_norm = std::sqrt(D) / sc;
    Tensor V = vraw[0];
    for (int64_t ti = 0; ti < q.T; ++ti) {
      const double raw_sq = s[ti].item<double>() * to_norm * to_norm / rows_total_;
      const double lambda = std::sqrt(raw_sq / D);
      res.raw_drift_sq.push_back(raw_sq);
      res.lambda.push_back(lambda);
      res.raw_drift_norm.push_back(s[q.T + ti].item<double>() * to_norm / rows_total_);
      if (opt_.compute_entropy) res.entropy.push_back(s[2 * q.T + ti].item<double>() / rows_total_);
      const double coef = to_norm / std::max(lambda, opt_.drift_eps);
      if (ti == 0)
        V.mul_(coef);
      else
        V.add_(vraw[ti], coef);
      if (ti > 0) vraw[ti] = Tensor();
    }
    res.V = V;
  }

  FieldOptions opt_;
  Reducer* red_;
  Workspace own_ws_;
  Prepared p_;
  std::unique_ptr<Strategy> strategy_;
  double scale_ = 0, rows_total_ = 0;
};

}  // namespace

torch::Tensor Workspace::get(const std::string& name, int64_t numel, const torch::TensorOptions& options) {
  Tensor& b = buffers_[name];
  if (!b.defined() || b.numel() < numel || b.dtype() != options.dtype() || b.device() != options.device())
    b = Tensor(), b = torch::empty({std::max<int64_t>(numel, 1)}, options);
  return b.narrow(0, 0, numel);
}

int64_t Workspace::bytes() const {
  int64_t n = 0;
  for (const auto& [name, b] : buffers_) n += b.defined() ? static_cast<int64_t>(b.nbytes()) : 0;
  return n;
}

const char* path_name(Path p) {
  switch (p) {
    case Path::kAuto: return "auto";
    case Path::kDense: return "dense";
    case Path::kTiled: return "tiled";
  }
  return "?";
}

Path parse_path(const std::string& name) {
  if (name == "auto") return Path::kAuto;
  if (name == "dense") return Path::kDense;
  if (name == "tiled") return Path::kTiled;
  DL_REQUIRE(false, "drift: path must be one of auto, dense, tiled; got '" << name << "'");
  return Path::kAuto;
}

int64_t dense_matrix_bytes(const Problem& p) {
  DL_REQUIRE(p.x.defined() && p.y_pos.defined() && p.y_neg.defined(), "drift: x, y_pos and y_neg must all be given");
  const Tensor x = as3d(p.x), yp = as3d(p.y_pos), yn = as3d(p.y_neg);
  return x.size(0) * x.size(1) * (yp.size(1) + yn.size(1)) * static_cast<int64_t>(x.element_size());
}

FieldResult drift_field(const Problem& problem, const FieldOptions& options, Reducer* reducer) {
  torch::NoGradGuard no_grad;
  FieldKernel kernel(problem, options, reducer);
  FieldResult res = kernel.run();
  if (problem.x.dim() == 2) res.V = res.V.squeeze(0);
  return res;
}

LossResult drift_loss(const Problem& problem, const FieldOptions& options, Reducer* reducer) {
  LossResult out;
  out.field = drift_field(problem, options, reducer);
  const FieldResult& f = out.field;
  const double D = static_cast<double>(problem.x.size(-1));
  const double c = std::sqrt(D) / std::max(f.scale, options.scale_eps);
  const double denom = static_cast<double>(f.total_rows) * D;
  // The loss mean ||x~ - stopgrad(x~ + V)||^2 / D has the gradient -2 c V / denom with respect
  // to x (x~ = c x): a linear surrogate with that gradient, shifted to the loss's value, needs
  // no autograd graph of the regression (one product forward, one backward).
  Tensor grad_x, value;
  {
    torch::NoGradGuard no_grad;
    grad_x = f.V * (-2.0 * c / denom);
    value = (f.V.pow(2).sum().to(torch::kDouble) / denom).reshape({1});
  }
  Tensor linear = (problem.x * grad_x).sum();
  const Tensor local = value.to(linear.scalar_type()).reshape({});
  out.loss = linear + (local - linear.detach());
  if (reducer) reducer->all_reduce_sum(value);
  out.value = value.item<double>();
  return out;
}

std::vector<double> parse_taus(const std::string& text, const std::string& flag) {
  std::vector<double> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    char* end = nullptr;
    const double v = std::strtod(item.c_str(), &end);
    DL_REQUIRE(!item.empty() && end && *end == '\0' && v > 0 && std::isfinite(v),
               flag << "=" << text << ": expected positive numbers separated by commas, got '" << item << "'");
    out.push_back(v);
  }
  DL_REQUIRE(!out.empty(), flag << " is empty: give at least one temperature");
  return out;
}

}  // namespace driftlab::drift
