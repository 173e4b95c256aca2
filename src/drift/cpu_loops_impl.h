// The fused CPU loops (see cpu_loops.h). cpu_loops.cpp includes this file twice, once for the
// baseline instruction set and once for AVX2 + FMA, each time into its own namespace
// (DRIFTLAB_CPU_LOOPS_NS), and picks one at run time.
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "drift/cpu_loops.h"

// Included twice by cpu_loops.cpp (no include guard), once per instruction set.

namespace driftlab::drift::cpu::DRIFTLAB_CPU_LOOPS_NS {
namespace detail {

// exp(x) for x <= 0: x = n ln2 + r with |r| <= ln2 / 2 (n rounded to nearest by the 1.5 * 2^23
// trick, which needs no rounding instruction), a degree-7 polynomial for exp(r) (the classic
// minimax coefficients for single precision), 2^n built in the exponent bits. Below -86 (exp
// about 4e-38, next to the smallest normal float) the result is 0: masked pairs have x = -inf,
// and a subnormal intermediate would cost a microcode assist per lane. Branch-free: the compiler
// vectorises loops that call it.
inline float exp_np(float x) {
  constexpr float kLo = -86.0f;
  constexpr float kLog2e = 1.44269504088896341f;
  constexpr float kLn2Hi = 0.693359375f, kLn2Lo = -2.12194440e-4f;
  constexpr float kRound = 12582912.0f;  // 1.5 * 2^23
  const float xc = x < kLo ? kLo : x;
  const float n = (xc * kLog2e + kRound) - kRound;
  float r = xc - n * kLn2Hi;
  r = r - n * kLn2Lo;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) * (1 << 23);
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return x < kLo ? 0.0f : p * scale;
}

// x[j] = exp(x[j]) for x[j] <= 0, in place.
void exp_inplace(float* __restrict x, int64_t n) {
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) x[j] = exp_np(x[j]);
}
void exp_inplace(double* __restrict x, int64_t n) {
  for (int64_t j = 0; j < n; ++j) x[j] = std::exp(x[j]);
}

// Scratch rows of one thread (C entries each), kept across calls.
template <typename T>
T* scratch_rows(int64_t C, int which) {
  thread_local std::vector<T> buf[4];  // 0, 1: exp rows of pass 2; 2: weighted sums of pass 3;
                                       // 3: the padded last columns of the direct distances
  auto& b = buf[which];
  if (static_cast<int64_t>(b.size()) < C) b.resize(static_cast<size_t>(C));
  return b.data();
}

constexpr int64_t kEntriesPerChunk = 1 << 14;

int64_t grain(const TileShape& s) { return std::max<int64_t>(1, kEntriesPerChunk / std::max<int64_t>(s.C, 1)); }

// Per-thread accumulators: at::parallel_for runs each chunk on one pool thread, so a thread's
// slot is never written concurrently. Combined in a fixed order afterwards.
template <typename T>
struct PerThread {
  explicit PerThread(int64_t n, T init) : size(n), data(static_cast<size_t>(threads() * n), init) {}
  static int64_t threads() { return std::max<int64_t>(1, at::get_num_threads()); }
  T* mine() { return data.data() + at::get_thread_num() * size; }
  int64_t size;
  std::vector<T> data;
};

}  // namespace detail
using namespace detail;

float exp_nonpositive(float x) { return exp_np(x); }

template <typename T>
void finish_distances(T* d, const TileShape& s, const T* col_term, const T* row_term) {
  at::parallel_for(0, s.gb * s.tn, grain(s), [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      const int64_t g = r / s.tn, i = r % s.tn;
      T* row = d + g * s.d_gstride + i * s.C;
      const T* ct = col_term + g * s.C;
      const T rt = row_term[g * s.tn + i];
#pragma omp simd
      for (int64_t j = 0; j < s.C; ++j) {
        const T v = row[j] + ct[j] + rt;
        row[j] = std::sqrt(v > T(0) ? v : T(0));
      }
      if (s.mask) row[s.self_col0 + i] = std::numeric_limits<T>::infinity();
    }
  });
}

