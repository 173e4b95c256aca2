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
#include <sstream>

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

class FieldKernel {
 public:
  FieldKernel(const Problem& p, const FieldOptions& o, Reducer* reducer)
      : opt_(o), red_(reducer), ws_(o.workspace ? *o.workspace : own_ws_) {
    validate_and_prepare(p);
  }

  FieldResult run() {
    FieldResult res;
    res.path = path_;
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
    x_ = as3d(p.x.detach()).contiguous();
    yp_ = as3d(p.y_pos.detach()).contiguous();
    yn_ = as3d(p.y_neg.detach()).contiguous();
    G_ = x_.size(0), N_ = x_.size(1), D_ = x_.size(2), P_ = yp_.size(1), Q_ = yn_.size(1), C_ = P_ + Q_;
    T_ = static_cast<int64_t>(opt_.taus.size());
    DL_REQUIRE(yp_.size(0) == G_ && yn_.size(0) == G_,
               "drift: x, y_pos and y_neg must hold the same number of problems G; got x "
                   << shape_string(x_.sizes()) << ", y_pos " << shape_string(yp_.sizes()) << ", y_neg " << shape_string(yn_.sizes()));
    DL_REQUIRE(yp_.size(2) == D_ && yn_.size(2) == D_,
               "drift: feature dimension D must match: x " << shape_string(x_.sizes()) << ", y_pos " << shape_string(yp_.sizes())
                                                            << ", y_neg " << shape_string(yn_.sizes()));
    DL_REQUIRE(G_ > 0 && N_ > 0 && D_ > 0, "drift: x must be non-empty, got " << shape_string(x_.sizes()));
    DL_REQUIRE(P_ > 0, "drift: at least one positive is needed, got y_pos " << shape_string(yp_.sizes()));
    DL_REQUIRE(Q_ > 0, "drift: at least one negative is needed, got y_neg " << shape_string(yn_.sizes()));
    DL_REQUIRE(T_ > 0, "drift: at least one temperature is needed (taus is empty)");
    for (double t : opt_.taus)
      DL_REQUIRE(std::isfinite(t) && t > 0, "drift: temperatures must be finite and > 0, got " << t);
    DL_REQUIRE(!opt_.floor || (opt_.floor_value > 0 && opt_.floor_value < 1),
               "drift: floor_value must be in (0, 1), got " << opt_.floor_value);
    DL_REQUIRE(opt_.scale_eps > 0 && opt_.drift_eps > 0, "drift: scale_eps and drift_eps must be > 0");
    DL_REQUIRE(opt_.tile_bytes > 0 && opt_.dense_tile_elems > 0, "drift: tile sizes must be > 0");
    if (opt_.mask_self)
      DL_REQUIRE(p.self_offset >= 0 && p.self_offset + N_ <= Q_,
                 "drift: the self-mask needs x's " << N_ << " rows at y_neg[:, " << p.self_offset << " : "
                                                   << p.self_offset + N_ << "], but y_neg has " << Q_
                                                   << " rows (put the generated rows first in the negatives, "
                                                      "or set mask_self = false)");
    off_ = p.self_offset;
    wp_ = check_weights(p.w_pos, "w_pos", G_, P_, x_);
    wn_ = check_weights(p.w_neg, "w_neg", G_, Q_, x_);
    if (wp_.defined() || wn_.defined()) {
      Tensor a = wp_.defined() ? wp_ : torch::ones({G_, P_}, x_.options());
      Tensor b = wn_.defined() ? wn_ : torch::ones({G_, Q_}, x_.options());
      w_ = torch::cat({a, b}, 1);
    }
    if (opt_.check_finite) {
      // max and min propagate NaN and reach +-Inf: finite extremes mean finite tensors, with no
      // input-sized temporary (fresh memory is costly, see Workspace).
      auto finite = [](const Tensor& t) { return torch::isfinite(torch::stack({t.amax(), t.amin()})).all(); };
      Tensor ok = torch::stack({finite(x_), finite(yp_), finite(yn_), w_.defined() ? finite(w_) : finite(x_)});
      const auto okc = ok.to(torch::kCPU);
      const char* names[] = {"x", "y_pos", "y_neg", "the column weights"};
      for (int k = 0; k < 4; ++k) DL_REQUIRE(okc[k].item<bool>(), "drift: " << names[k] << " contains NaN or Inf");
    }

    elem_ = static_cast<int64_t>(x_.element_size());
    const int64_t dense_bytes = G_ * N_ * C_ * elem_;
    path_ = opt_.path;
    if (path_ == Path::kAuto) path_ = dense_bytes <= opt_.dense_budget_bytes ? Path::kDense : Path::kTiled;
    if (path_ == Path::kDense) {
      rows_per_tile_ = std::max<int64_t>(1, opt_.dense_tile_elems / C_);
    } else {
      // Per tile row: the distances, T affinity rows, and the two [T, D] products.
      const int64_t per_row = elem_ * (C_ * (1 + T_) + 2 * T_ * D_ + D_);
      rows_per_tile_ = std::max<int64_t>(1, opt_.tile_bytes / per_row);
    }
    tiles_ = make_tiles(G_, N_, rows_per_tile_);
    fused_ = opt_.fused_cpu_loops && x_.is_cpu();

    if (fused_) {
      // Small problems (direct_) get distances and weighted sums in the fused loops too, reading
      // the targets of a problem as one block: row-major for the weighted sums, transposed for the
      // distances (column j contiguous for each feature k). Large ones keep the matrix products.
      direct_ = D_ <= kDirectMaxDim && (D_ <= 8 || N_ * C_ <= kDirectMaxEntries);
      if (direct_) {
        ycat_ = ws_.get("ycat", G_ * C_ * D_, x_.options()).view({G_, C_, D_});
        ycat_.narrow(1, 0, P_).copy_(yp_);
        ycat_.narrow(1, P_, Q_).copy_(yn_);
        yT_ = ws_.get("yT", G_ * C_ * D_, x_.options()).view({G_, D_, C_});
        yT_.copy_(ycat_.transpose(1, 2));
        // Many small whole problems per tile (the multi-scale keys): the threads take whole tiles
        // (one parallel region per pass, every loop of a tile inline on its thread) instead of
        // splitting each tile's rows in every loop (thousands of short regions, which did not
        // scale past one thread). Tiles hold disjoint problems, so their per-column and per-row
        // outputs are disjoint; their scalar sums are kept per tile and added in tile order (the
        // same result for any thread count).
        tile_parallel_ = path_ == Path::kDense && tiles_.size() > 1 && at::get_num_threads() > 1 &&
                         std::all_of(tiles_.begin(), tiles_.end(), [&](const Tile& t) { return t.tn == N_; });
        return;
      }
    }
    // Centering on the mean of the targets (identical on every rank: the targets are gathered)
    // keeps ||x||^2 + ||y||^2 - 2 x.y from cancelling when the data sit far from the origin.
    center_ = ((yp_.sum(1, true) + yn_.sum(1, true)) / static_cast<double>(C_)).contiguous();
    const int64_t chunk = std::max<int64_t>(rows_per_tile_ * C_, 1 << 16);
    ynorm_ = torch::cat({centered_sq_norms(yp_, center_, chunk, ws_), centered_sq_norms(yn_, center_, chunk, ws_)}, 1);
  }

