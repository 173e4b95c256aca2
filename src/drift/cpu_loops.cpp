// Fused CPU loops of the drift kernel (see cpu_loops.h): the loops of cpu_loops_impl.h built for
// the baseline instruction set and, on x86-64, again for AVX2 + FMA and for AVX-512; each float
// call takes the widest build the CPU has.
#include <cstdlib>
#include <type_traits>

#define DRIFTLAB_CPU_LOOPS_NS base
#define DRIFTLAB_CPU_LOOPS_VBYTES 16  // SSE2 registers
#include "drift/cpu_loops_impl.h"
#undef DRIFTLAB_CPU_LOOPS_NS
#undef DRIFTLAB_CPU_LOOPS_VBYTES

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define DRIFTLAB_CPU_LOOPS_AVX2 1
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#define DRIFTLAB_CPU_LOOPS_NS avx2
#define DRIFTLAB_CPU_LOOPS_VBYTES 32  // AVX2 registers
#include "drift/cpu_loops_impl.h"
#undef DRIFTLAB_CPU_LOOPS_NS
#undef DRIFTLAB_CPU_LOOPS_VBYTES
#pragma GCC pop_options

// AVX-512 (F, DQ, VL): 16 float lanes, 32 registers; 512-bit vectors preferred (GCC's generic
// tuning would keep 256).
#define DRIFTLAB_CPU_LOOPS_AVX512 1
#pragma GCC push_options
#pragma GCC target("avx512f,avx512dq,avx512vl,avx2,fma,prefer-vector-width=512")
#define DRIFTLAB_CPU_LOOPS_NS avx512
#define DRIFTLAB_CPU_LOOPS_VBYTES 64  // AVX-512 registers
#include "drift/cpu_loops_impl.h"
#undef DRIFTLAB_CPU_LOOPS_NS
#undef DRIFTLAB_CPU_LOOPS_VBYTES
#pragma GCC pop_options
#endif

namespace driftlab::drift::cpu {
namespace {

// The instruction set of the float loops: 2 AVX-512, 1 AVX2 + FMA, 0 the baseline. The variables
// DRIFTLAB_NO_AVX512=1 and DRIFTLAB_NO_AVX2=1 (which implies the first) force a lower one, to
// compare them.
int float_isa() {
#ifdef DRIFTLAB_CPU_LOOPS_AVX2
  static const int isa = [] {
    if (std::getenv("DRIFTLAB_NO_AVX2") || !__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) return 0;
    if (std::getenv("DRIFTLAB_NO_AVX512") || !__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512dq") ||
        !__builtin_cpu_supports("avx512vl"))
      return 1;
    return 2;
  }();
  return isa;
#else
  return 0;
#endif
}

}  // namespace

// float: the widest build the CPU has. double (tests, references) keeps the baseline build: no
// fused multiply-adds, so its rounding follows the plain formulas.
#ifdef DRIFTLAB_CPU_LOOPS_AVX2
#define DRIFTLAB_PICK(f, ...)                                                                   \
  (!std::is_same_v<T, float> ? base::f(__VA_ARGS__)                                              \
   : float_isa() == 2        ? avx512::f(__VA_ARGS__)                                            \
   : float_isa() == 1        ? avx2::f(__VA_ARGS__)                                              \
                             : base::f(__VA_ARGS__))
#else
#define DRIFTLAB_PICK(f, ...) base::f(__VA_ARGS__)
#endif

float exp_nonpositive(float x) {
  using T = float;
  return DRIFTLAB_PICK(exp_nonpositive, x);
}

template <typename T>
void finish_distances(T* d, const TileShape& s, const T* col_term, const T* row_term) {
  DRIFTLAB_PICK(finish_distances<T>, d, s, col_term, row_term);
}
template <typename T>
void direct_distances(T* d, const TileShape& s, const T* x, int64_t x_gstride, const T* yT, int64_t D) {
  DRIFTLAB_PICK(direct_distances<T>, d, s, x, x_gstride, yT, D);
}
template <typename T>
void weighted_sums(const T* A, const TileShape& s, int64_t a_gstride, const T* y, int64_t D, T* V, int64_t v_gstride,
                   double* sq, double* norm) {
  DRIFTLAB_PICK(weighted_sums<T>, A, s, a_gstride, y, D, V, v_gstride, sq, norm);
}
template <typename T>
void distance_stats(const T* d, const TileShape& s, const T* w, double* wd_sum, double* dmax, T* colmin, T* rowmin,
                    double* nn_sum) {
  DRIFTLAB_PICK(distance_stats<T>, d, s, w, wd_sum, dmax, colmin, rowmin, nn_sum);
}
template <typename T>
void row_col_sums(const T* d, const TileShape& s, T k, const T* rowmin, const T* colmin, T* rowlse, T* colsum) {
  DRIFTLAB_PICK(row_col_sums<T>, d, s, k, rowmin, colmin, rowlse, colsum);
}
template <typename T>
void affinities(const T* d, const TileShape& s, T k, const T* half_row, const T* half_col, T floor_a, const T* w, T* A,
                int64_t a_gstride, double* entropy) {
  DRIFTLAB_PICK(affinities<T>, d, s, k, half_row, half_col, floor_a, w, A, a_gstride, entropy);
}
template <typename T>
void patch_stats_forward(const T* x, int64_t planes, int64_t H, int64_t W, int64_t p, int64_t q, T eps, T* mean,
                         T* std) {
  DRIFTLAB_PICK(patch_stats_forward<T>, x, planes, H, W, p, q, eps, mean, std);
}
template <typename T>
void patch_stats_backward(const T* x, int64_t planes, int64_t H, int64_t W, int64_t p, int64_t q, const T* mean,
                          const T* std, const T* g_mean, const T* g_std, T* grad_x) {
  DRIFTLAB_PICK(patch_stats_backward<T>, x, planes, H, W, p, q, mean, std, g_mean, g_std, grad_x);
}
template <typename T>
void set_spread(const T* y, int64_t G, int64_t R, int64_t D, int64_t g_stride, double* out) {
  DRIFTLAB_PICK(set_spread<T>, y, G, R, D, g_stride, out);
}
#undef DRIFTLAB_PICK

DRIFTLAB_CPU_LOOPS(float)
DRIFTLAB_CPU_LOOPS(double)

}  // namespace driftlab::drift::cpu