// The sum of a[0, n) in an order fixed by n alone (8 running partial sums, lane l taking the
// entries l, l + 8, ..., then a fixed tree): equal sequences give bitwise equal sums wherever
// they sit in memory, and the 8 lanes vectorise.
template <typename T>
inline T fixed_order_sum(const T* a, int64_t n) {
  constexpr int L = 8;
  T part[L] = {};
  int64_t j = 0;
  for (; j + L <= n; j += L)
    for (int l = 0; l < L; ++l) part[l] += a[j + l];
  for (int l = 0; j < n; ++j, ++l) part[l] += a[j];
  return ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]));
}

// Rows of the weighted sums taken together: each target row y_j is loaded once for the block.
constexpr int kBlock = 4;

// out[q * ostride + k] = sum_{j in [j0, j1)} arow[q][j] y_j[k0 + k] for the kBlock rows and W
// features from k0: the block's kBlock x W sums stay in registers over the whole j loop (W is
// two vector registers of T), each a chain of multiply-adds in plain j order.
template <typename T, int W>
inline void block_sums(const T* const* arow, const T* y, int64_t D, int64_t k0, int64_t j0, int64_t j1, T* out,
                       int64_t ostride) {
  T acc[kBlock][W] = {};
  for (int64_t j = j0; j < j1; ++j) {
    const T* __restrict yj = y + j * D + k0;
    for (int q = 0; q < kBlock; ++q) {
      const T a = arow[q][j];
#pragma omp simd
      for (int k = 0; k < W; ++k) acc[q][k] += a * yj[k];
    }
  }
  for (int q = 0; q < kBlock; ++q)
    for (int k = 0; k < W; ++k) out[q * ostride + k] = acc[q][k];
}

// Squared distances of kBlock rows to W targets from column j0: out[q][j] = sum_k (x_q[k] -
// yT[k * C + j0 + j])^2, the kBlock x W sums in registers over the whole k loop.
template <typename T, int W>
inline void block_distances(const T* const* xrow, const T* yT, int64_t C, int64_t D, int64_t j0, T* const* drow) {
  T acc[kBlock][W] = {};
  for (int64_t k = 0; k < D; ++k) {
    const T* __restrict yk = yT + k * C + j0;
    for (int q = 0; q < kBlock; ++q) {
      const T xk = xrow[q][k];
#pragma omp simd
      for (int j = 0; j < W; ++j) {
        const T diff = xk - yk[j];
        acc[q][j] += diff * diff;
      }
    }
  }
  for (int q = 0; q < kBlock; ++q)
    for (int j = 0; j < W; ++j) drow[q][j0 + j] = acc[q][j];
}

template <typename T>
void direct_distances(T* d, const TileShape& s, const T* x, int64_t x_gstride, const T* yT, int64_t D) {
  constexpr int W = 2 * DRIFTLAB_CPU_LOOPS_VBYTES / static_cast<int>(sizeof(T));
  at::parallel_for(0, s.gb * s.tn, grain(s), [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e;) {
      const int64_t g = r / s.tn, i0 = r % s.tn;
      const int64_t nb = std::min<int64_t>(std::min<int64_t>(kBlock, e - r), s.tn - i0);
      const T* yg = yT + g * D * s.C;
      // A short block repeats its last row; its results are written to that row again.
      const T* xrow[kBlock];
      T* drow[kBlock];
      for (int64_t q = 0; q < kBlock; ++q) {
        const int64_t i = i0 + std::min(q, nb - 1);
        xrow[q] = x + g * x_gstride + i * D;
        drow[q] = d + g * s.d_gstride + i * s.C;
      }
      int64_t j0 = 0;
      for (; j0 + W <= s.C; j0 += W) block_distances<T, W>(xrow, yg, s.C, D, j0, drow);
      if (j0 + W / 2 <= s.C) {
        block_distances<T, W / 2>(xrow, yg, s.C, D, j0, drow);
        j0 += W / 2;
      }
      if (j0 < s.C) {
        // The last columns through the same block code, on a zero-padded copy of their targets:
        // every column's sum then comes from the same instructions (a scalar loop here may
        // contract to fused multiply-adds differently from the vector blocks, and equal targets
        // in different columns would get distances one rounding apart, breaking the exact zero
        // field of equal positive and negative sets).
        constexpr int H = W / 2;
        const int64_t rest = s.C - j0;
        T* pad = scratch_rows<T>(D * H + kBlock * H, 3);
        for (int64_t k = 0; k < D; ++k)
          for (int j = 0; j < H; ++j) pad[k * H + j] = j < rest ? yg[k * s.C + j0 + j] : T(0);
        T* prow[kBlock];
        for (int q = 0; q < kBlock; ++q) prow[q] = pad + D * H + q * H;
        block_distances<T, H>(xrow, pad, H, D, 0, prow);
        for (int64_t q = 0; q < nb; ++q)
          for (int64_t j = 0; j < rest; ++j) drow[q][j0 + j] = prow[q][j];
      }
      for (int64_t q = 0; q < nb; ++q) {
        T* __restrict row = drow[q];
#pragma omp simd
        for (int64_t j = 0; j < s.C; ++j) row[j] = std::sqrt(row[j]);
        if (s.mask) row[s.self_col0 + i0 + q] = std::numeric_limits<T>::infinity();
      }
      r += nb;
    }
  });
}