  // The distance tile [gb, tn, C] into `out`; self pairs get +inf.
  void compute_distances(const Tile& t, Tensor out) {
    if (fused_ && direct_) {
      dispatch([&](auto zero) {
        using T = decltype(zero);
        cpu::direct_distances<T>(out.data_ptr<T>(), shape(t, out), x_.data_ptr<T>() + (t.g0 * N_ + t.i0) * D_, N_ * D_,
                                 yT_.data_ptr<T>() + t.g0 * D_ * C_, D_);
      });
      return;
    }
    Tensor xc = ws_.get("xc", t.gb * t.tn * D_, x_.options()).view({t.gb, t.tn, D_});
    torch::sub_out(xc, x_.narrow(0, t.g0, t.gb).narrow(1, t.i0, t.tn), center_.narrow(0, t.g0, t.gb));
    Tensor rowterm = xc.pow(2).sum(-1) + 2 * (xc * center_.narrow(0, t.g0, t.gb)).sum(-1);
    Tensor yn2 = ynorm_.narrow(0, t.g0, t.gb).unsqueeze(1);
    Tensor op = out.narrow(2, 0, P_), on = out.narrow(2, P_, Q_);
    if (fused_) {
      // beta = 0 does not make every CPU kernel ignore the old contents (reused scratch): zero them.
      out.zero_();
      op.baddbmm_(xc, yp_.narrow(0, t.g0, t.gb).transpose(1, 2), 1, -2);
      on.baddbmm_(xc, yn_.narrow(0, t.g0, t.gb).transpose(1, 2), 1, -2);
      Tensor rt = rowterm.contiguous();
      dispatch([&](auto zero) {
        using T = decltype(zero);
        cpu::finish_distances<T>(out.data_ptr<T>(), shape(t, out), ynorm_.data_ptr<T>() + t.g0 * C_, rt.data_ptr<T>());
      });
      return;
    }
    op.copy_(yn2.narrow(2, 0, P_).expand({t.gb, t.tn, P_}));
    on.copy_(yn2.narrow(2, P_, Q_).expand({t.gb, t.tn, Q_}));
    op.baddbmm_(xc, yp_.narrow(0, t.g0, t.gb).transpose(1, 2), 1, -2);
    on.baddbmm_(xc, yn_.narrow(0, t.g0, t.gb).transpose(1, 2), 1, -2);
    out.add_(rowterm.unsqueeze(-1)).clamp_min_(0).sqrt_();
    if (opt_.mask_self) self_diagonal(t, out).fill_(kInf);
  }

