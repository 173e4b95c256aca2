// Fused CPU loops of the drift kernel (see field.cpp): each pass over a tile of the distance
// matrix in one sweep over its entries, instead of a chain of elementwise tensor operations.
// Many small problems (per-location and patch keys: thousands of problems of a few dozen rows)
// are bound by the cost per tensor operation, and every operation streams the whole tile through
// memory again; these loops touch each entry once per pass, vectorised, with their own exp.
//
// A tile: problems g in [0, gb) of tn rows and C = P + Q columns each. Distances are
// d[g * d_gstride + i * C + j]; per-row vectors (row minima, half log-sums) are
// v[g * r_gstride + i]; per-column vectors (column minima, sums, weights) are v[g * C + j].
// The self pair of row i is column self_col0 + i (when mask is set); its distance is +inf.
// Float and double; every loop runs in parallel over rows with at::parallel_for.
#pragma once

#include <cstdint>

namespace driftlab::drift::cpu {

struct TileShape {
  int64_t gb = 1, tn = 1, C = 1, P = 0;
  int64_t d_gstride = 0;  // elements between problems in the distance tile
  int64_t r_gstride = 0;  // elements between problems in per-row vectors
  bool mask = true;
  int64_t self_col0 = 0;  // column of row 0's self pair
};

// exp(x) for x <= 0 to about 1 ulp, 0 below -86 (results near the smallest normal float);
// vectorisable. Exposed for its test.
float exp_nonpositive(float x);

// d = sqrt(max(d + col_term[j] + row_term[i], 0)) (d holds -2 x.y on entry); self pairs -> +inf.
// col_term: [gb, C] (stride C), row_term: [gb, tn] (stride tn).
template <typename T>
void finish_distances(T* d, const TileShape& s, const T* col_term, const T* row_term);

// Distances computed directly, for small D: d_ij = sqrt(sum_k (x_ik - y_jk)^2) with no
// cancellation; self pairs +inf. x row i of problem g: x[g * x_gstride + i * D]; the targets of
// problem g transposed: yT[g * D * C + k * C + j] (positives, then negatives).
template <typename T>
void direct_distances(T* d, const TileShape& s, const T* x, int64_t x_gstride, const T* yT, int64_t D);

// The weighted sums of pass 3 for one temperature, and the raw field: from the affinity rows A
// (as affinities() wrote them), with S_pos / S_neg their sums over the positive / negative
// columns, V_i = S_neg sum_{j<P} A_ij y_j - S_pos sum_{j>=P} A_ij y_j, written to
// V[g * v_gstride + i * D]; adds sum_i ||V_i||^2 to *sq and sum_i ||V_i|| to *norm. y: targets
// of problem g row-major, y[g * C * D + j * D + k].
template <typename T>
void weighted_sums(const T* A, const TileShape& s, int64_t a_gstride, const T* y, int64_t D, T* V, int64_t v_gstride,
                   double* sq, double* norm);

// Pass-1 statistics of a distance tile (self pairs excluded): adds sum_ij w_j d_ij to *wd_sum,
// raises *dmax, lowers colmin[g, j], writes rowmin[g, i] and adds sum_i rowmin to *nn_sum.
// w may be null (all ones).
template <typename T>
void distance_stats(const T* d, const TileShape& s, const T* w, double* wd_sum, double* dmax, T* colmin, T* rowmin,
                    double* nn_sum);

// Pass 2 for one temperature (logits -k d): rowlse[g, i] = log sum_j exp(-k d_ij) and
// colsum[g, j] += sum_i exp(-k (d_ij - colmin_j)), both shifted by their exact maxima.
template <typename T>
void row_col_sums(const T* d, const TileShape& s, T k, const T* rowmin, const T* colmin, T* rowlse, T* colsum);

// Pass 3 for one temperature: A_ij = exp(half_row_i + half_col_j - k d_ij) (= sqrt(a_row a_col)),
// floored at floor_a when floor_a > 0, self pairs 0, then times w_j (w may be null). Row i of
// problem g goes to A[g * a_gstride + i * C]. With entropy != null, adds each row's entropy of A
// (before the weights) to *entropy.
template <typename T>
void affinities(const T* d, const TileShape& s, T k, const T* half_row, const T* half_col, T floor_a, const T* w, T* A,
                int64_t a_gstride, double* entropy);

// Mean and std of every non-overlapping p x q patch of the planes of x ([planes, H, W],
// contiguous), h = H / p by w = W / q patches per plane, row-major (rows and columns past the last
// whole patch take no part): mean[(plane * h + a) * w + b] and std = sqrt(mean squared deviation
// from the patch mean + eps), the deviations summed in a second pass over the patch.
template <typename T>
void patch_stats_forward(const T* x, int64_t planes, int64_t H, int64_t W, int64_t p, int64_t q, T eps, T* mean,
                         T* std);

// The gradient of patch_stats_forward: inside patch (a, b),
// grad_x = g_mean / (p q) + g_std * (x - mean) / (p q std); 0 outside every patch. g_mean or g_std
// may be null (no gradient).
template <typename T>
void patch_stats_backward(const T* x, int64_t planes, int64_t H, int64_t W, int64_t p, int64_t q, const T* mean,
                          const T* std, const T* g_mean, const T* g_std, T* grad_x);

// Per problem g of a set of G problems of R rows of D features (row i of problem g at
// y[g * g_stride + i * D]): the mean squared distance of the rows to their mean, out[g] (the
// mean first, then the deviations: no cancellation of two large terms).
template <typename T>
void set_spread(const T* y, int64_t G, int64_t R, int64_t D, int64_t g_stride, double* out);

}  // namespace driftlab::drift::cpu