template <typename T>
void weighted_sums(const T* A, const TileShape& s, int64_t a_gstride, const T* y, int64_t D, T* V, int64_t v_gstride,
                   double* sq, double* norm) {
  constexpr int W = 2 * DRIFTLAB_CPU_LOOPS_VBYTES / static_cast<int>(sizeof(T));  // features per register block
  PerThread<double> acc(2, 0.0);
  at::parallel_for(0, s.gb * s.tn, grain(s), [&](int64_t b, int64_t e) {
    T* __restrict vsum = scratch_rows<T>(kBlock * 2 * D, 2);  // row q: [q * 2D, q * 2D + D) pos, then neg
    double* a2 = acc.mine();
    for (int64_t r = b; r < e;) {
      const int64_t g = r / s.tn, i0 = r % s.tn;
      const int64_t nb = std::min<int64_t>(std::min<int64_t>(kBlock, e - r), s.tn - i0);
      const T* yg = y + g * s.C * D;
      // A short block repeats its last row (valid memory; those sums are not used).
      const T* arow[kBlock];
      for (int64_t q = 0; q < kBlock; ++q) arow[q] = A + g * a_gstride + (i0 + std::min(q, nb - 1)) * s.C;
      // The row sums in plain column order, the same for both blocks: positives equal to the
      // negatives then give exactly V = 0 (the thermostat), whatever the vector alignment.
      T rs[kBlock][2] = {};
      for (int half = 0; half < 2; ++half) {
        const int64_t j0 = half ? s.P : 0, j1 = half ? s.C : s.P;
        for (int64_t q = 0; q < nb; ++q) rs[q][half] = fixed_order_sum(arow[q] + j0, j1 - j0);
        T* out = vsum + half * D;
        int64_t k0 = 0;
        for (; k0 + W <= D; k0 += W) block_sums<T, W>(arow, yg, D, k0, j0, j1, out + k0, 2 * D);
        if (k0 + W / 2 <= D) {
          block_sums<T, W / 2>(arow, yg, D, k0, j0, j1, out + k0, 2 * D);
          k0 += W / 2;
        }
        if (k0 < D) {  // the last D mod (W / 2) features
          for (int64_t q = 0; q < nb; ++q)
            for (int64_t k = k0; k < D; ++k) out[q * 2 * D + k] = 0;
          for (int64_t j = j0; j < j1; ++j) {
            const T* __restrict yj = yg + j * D;
            for (int64_t q = 0; q < nb; ++q) {
              const T aj = arow[q][j];
              T* __restrict o = out + q * 2 * D;
              for (int64_t k = k0; k < D; ++k) o[k] += aj * yj[k];
            }
          }
        }
      }
      for (int64_t q = 0; q < nb; ++q) {
        const T sp = rs[q][0], sn = rs[q][1];
        const T* vp = vsum + q * 2 * D;
        const T* vn = vp + D;
        T* __restrict v = V + g * v_gstride + (i0 + q) * D;
        T vsq = 0;
        // S_neg vp - S_pos vn (the -x terms of the mean shifts cancel), written so that (1) a
        // fused multiply-add still gives exactly 0 when the two blocks are equal (both forms are
        // then 0 x a + b x 0), and (2) the side with the smaller affinity sum carries no O(1)
        // terms: far from every positive (sp, vp ~ 1e-16 while sn, vn ~ 1) the form with sn x
        // (vp - vn) cancelled two O(1) products and left their rounding error (~1e-7), not the
        // field (~1e-16), which the per-temperature normalisation then blew up to unit size.
        if (sp <= sn) {
#pragma omp simd reduction(+ : vsq)
          for (int64_t k = 0; k < D; ++k) {
            v[k] = (sn - sp) * vp[k] + sp * (vp[k] - vn[k]);
            vsq += v[k] * v[k];
          }
        } else {
#pragma omp simd reduction(+ : vsq)
          for (int64_t k = 0; k < D; ++k) {
            v[k] = sn * (vp[k] - vn[k]) + (sn - sp) * vn[k];
            vsq += v[k] * v[k];
          }
        }
        a2[0] += static_cast<double>(vsq);
        a2[1] += std::sqrt(static_cast<double>(vsq));
      }
      r += nb;
    }
  });
  for (int64_t t = 0; t < acc.threads(); ++t) {
    *sq += acc.data[static_cast<size_t>(2 * t)];
    *norm += acc.data[static_cast<size_t>(2 * t + 1)];
  }
}