  // Calls f(T{}) with T the scalar type of x (float or double).
  template <typename F>
  void dispatch(F&& f) const {
    if (x_.scalar_type() == torch::kFloat) f(float{});
    else f(double{});
  }

  // f(index, tile, slot) for every tile: in order on this thread, or (tile_parallel_) whole tiles
  // per thread, slot being the thread's index in [0, at::get_num_threads()).
  template <typename F>
  void for_each_tile(F&& f) {
    if (!tile_parallel_) {
      for (size_t i = 0; i < tiles_.size(); ++i) f(i, tiles_[i], 0);
      return;
    }
    at::parallel_for(0, static_cast<int64_t>(tiles_.size()), 1, [&](int64_t b, int64_t e) {
      const int slot = at::get_thread_num();
      for (int64_t i = b; i < e; ++i) f(static_cast<size_t>(i), tiles_[static_cast<size_t>(i)], slot);
    });
  }

  // The fused loops' view of a distance tile d ([gb, tn, C], rows contiguous).
  cpu::TileShape shape(const Tile& t, const Tensor& d) const {
    cpu::TileShape s;
    s.gb = t.gb, s.tn = t.tn, s.C = C_, s.P = P_;
    s.d_gstride = d.stride(0);
    s.r_gstride = N_;
    s.mask = opt_.mask_self;
    s.self_col0 = P_ + off_ + t.i0;
    return s;
  }

  // The entries (i, P + self_offset + i) of a tile: a [gb, tn] strided view.
  Tensor self_diagonal(const Tile& t, const Tensor& m) const {
    return m.narrow(-1, P_ + off_ + t.i0, t.tn).diagonal(0, -2, -1);
  }

  // The distance tile for pass 1 (computed, and kept by the dense path) or later passes.
  Tensor distances(const Tile& t, bool first_pass) {
    if (path_ == Path::kDense) {
      Tensor v = dist_.narrow(0, t.g0, t.gb).narrow(1, t.i0, t.tn);
      if (first_pass) compute_distances(t, v);
      return v;
    }
    Tensor v = ws_.get("dtile", t.gb * t.tn * C_, x_.options()).view({t.gb, t.tn, C_});
    compute_distances(t, v);
    return v;
  }

