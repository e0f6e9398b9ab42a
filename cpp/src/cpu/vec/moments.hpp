// The CPU kernels' shared statistics of contiguous runs (Notes [Variance by chunks] and
// [Corrected two-pass] in common/row_norm_math.hpp): sums in a fixed order that depends on
// the length only, and the exact moments of a run by chunked two-pass. Used by the row norms
// (a row) and the channel norms (a plane of a channel). Included by kernel files (compiled
// once per ISA).
#pragma once

#include <cstdint>
#include <type_traits>
#include <utility>

#include "common/row_norm_math.hpp"
#include "cpu/vec/vec.hpp"

namespace normkit::cpu::NK_CPU_ISA {

using detail::Moments;

// Note [Chunk size]: a chunk is the unit of the two-pass variance; it must stay in L1 between
// the two passes (4096 × 4 B = 16 KB of float32, 8 KB of 16-bit data).
template <typename T>
constexpr int64_t kChunk = sizeof(T) == 8 ? 2048 : 4096;

// Note [Reductions in any lane order]: the sums below see 2L consecutive values at a time;
// which accumulator lane a value lands in is free as long as it depends on n alone (the
// order stays fixed by the length, so a row's bits still depend on its data only). Where
// the ISA deinterleaves 16-bit data more cheaply than it widens it in order (AVX2 bf16:
// even and odd values from one load, Vec::load2_deinterleaved), the pair comes that way:
// the AVX2 bf16 statistics pass does 16 vector operations per 32 values instead of 20.
template <typename V, typename T, typename = void>
struct has_deinterleaved_load : std::false_type {};
template <typename V, typename T>
struct has_deinterleaved_load<
    V, T,
    std::void_t<decltype(V::load2_deinterleaved(std::declval<const T*>(), std::declval<V&>(),
                                                std::declval<V&>()))>> : std::true_type {};
template <typename T, typename V>
NK_ALWAYS_INLINE void load_pair_any_order(const T* p, V& a, V& b) {
  if constexpr (has_deinterleaved_load<V, T>::value) {
    V::load2_deinterleaved(p, a, b);
  } else {
    a = V::load(p);
    b = V::load(p + V::size);
  }
}

// Σ x over n elements with four independent accumulators (they hide the add latency; the
// order is fixed by n alone, so the result depends only on the data).
template <typename T, typename C>
NK_ALWAYS_INLINE C row_sum(const T* x, int64_t n) {
  using V = Vec<C>;
  constexpr int64_t L = V::size;
  V a0 = V::zero(), a1 = V::zero(), a2 = V::zero(), a3 = V::zero();
  int64_t j = 0;
  for (; j + 4 * L <= n; j += 4 * L) {
    V v0, v1, v2, v3;
    load_pair_any_order<T, V>(x + j, v0, v1);
    load_pair_any_order<T, V>(x + j + 2 * L, v2, v3);
    a0 = a0 + v0;
    a1 = a1 + v1;
    a2 = a2 + v2;
    a3 = a3 + v3;
  }
  for (; j + L <= n; j += L) a0 = a0 + V::load(x + j);
  C s = ((a0 + a1) + (a2 + a3)).sum();
  for (; j < n; ++j) s += C(to_compute(x[j]));
  return s;
}

// Σ (x − m)² over n elements.
template <typename T, typename C>
NK_ALWAYS_INLINE C row_sum_sq_dev(const T* x, int64_t n, C m) {
  using V = Vec<C>;
  constexpr int64_t L = V::size;
  const V vm = V::set1(m);
  V a0 = V::zero(), a1 = V::zero(), a2 = V::zero(), a3 = V::zero();
  int64_t j = 0;
  for (; j + 4 * L <= n; j += 4 * L) {
    V v0, v1, v2, v3;
    load_pair_any_order<T, V>(x + j, v0, v1);
    load_pair_any_order<T, V>(x + j + 2 * L, v2, v3);
    const V d0 = v0 - vm, d1 = v1 - vm, d2 = v2 - vm, d3 = v3 - vm;
    a0 = V::fmadd(d0, d0, a0);
    a1 = V::fmadd(d1, d1, a1);
    a2 = V::fmadd(d2, d2, a2);
    a3 = V::fmadd(d3, d3, a3);
  }
  for (; j + L <= n; j += L) {
    const V d = V::load(x + j) - vm;
    a0 = V::fmadd(d, d, a0);
  }
  C s = ((a0 + a1) + (a2 + a3)).sum();
  for (; j < n; ++j) {
    const C d = C(to_compute(x[j])) - m;
    s += d * d;
  }
  return s;
}

// Σ (x − m) and Σ (x − m)² over n elements, in one pass (Note [Corrected two-pass]).
template <typename T, typename C>
NK_ALWAYS_INLINE void row_dev_sums(const T* x, int64_t n, C m, C& s1_out, C& s2_out) {
  using V = Vec<C>;
  constexpr int64_t L = V::size;
  const V vm = V::set1(m);
  V a0 = V::zero(), a1 = V::zero(), q0 = V::zero(), q1 = V::zero();
  int64_t j = 0;
  for (; j + 2 * L <= n; j += 2 * L) {
    V v0, v1;
    load_pair_any_order<T, V>(x + j, v0, v1);
    const V d0 = v0 - vm, d1 = v1 - vm;
    a0 = a0 + d0;
    a1 = a1 + d1;
    q0 = V::fmadd(d0, d0, q0);
    q1 = V::fmadd(d1, d1, q1);
  }
  for (; j + L <= n; j += L) {
    const V d = V::load(x + j) - vm;
    a0 = a0 + d;
    q0 = V::fmadd(d, d, q0);
  }
  C s1 = (a0 + a1).sum(), s2 = (q0 + q1).sum();
  for (; j < n; ++j) {
    const C d = C(to_compute(x[j])) - m;
    s1 += d;
    s2 += d * d;
  }
  s1_out = s1;
  s2_out = s2;
}

// Σ (x − k) and Σ (x − k)² over n elements, in one pass with four independent pairs of
// accumulators (Note [Shifted one pass]); the order is fixed by n alone.
template <typename T, typename C>
NK_ALWAYS_INLINE void row_shifted_sums(const T* x, int64_t n, C k, C& s1_out, C& s2_out) {
  using V = Vec<C>;
  constexpr int64_t L = V::size;
  const V vk = V::set1(k);
  V a0 = V::zero(), a1 = V::zero(), a2 = V::zero(), a3 = V::zero();
  V q0 = V::zero(), q1 = V::zero(), q2 = V::zero(), q3 = V::zero();
  int64_t j = 0;
  for (; j + 4 * L <= n; j += 4 * L) {
    V v0, v1, v2, v3;
    load_pair_any_order<T, V>(x + j, v0, v1);
    load_pair_any_order<T, V>(x + j + 2 * L, v2, v3);
    const V d0 = v0 - vk, d1 = v1 - vk, d2 = v2 - vk, d3 = v3 - vk;
    a0 = a0 + d0;
    a1 = a1 + d1;
    a2 = a2 + d2;
    a3 = a3 + d3;
    q0 = V::fmadd(d0, d0, q0);
    q1 = V::fmadd(d1, d1, q1);
    q2 = V::fmadd(d2, d2, q2);
    q3 = V::fmadd(d3, d3, q3);
  }
  for (; j + L <= n; j += L) {
    const V d = V::load(x + j) - vk;
    a0 = a0 + d;
    q0 = V::fmadd(d, d, q0);
  }
  C s1 = ((a0 + a1) + (a2 + a3)).sum(), s2 = ((q0 + q1) + (q2 + q3)).sum();
  for (; j < n; ++j) {
    const C d = C(to_compute(x[j])) - k;
    s1 += d;
    s2 += d * d;
  }
  s1_out = s1;
  s2_out = s2;
}

// The shift of Note [Shifted one pass]: the mean of up to 16 elements spread evenly over the
// run (a ramp or a block structure along the row does not fool it as its first elements
// would).
template <typename T, typename C>
NK_ALWAYS_INLINE C sample_shift(const T* x, int64_t n) {
  // step = n / cnt without a 64-bit division (tens of cycles, once per chunk).
  const int64_t cnt = n < 16 ? n : 16, step = n < 16 ? 1 : n >> 4;
  C s = C(0);
  for (int64_t i = 0; i < cnt; ++i) s += C(to_compute(x[i * step]));
  return s / C(cnt);
}

// Note [Shifted one pass]: the chunk's moments in ONE pass over the data, from the sums of
// d = x − k for a shift k near the mean (sample_shift): mean = k + Σd/n and
// M2 = Σd² − (Σd)²/n (corrected_moments with m = k). The subtraction loses nothing that
// matters while the shift is within one standard deviation of the mean, (Σd)²/n ≤ Σd²/2:
// M2 is then at least half of Σd², so its relative error is at most twice that of the sum
// Σd² itself — the accuracy of the two-pass formula (Note [Corrected two-pass]), which is the
// same formula with k = the pass-1 mean. A chunk whose shift misses (a few in a million for
// Gaussian data; rows with a single huge outlier), or whose sums are not finite, is done by
// the two passes instead, so Inf and NaN rows behave exactly as before. The choice depends on
// the data only: a row's bits still never depend on the batch, the threads or the alignment.
// This saves a pass over L1 per chunk: the forward of a [4096, 4096] float32 layer norm goes
// from about 76% to 94% of a same-run non-temporal copy on two threads (cpu lab, issue 11).
template <typename T, typename C>
NK_ALWAYS_INLINE Moments<double> chunk_moments(const T* x, int64_t n) {
  const C k = sample_shift<T, C>(x, n);
  C s1, s2;
  row_shifted_sums<T, C>(x, n, k, s1, s2);
  const double d1 = double(s1), d2 = double(s2);
  if (d1 * d1 <= 0.5 * d2 * double(n)) return detail::corrected_moments<C>(n, k, s1, s2);
  // The two passes: NaN sums, infinite ones, and shifts more than a deviation off.
  const C m = row_sum<T, C>(x, n) / C(n);
  row_dev_sums<T, C>(x, n, m, s1, s2);
  return detail::corrected_moments<C>(n, m, s1, s2);
}

// Mean and M2 = Σ(x − mean)² of a row (Notes [Variance by chunks], [Shifted one pass]).
template <typename T, typename C>
void layer_stats(const T* x, int64_t H, double& mean, double& m2) {
  Moments<double> acc{0.0, 0.0, 0.0};
  for (int64_t j0 = 0; j0 < H; j0 += kChunk<T>) {
    const int64_t n = H - j0 < kChunk<T> ? H - j0 : kChunk<T>;
    acc = detail::merge_moments(acc, chunk_moments<T, C>(x + j0, n));
  }
  mean = acc.mean;
  m2 = acc.m2;
}

}  // namespace normkit::cpu::NK_CPU_ISA