template <typename T>
void distance_stats(const T* d, const TileShape& s, const T* w, double* wd_sum, double* dmax, T* colmin, T* rowmin,
                    double* nn_sum) {
  const T inf = std::numeric_limits<T>::infinity();
  PerThread<T> cmin(s.gb * s.C, inf);
  PerThread<double> acc(3, 0.0);  // weighted sum, max, sum of row minima
  at::parallel_for(0, s.gb * s.tn, grain(s), [&](int64_t b, int64_t e) {
    T* cm = cmin.mine();
    double* a = acc.mine();
    for (int64_t r = b; r < e; ++r) {
      const int64_t g = r / s.tn, i = r % s.tn;
      const T* row = d + g * s.d_gstride + i * s.C;
      const T* wg = w ? w + g * s.C : nullptr;
      T* cmg = cm + g * s.C;
      const int64_t self = s.mask ? s.self_col0 + i : -1;
      T sum = 0, mx = 0, mn = inf;
      if (wg) {
#pragma omp simd reduction(+ : sum) reduction(max : mx) reduction(min : mn)
        for (int64_t j = 0; j < s.C; ++j) {
          const T v = row[j];
          const T kept = j == self ? T(0) : v;  // the self pair (+inf) takes no part in sum and max
          sum += kept * wg[j];
          mx = kept > mx ? kept : mx;
          mn = v < mn ? v : mn;
          cmg[j] = v < cmg[j] ? v : cmg[j];
        }
      } else {
#pragma omp simd reduction(+ : sum) reduction(max : mx) reduction(min : mn)
        for (int64_t j = 0; j < s.C; ++j) {
          const T v = row[j];
          const T kept = j == self ? T(0) : v;
          sum += kept;
          mx = kept > mx ? kept : mx;
          mn = v < mn ? v : mn;
          cmg[j] = v < cmg[j] ? v : cmg[j];
        }
      }
      rowmin[g * s.r_gstride + i] = mn;
      a[0] += static_cast<double>(sum);
      a[1] = std::max(a[1], static_cast<double>(mx));
      a[2] += static_cast<double>(mn);
    }
  });
  for (int64_t t = 0; t < cmin.threads(); ++t) {
    const T* cm = cmin.data.data() + t * cmin.size;
    for (int64_t q = 0; q < cmin.size; ++q) colmin[q] = std::min(colmin[q], cm[q]);
    const double* a = acc.data.data() + t * 3;
    *wd_sum += a[0];
    *dmax = std::max(*dmax, a[1]);
    *nn_sum += a[2];
  }
}