  void pass_distances(FieldResult& res) {
    if (path_ == Path::kDense) dist_ = ws_.get("dist", G_ * N_ * C_, x_.options()).view({G_, N_, C_});
    const auto dopt = x_.options().dtype(torch::kDouble);
    Tensor wd_sum = torch::zeros({}, dopt), nn_sum = torch::zeros({}, dopt);
    Tensor dmax = torch::zeros({}, x_.options());
    colmin_ = torch::full({G_, C_}, kInf, x_.options());
    rowmin_ = torch::empty({G_, N_}, x_.options());
    double f_wd = 0, f_max = 0, f_nn = 0;  // fused loops' accumulators
    if (fused_) {
      const size_t n = tiles_.size();
      std::vector<double> wd(n, 0.0), mx(n, 0.0), nn(n, 0.0);  // per tile, added in tile order below
      for_each_tile([&](size_t i, const Tile& t, int) {
        Tensor d = distances(t, true);
        dispatch([&](auto zero) {
          using T = decltype(zero);
          cpu::distance_stats<T>(d.data_ptr<T>(), shape(t, d), w_.defined() ? w_.data_ptr<T>() + t.g0 * C_ : nullptr,
                                 &wd[i], &mx[i], colmin_.data_ptr<T>() + t.g0 * C_,
                                 rowmin_.data_ptr<T>() + t.g0 * N_ + t.i0, &nn[i]);
        });
      });
      for (size_t i = 0; i < n; ++i) f_wd += wd[i], f_max = std::max(f_max, mx[i]), f_nn += nn[i];
    }
    for (const Tile& t : tiles_) {
      if (fused_) break;
      Tensor d = distances(t, true);
      if (opt_.mask_self) self_diagonal(t, d).fill_(0);
      Tensor colsum = d.sum(1);
      wd_sum += (w_.defined() ? (colsum * w_.narrow(0, t.g0, t.gb)).sum() : colsum.sum()).to(torch::kDouble);
      dmax = torch::maximum(dmax, d.amax());
      if (opt_.mask_self) self_diagonal(t, d).fill_(kInf);
      Tensor cm = colmin_.narrow(0, t.g0, t.gb);
      cm.copy_(torch::minimum(cm, d.amin(1)));
      Tensor rm = d.amin(2);
      rowmin_.narrow(0, t.g0, t.gb).narrow(1, t.i0, t.tn).copy_(rm);
      nn_sum += rm.sum().to(torch::kDouble);
    }
    if (fused_) {
      wd_sum += f_wd;
      nn_sum += f_nn;
      dmax = torch::full({}, f_max, x_.options());
    }
    // Total weight of the unmasked pairs, in closed form.
    Tensor w_sum;
    if (w_.defined()) {
      w_sum = w_.sum().to(torch::kDouble) * static_cast<double>(N_);
      if (opt_.mask_self) w_sum = w_sum - w_.narrow(1, P_ + off_, N_).sum().to(torch::kDouble);
    } else {
      const double pairs = static_cast<double>(G_) * N_ * C_ - (opt_.mask_self ? static_cast<double>(G_) * N_ : 0.0);
      w_sum = torch::full({}, pairs, dopt);
    }
    Tensor sums = torch::stack({wd_sum, w_sum, nn_sum, torch::full({}, static_cast<double>(G_ * N_), dopt)});
    Tensor maxes = torch::cat({colmin_.neg().flatten(), dmax.reshape({1}), rowmin_.amin().neg().reshape({1})});
    if (red_) {
      red_->all_reduce_sum(sums);
      red_->all_reduce_max(maxes);
    }
    colmin_ = maxes.narrow(0, 0, G_ * C_).neg().view({G_, C_});
    // A column masked for every row (N = 1 and its self column) would give inf - inf below.
    colmin_.masked_fill_(torch::isinf(colmin_), 0);
    const auto s = sums.to(torch::kCPU);
    const double wsum = s[1].item<double>();
    DL_REQUIRE(wsum > 0, "drift: the column weights of the unmasked pairs sum to zero (all weights are 0?)");
    scale_ = s[0].item<double>() / wsum;
    rows_total_ = s[3].item<double>();
    const auto m = maxes.narrow(0, G_ * C_, 2).to(torch::kCPU).to(torch::kDouble);
    res.scale = scale_;
    res.total_rows = static_cast<int64_t>(rows_total_);
    res.distances.mean = scale_;
    res.distances.max = m[0].item<double>();
    res.distances.min = -m[1].item<double>();
    res.distances.nn_mean = s[2].item<double>() / rows_total_;
    k_.clear();
    for (double tau : opt_.taus) k_.push_back(1.0 / (std::max(scale_, opt_.scale_eps) * tau));
  }

  void pass_column_sums() {
    Tensor csum = torch::zeros({T_, G_, C_}, x_.options());
    Tensor rowlse = torch::empty({T_, G_, N_}, x_.options());
    if (fused_) {
      for_each_tile([&](size_t, const Tile& t, int) {
        Tensor d = distances(t, false);
        dispatch([&](auto zero) {
          using T = decltype(zero);
          const auto s = shape(t, d);
          T* lse = rowlse.data_ptr<T>();
          T* cs = csum.data_ptr<T>();
          for (int64_t ti = 0; ti < T_; ++ti)
            cpu::row_col_sums<T>(d.data_ptr<T>(), s, static_cast<T>(k_[ti]), rowmin_.data_ptr<T>() + t.g0 * N_ + t.i0,
                                 colmin_.data_ptr<T>() + t.g0 * C_, lse + ti * G_ * N_ + t.g0 * N_ + t.i0,
                                 cs + ti * G_ * C_ + t.g0 * C_);
        });
      });
    }
    for (const Tile& t : tiles_) {
      if (fused_) break;
      Tensor d = distances(t, false);
      // Slot 0 of pass 3's buffer: one buffer for both passes.
      Tensor work = ws_.get("work", t.gb * T_ * t.tn * C_, x_.options()).narrow(0, 0, t.gb * t.tn * C_).view({t.gb, t.tn, C_});
      Tensor rm = rowmin_.narrow(0, t.g0, t.gb).narrow(1, t.i0, t.tn);
      Tensor cm = colmin_.narrow(0, t.g0, t.gb).unsqueeze(1);
      for (int64_t ti = 0; ti < T_; ++ti) {
        const double k = k_[ti];
        // Row: logits minus the row max (-k * rowmin), so the largest term is exp(0).
        torch::add_out(work, (rm * k).unsqueeze(-1), d, -k).exp_();
        rowlse[ti].narrow(0, t.g0, t.gb).narrow(1, t.i0, t.tn).copy_(work.sum(-1).log_().sub_(rm, k));
        torch::add_out(work, cm * k, d, -k).exp_();
        csum[ti].narrow(0, t.g0, t.gb).add_(work.sum(1));
      }
    }
    if (red_) red_->all_reduce_sum(csum);
    // c_j = colmax_j + log(csum_j); a fully masked column has csum 0 and no entry to weigh.
    Tensor kk = torch::tensor(k_, torch::TensorOptions().dtype(torch::kDouble)).to(x_.options()).view({T_, 1, 1});
    Tensor collse = csum.log() - kk * colmin_.unsqueeze(0);
    collse.masked_fill_(csum == 0, 0);
    half_row_ = rowlse.mul_(-0.5);
    half_col_ = collse.mul_(-0.5);
  }

  // Pass 3 of one tile with the fused loops: per temperature, the affinity rows into A (and the
  // tile's entropy sum into h[tau]) and, for small problems (direct_), their weighted sums straight
  // into V_tau, adding the tile's sums of ||V||^2 and ||V|| to tsq[tau] and tnrm[tau]; large ones
  // leave A to the batched matrix products of the tensor path. Touches nothing shared but its
  // own rows of V and these outputs (tiles may run on several threads at once).
  void fused_fields(const Tile& t, const Tensor& d, const Tensor& A, const std::vector<Tensor>& vraw, double* tsq,
                    double* tnrm, double* h) {
    const double floor_a = opt_.floor ? std::sqrt(opt_.floor_value) : 0.0;
    dispatch([&](auto zero) {
      using T = decltype(zero);
      const auto s = shape(t, d);
      const int64_t a_gstride = T_ * t.tn * C_;
      for (int64_t ti = 0; ti < T_; ++ti) {
        const size_t i = static_cast<size_t>(ti);
        T* a = A.data_ptr<T>() + ti * t.tn * C_;
        cpu::affinities<T>(d.data_ptr<T>(), s, static_cast<T>(k_[ti]), half_row_[ti].data_ptr<T>() + t.g0 * N_ + t.i0,
                           half_col_[ti].data_ptr<T>() + t.g0 * C_, static_cast<T>(floor_a),
                           w_.defined() ? w_.data_ptr<T>() + t.g0 * C_ : nullptr, a, a_gstride,
                           opt_.compute_entropy ? &h[i] : nullptr);
        if (direct_)
          cpu::weighted_sums<T>(a, s, a_gstride, ycat_.data_ptr<T>() + t.g0 * C_ * D_, D_,
                                vraw[ti].data_ptr<T>() + (t.g0 * N_ + t.i0) * D_, N_ * D_, &tsq[i], &tnrm[i]);
      }
    });
  }