template <typename T>
void row_col_sums(const T* d, const TileShape& s, T k, const T* rowmin, const T* colmin, T* rowlse, T* colsum) {
  PerThread<T> csum(s.gb * s.C, T(0));
  at::parallel_for(0, s.gb * s.tn, grain(s), [&](int64_t b, int64_t e) {
    T* cs = csum.mine();
    for (int64_t r = b; r < e; ++r) {
      const int64_t g = r / s.tn, i = r % s.tn;
      const T* row = d + g * s.d_gstride + i * s.C;
      const T* cm = colmin + g * s.C;
      T* csg = cs + g * s.C;
      const T rm = rowmin[g * s.r_gstride + i];
      T* __restrict er = scratch_rows<T>(s.C, 0);
      T* __restrict ec = scratch_rows<T>(s.C, 1);
#pragma omp simd
      for (int64_t j = 0; j < s.C; ++j) {
        er[j] = k * (rm - row[j]);     // row: shifted by the row's largest logit -k rowmin
        ec[j] = k * (cm[j] - row[j]);  // column: shifted by the column's largest logit
      }
      exp_inplace(er, s.C);
      exp_inplace(ec, s.C);
      T rs = 0;
#pragma omp simd reduction(+ : rs)
      for (int64_t j = 0; j < s.C; ++j) {
        rs += er[j];
        csg[j] += ec[j];
      }
      rowlse[g * s.r_gstride + i] = std::log(rs) - k * rm;
    }
  });
  for (int64_t t = 0; t < csum.threads(); ++t) {
    const T* cs = csum.data.data() + t * csum.size;
    for (int64_t q = 0; q < csum.size; ++q) colsum[q] += cs[q];
  }
}

template <typename T>
void affinities(const T* d, const TileShape& s, T k, const T* half_row, const T* half_col, T floor_a, const T* w, T* A,
                int64_t a_gstride, double* entropy) {
  PerThread<double> ent(1, 0.0);
  at::parallel_for(0, s.gb * s.tn, grain(s), [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      const int64_t g = r / s.tn, i = r % s.tn;
      const T* row = d + g * s.d_gstride + i * s.C;
      const T* hc = half_col + g * s.C;
      const T* wg = w ? w + g * s.C : nullptr;
      const T hr = half_row[g * s.r_gstride + i];
      T* __restrict a = A + g * a_gstride + i * s.C;
      if constexpr (std::is_same_v<T, float>) {
#pragma omp simd
        for (int64_t j = 0; j < s.C; ++j) {
          const T v = exp_np((hr + hc[j]) - k * row[j]);
          a[j] = v > floor_a ? v : floor_a;  // floor_a = 0: no floor
        }
      } else {
        for (int64_t j = 0; j < s.C; ++j) a[j] = (hr + hc[j]) - k * row[j];
        exp_inplace(a, s.C);
        for (int64_t j = 0; j < s.C; ++j) a[j] = a[j] > floor_a ? a[j] : floor_a;
      }
      if (s.mask) a[s.self_col0 + i] = 0;
      if (entropy) {
        T sum = 0, xlogx = 0;
        for (int64_t j = 0; j < s.C; ++j) {
          sum += a[j];
          if (a[j] > 0) xlogx += a[j] * std::log(a[j]);
        }
        ent.mine()[0] += static_cast<double>(std::log(sum) - xlogx / sum);
      }
      if (wg) {
#pragma omp simd
        for (int64_t j = 0; j < s.C; ++j) a[j] *= wg[j];
      }
    }
  });
  if (entropy)
    for (int64_t t = 0; t < ent.threads(); ++t) *entropy += ent.data[static_cast<size_t>(t)];
}