  void pass_fields(FieldResult& res) {
    const auto dopt = x_.options().dtype(torch::kDouble);
    // V_tau before normalization; the first becomes the returned V, the others are scratch.
    std::vector<Tensor> vraw(T_);
    vraw[0] = torch::empty({G_, N_, D_}, x_.options());
    Tensor extra = ws_.get("vraw", (T_ - 1) * G_ * N_ * D_, x_.options());
    for (int64_t ti = 1; ti < T_; ++ti) vraw[ti] = extra.narrow(0, (ti - 1) * G_ * N_ * D_, G_ * N_ * D_).view({G_, N_, D_});
    Tensor sq = torch::zeros({T_}, dopt), nrm = torch::zeros({T_}, dopt), ent = torch::zeros({T_}, dopt);
    const double floor_a = std::sqrt(opt_.floor_value);
    if (fused_ && direct_) {
      // Per tile sums, added in tile order; one affinity buffer per thread.
      const size_t n = tiles_.size(), T = static_cast<size_t>(T_);
      std::vector<double> tsq(n * T, 0.0), tnrm(n * T, 0.0), h(n * T, 0.0);
      int64_t per_slot = 0;
      for (const Tile& t : tiles_) per_slot = std::max(per_slot, t.gb * T_ * t.tn * C_);
      const int slots = tile_parallel_ ? at::get_num_threads() : 1;
      Tensor work = ws_.get("work", slots * per_slot, x_.options());
      for_each_tile([&](size_t i, const Tile& t, int slot) {
        Tensor d = distances(t, false);
        Tensor A = work.narrow(0, slot * per_slot, t.gb * T_ * t.tn * C_).view({t.gb, T_, t.tn, C_});
        fused_fields(t, d, A, vraw, &tsq[i * T], &tnrm[i * T], &h[i * T]);
      });
      std::vector<double> s_sq(T, 0.0), s_nrm(T, 0.0), s_h(T, 0.0);
      for (size_t i = 0; i < n; ++i)
        for (size_t ti = 0; ti < T; ++ti)
          s_sq[ti] += tsq[i * T + ti], s_nrm[ti] += tnrm[i * T + ti], s_h[ti] += h[i * T + ti];
      sq = torch::tensor(s_sq, dopt), nrm = torch::tensor(s_nrm, dopt), ent = torch::tensor(s_h, dopt);
    }
    for (const Tile& t : tiles_) {
      if (fused_ && direct_) break;
      Tensor d = distances(t, false);
      Tensor A = ws_.get("work", t.gb * T_ * t.tn * C_, x_.options()).view({t.gb, T_, t.tn, C_});
      if (fused_) {  // the affinities only; the products below
        std::vector<double> h(static_cast<size_t>(T_), 0.0), unused(h);
        fused_fields(t, d, A, vraw, unused.data(), unused.data(), h.data());
        if (opt_.compute_entropy) ent += torch::tensor(h, dopt);
      }
      for (int64_t ti = 0; ti < T_ && !fused_; ++ti) {
        Tensor a = A.select(1, ti);
        Tensor hr = half_row_[ti].narrow(0, t.g0, t.gb).narrow(1, t.i0, t.tn).unsqueeze(-1);
        Tensor hc = half_col_[ti].narrow(0, t.g0, t.gb).unsqueeze(1);
        // logit - r/2 - c/2 = (logit - r)/2 + (logit - c)/2 <= 0: no overflow, and exactly
        // log sqrt(a_row * a_col).
        torch::add_out(a, hr, hc).add_(d, -k_[ti]).exp_();
        if (opt_.floor) a.clamp_min_(floor_a);
        if (opt_.mask_self) self_diagonal(t, a).fill_(0);
        if (opt_.compute_entropy) {
          Tensor s = a.sum(-1);
          Tensor h = s.log() - torch::xlogy(a, a).sum(-1) / s;
          ent[ti] += h.sum().to(torch::kDouble);
        }
        if (w_.defined()) a.mul_(w_.narrow(0, t.g0, t.gb).unsqueeze(1));
      }
      // All temperatures in one product: [gb, T*tn, P] x [gb, P, D] (and the same for Q).
      Tensor A3 = A.view({t.gb, T_ * t.tn, C_});
      Tensor Ap = A3.narrow(2, 0, P_), An = A3.narrow(2, P_, Q_);
      const int64_t out_numel = t.gb * T_ * t.tn * D_;
      Tensor pos = ws_.get("pos", out_numel, x_.options()).view({t.gb, T_ * t.tn, D_});
      Tensor neg = ws_.get("neg", out_numel, x_.options()).view({t.gb, T_ * t.tn, D_});
      torch::bmm_out(pos, Ap, yp_.narrow(0, t.g0, t.gb));
      torch::bmm_out(neg, An, yn_.narrow(0, t.g0, t.gb));
      Tensor spos = Ap.sum(-1, true), sneg = An.sum(-1, true);
      // V_tau = S_neg * sum A_pos y_pos - S_pos * sum A_neg y_neg (the -x terms cancel).
      Tensor v = pos.mul_(sneg).sub_(neg.mul_(spos)).view({t.gb, T_, t.tn, D_});
      Tensor vsq = torch::mul_out(neg, pos, pos).view({t.gb, T_, t.tn, D_}).sum(-1);  // [gb, T, tn]
      sq += vsq.sum(at::IntArrayRef{0, 2}).to(torch::kDouble);
      nrm += vsq.sqrt().sum(at::IntArrayRef{0, 2}).to(torch::kDouble);
      for (int64_t ti = 0; ti < T_; ++ti)
        vraw[ti].narrow(0, t.g0, t.gb).narrow(1, t.i0, t.tn).copy_(v.select(1, ti));
    }
    Tensor sums = torch::cat({sq, nrm, ent});
    if (red_) red_->all_reduce_sum(sums);
    const auto s = sums.to(torch::kCPU);
    const double sc = std::max(scale_, opt_.scale_eps);
    const double D = static_cast<double>(D_);
    // Raw y was used in the products: normalized features are y * sqrt(D) / s.
    const double to_norm = std::sqrt(D) / sc;
    Tensor V = vraw[0];
    for (int64_t ti = 0; ti < T_; ++ti) {
      const double raw_sq = s[ti].item<double>() * to_norm * to_norm / rows_total_;
      const double lambda = std::sqrt(raw_sq / D);
      res.raw_drift_sq.push_back(raw_sq);
      res.lambda.push_back(lambda);
      res.raw_drift_norm.push_back(s[T_ + ti].item<double>() * to_norm / rows_total_);
      if (opt_.compute_entropy) res.entropy.push_back(s[2 * T_ + ti].item<double>() / rows_total_);
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
  Workspace& ws_;
  Tensor x_, yp_, yn_, w_, wp_, wn_, center_, ynorm_;
  Tensor ycat_, yT_;  // fused loops: targets [G, C, D] and, for direct distances, [G, D, C]
  bool direct_ = false;
  int64_t G_ = 0, N_ = 0, D_ = 0, P_ = 0, Q_ = 0, C_ = 0, T_ = 0, off_ = 0, elem_ = 4;
  Path path_ = Path::kDense;
  bool fused_ = false;
  bool tile_parallel_ = false;  // whole tiles per thread (see validate_and_prepare)
  int64_t rows_per_tile_ = 1;
  std::vector<Tile> tiles_;
  Tensor dist_;
  Tensor colmin_, rowmin_, half_row_, half_col_;
  double scale_ = 0, rows_total_ = 0;
  std::vector<double> k_;
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