// One row of patch sums: out[b] += sum_{k < q} f(row[b * q + k]) for b < w; Q > 0 is q known at
// compile time (the 2x2 and 4x4 patches: fully unrolled), Q = 0 any q.
template <int Q, typename T, typename F>
inline void patch_row_sums(const T* row, int64_t w, int64_t q, T* __restrict out, F f) {
  if constexpr (Q > 0) {
    for (int64_t b = 0; b < w; ++b) {
      T sum = 0;
      for (int k = 0; k < Q; ++k) sum += f(row[b * Q + k], b);
      out[b] += sum;
    }
  } else {
    for (int64_t b = 0; b < w; ++b) {
      T sum = 0;
#pragma omp simd reduction(+ : sum)
      for (int64_t k = 0; k < q; ++k) sum += f(row[b * q + k], b);
      out[b] += sum;
    }
  }
}

template <int Q, typename T>
void patch_stats_planes(const T* x, int64_t c0, int64_t c1, int64_t H, int64_t W, int64_t p, int64_t q, T eps,
                        T* mean, T* std) {
  const int64_t h = H / p, w = W / q;
  const T inv = T(1) / static_cast<T>(p * q);
  for (int64_t c = c0; c < c1; ++c) {
    const T* xc = x + c * H * W;
    for (int64_t a = 0; a < h; ++a) {
      T* __restrict ms = mean + (c * h + a) * w;
      T* __restrict ss = std + (c * h + a) * w;
      for (int64_t b = 0; b < w; ++b) ms[b] = 0, ss[b] = 0;
      // The row of patches [a*p, a*p + p) x [0, w*q): sums, then squared deviations.
      for (int64_t y = a * p; y < a * p + p; ++y)
        patch_row_sums<Q>(xc + y * W, w, q, ms, [](T v, int64_t) { return v; });
      for (int64_t b = 0; b < w; ++b) ms[b] *= inv;
      for (int64_t y = a * p; y < a * p + p; ++y)
        patch_row_sums<Q>(xc + y * W, w, q, ss, [ms](T v, int64_t b) {
          const T dv = v - ms[b];
          return dv * dv;
        });
      for (int64_t b = 0; b < w; ++b) ss[b] = std::sqrt(ss[b] * inv + eps);
    }
  }
}

template <typename T>
void patch_stats_forward(const T* x, int64_t planes, int64_t H, int64_t W, int64_t p, int64_t q, T eps, T* mean,
                         T* std) {
  at::parallel_for(0, planes, std::max<int64_t>(1, kEntriesPerChunk / std::max<int64_t>(H * W, 1)),
                   [&](int64_t c0, int64_t c1) {
    if (q == 2) patch_stats_planes<2>(x, c0, c1, H, W, p, q, eps, mean, std);
    else if (q == 4) patch_stats_planes<4>(x, c0, c1, H, W, p, q, eps, mean, std);
    else patch_stats_planes<0>(x, c0, c1, H, W, p, q, eps, mean, std);
  });
}

template <int Q, typename T>
void patch_stats_backward_planes(const T* x, int64_t c0, int64_t c1, int64_t H, int64_t W, int64_t p, int64_t q,
                                 const T* mean, const T* std, const T* g_mean, const T* g_std, T* grad_x) {
  const int64_t h = H / p, w = W / q;
  const int64_t qq = Q > 0 ? Q : q;
  const T inv = T(1) / static_cast<T>(p * q);
  T* __restrict cm = scratch_rows<T>(w, 0);  // per patch of the row: g_mean / n
  T* __restrict cs = scratch_rows<T>(w, 1);  // g_std / (n std)
  for (int64_t c = c0; c < c1; ++c) {
    for (int64_t a = 0; a < h; ++a) {
      const int64_t at = (c * h + a) * w;
      for (int64_t b = 0; b < w; ++b) {
        cm[b] = g_mean ? g_mean[at + b] * inv : T(0);
        cs[b] = g_std ? g_std[at + b] * inv / std[at + b] : T(0);
      }
      const T* m = mean + at;
      for (int64_t y = a * p; y < a * p + p; ++y) {
        const T* row = x + (c * H + y) * W;
        T* __restrict grow = grad_x + (c * H + y) * W;
        for (int64_t b = 0; b < w; ++b)
          for (int64_t k = 0; k < qq; ++k) grow[b * qq + k] = cm[b] + cs[b] * (row[b * qq + k] - m[b]);
        for (int64_t k = w * qq; k < W; ++k) grow[k] = 0;
      }
    }
    for (int64_t y = h * p; y < H; ++y)  // below the last whole row of patches
      for (int64_t k = 0; k < W; ++k) grad_x[(c * H + y) * W + k] = 0;
  }
}

template <typename T>
void patch_stats_backward(const T* x, int64_t planes, int64_t H, int64_t W, int64_t p, int64_t q, const T* mean,
                          const T* std, const T* g_mean, const T* g_std, T* grad_x) {
  at::parallel_for(0, planes, std::max<int64_t>(1, kEntriesPerChunk / std::max<int64_t>(H * W, 1)),
                   [&](int64_t c0, int64_t c1) {
    if (q == 2) patch_stats_backward_planes<2>(x, c0, c1, H, W, p, q, mean, std, g_mean, g_std, grad_x);
    else if (q == 4) patch_stats_backward_planes<4>(x, c0, c1, H, W, p, q, mean, std, g_mean, g_std, grad_x);
    else patch_stats_backward_planes<0>(x, c0, c1, H, W, p, q, mean, std, g_mean, g_std, grad_x);
  });
}

template <typename T>
void set_spread(const T* y, int64_t G, int64_t R, int64_t D, int64_t g_stride, double* out) {
  at::parallel_for(0, G, std::max<int64_t>(1, kEntriesPerChunk / std::max<int64_t>(R * D, 1)), [&](int64_t b, int64_t e) {
    T* __restrict mean = scratch_rows<T>(D, 0);
    for (int64_t g = b; g < e; ++g) {
      const T* yg = y + g * g_stride;
      for (int64_t k = 0; k < D; ++k) mean[k] = 0;
      for (int64_t i = 0; i < R; ++i) {
        const T* __restrict row = yg + i * D;
#pragma omp simd
        for (int64_t k = 0; k < D; ++k) mean[k] += row[k];
      }
      const T inv = T(1) / static_cast<T>(R);
      for (int64_t k = 0; k < D; ++k) mean[k] *= inv;
      double total = 0;
      for (int64_t i = 0; i < R; ++i) {
        const T* __restrict row = yg + i * D;
        T sq = 0;
#pragma omp simd reduction(+ : sq)
        for (int64_t k = 0; k < D; ++k) {
          const T dv = row[k] - mean[k];
          sq += dv * dv;
        }
        total += static_cast<double>(sq);
      }
      out[g] = total / static_cast<double>(R);
    }
  });
}

#ifndef DRIFTLAB_CPU_LOOPS
#define DRIFTLAB_CPU_LOOPS(T)                                                                                       \
  template void finish_distances<T>(T*, const TileShape&, const T*, const T*);                                    \
  template void direct_distances<T>(T*, const TileShape&, const T*, int64_t, const T*, int64_t);                   \
  template void weighted_sums<T>(const T*, const TileShape&, int64_t, const T*, int64_t, T*, int64_t, double*,     \
                                 double*);                                                                         \
  template void distance_stats<T>(const T*, const TileShape&, const T*, double*, double*, T*, T*, double*);       \
  template void row_col_sums<T>(const T*, const TileShape&, T, const T*, const T*, T*, T*);                       \
  template void affinities<T>(const T*, const TileShape&, T, const T*, const T*, T, const T*, T*, int64_t, double*); \
  template void patch_stats_forward<T>(const T*, int64_t, int64_t, int64_t, int64_t, int64_t, T, T*, T*);           \
  template void patch_stats_backward<T>(const T*, int64_t, int64_t, int64_t, int64_t, int64_t, const T*, const T*,  \
                                        const T*, const T*, T*);                                              \
  template void set_spread<T>(const T*, int64_t, int64_t, int64_t, int64_t, double*);
#endif
DRIFTLAB_CPU_LOOPS(float)
DRIFTLAB_CPU_LOOPS(double)

}  // namespace driftlab::drift::cpu::DRIFTLAB_CPU_LOOPS_NS
