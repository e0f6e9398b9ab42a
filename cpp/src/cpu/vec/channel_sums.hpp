// The channel-wise families' reductions (batch, group, instance norm), shared by their CPU
// kernels: the backward's per-plane sums, and the per-column moments and sums of a run of
// channels-last rows. Every order depends on the shape only (never on the thread count).
// Included by kernel files (compiled once per ISA).
#pragma once

#include <cstdint>
#include <cstring>

#include "common/row_index.hpp"
#include "cpu/vec/loops.hpp"
#include "cpu/vec/moments.hpp"
#include "cpu/vec/vec.hpp"

namespace normkit::cpu::NK_CPU_ISA {

// Elements of a channels-last chunk: the unit of its two-pass moments, which must stay in
// cache between the passes — 64 KB of float32, or 32 KB (in L1) for rows of at least
// kWideRow elements, whose tiles prefetch the next chunk (Note [Prefetch the next chunk]):
// on the 2026-12-02 AVX-512 machine [16384, 1024] ran at 80% of its 32 KB speed with 64 KB
// chunks and 55% with 16 KB; narrower rows (64, 512 channels) gain nothing from either and
// keep the 64 KB chunks.
constexpr int64_t kColumnChunk = 16384;
constexpr int64_t kWideRow = 1024;

// Σdy, Σdy·d and Σd (d = x − hi) over n contiguous elements; the order is fixed by n alone.
template <typename T, typename C>
NK_ALWAYS_INLINE void run_sums(const T* dy, const T* x, int64_t n, C hi, C& s_dy, C& s_dyd,
                               C& s_d) {
  using V = Vec<C>;
  constexpr int64_t L = V::size;
  const V vh = V::set1(hi);
  V a0 = V::zero(), a1 = V::zero(), b0 = V::zero(), b1 = V::zero(), c0 = V::zero(), c1 = V::zero();
  int64_t j = 0;
  for (; j + 2 * L <= n; j += 2 * L) {
    const V g0 = V::load(dy + j), g1 = V::load(dy + j + L);
    const V d0 = V::load(x + j) - vh, d1 = V::load(x + j + L) - vh;
    a0 = a0 + g0;
    a1 = a1 + g1;
    b0 = V::fmadd(g0, d0, b0);
    b1 = V::fmadd(g1, d1, b1);
    c0 = c0 + d0;
    c1 = c1 + d1;
  }
  for (; j + L <= n; j += L) {
    const V g = V::load(dy + j), d = V::load(x + j) - vh;
    a0 = a0 + g;
    b0 = V::fmadd(g, d, b0);
    c0 = c0 + d;
  }
  C sa = (a0 + a1).sum(), sb = (b0 + b1).sum(), sc = (c0 + c1).sum();
  for (; j < n; ++j) {
    const C g = C(to_compute(dy[j])), d = C(to_compute(x[j])) - hi;
    sa += g;
    sb += g * d;
    sc += d;
  }
  s_dy = sa, s_dyd = sb, s_d = sc;
}

// Note [Column tiles]: the per-column moments walk a chunk of rows one tile of K vectors
// of columns at a time, the tile's accumulators in registers across the rows (a row-by-row
// walk over all columns would load and store every accumulator once per element: the loop
// becomes store-bound at ~2.5x the read time). Every column's order is the rows in order,
// whatever the tile: the results do not depend on K or the ISA's vector width.

// Pass 1 and 2 of a chunk's moments for the columns [j0, j0 + K·L) (n < L for the last
// vector when `tail`): mean, Σ(x − mean), Σ(x − mean)² into t0, t1, t2.
template <typename T, typename C, int K>
NK_ALWAYS_INLINE void chunk_moments_tile(const T* X, const detail::RowIndex& idx, int64_t q0,
                                         int64_t q1, int64_t j0, int64_t last, C inv, C* t0,
                                         C* t1, C* t2) {
  using V = Vec<C>;
  constexpr int64_t L = V::size;
  V a[K];
  for (int k = 0; k < K; ++k) a[k] = V::zero();
  for (int64_t r = q0; r < q1; ++r) {
    const T* p = X + idx.offset(r) + j0;
    for (int k = 0; k < K; ++k) a[k] = a[k] + ld<T, V>(p + k * L, k == K - 1 ? last : L);
  }
  V s1[K], s2[K];
  for (int k = 0; k < K; ++k) a[k] = a[k] * V::set1(inv), s1[k] = V::zero(), s2[k] = V::zero();
  for (int64_t r = q0; r < q1; ++r) {
    const T* p = X + idx.offset(r) + j0;
    for (int k = 0; k < K; ++k) {
      const V d = ld<T, V>(p + k * L, k == K - 1 ? last : L) - a[k];
      s1[k] = s1[k] + d;
      s2[k] = V::fmadd(d, d, s2[k]);
    }
  }
  for (int k = 0; k < K; ++k) {
    const int64_t n = k == K - 1 ? last : L;
    st<C, V>(a[k], t0 + j0 + k * L, n, false);
    st<C, V>(s1[k], t1 + j0 + k * L, n, false);
    st<C, V>(s2[k], t2 + j0 + k * L, n, false);
  }
}

// Exact per-column moments of rows [ra, rb) of a channels-last array (row r at
// X + idx.offset(r), W channels): chunks of rows by two passes over the chunk (in cache,
// Note [Column tiles]), Chan-merged in order into mean[W], m2[W]. tmp: 3·W of the compute
// type.
template <typename T, typename C>
void column_moments(const T* X, const detail::RowIndex& idx, int64_t ra, int64_t rb, int64_t W,
                    C* tmp, double* mean, double* m2) {
  using V = Vec<C>;
  constexpr int64_t L = V::size;
  constexpr int K = 4;
  C* t0 = tmp;
  C* t1 = tmp + W;
  C* t2 = tmp + 2 * W;
  const bool wide = W >= kWideRow;
  const int64_t chunk = wide ? kColumnChunk / 2 : kColumnChunk;
  const int64_t R = W >= chunk ? 1 : chunk / W;
  // Note [Prefetch the next chunk]: a tile's pass 1 reads K vectors of each of the chunk's
  // rows, a row stride apart — short pieces the hardware prefetchers do not follow (the
  // reduction ran at half the read bandwidth). So while chunk q is walked tile by tile, each
  // full tile touches its share of chunk q + 1's lines in memory order, and the next chunk's
  // pass 1 finds them in cache.
  const int64_t tiles = wide ? W / (K * L) : 0;
  const int64_t lines_per_row = (W * int64_t(sizeof(T)) + 63) / 64;
  double count = 0;
  for (int64_t q0 = ra; q0 < rb; q0 += R) {
    const int64_t q1 = q0 + R < rb ? q0 + R : rb;
    const int64_t n1 = (q1 + R < rb ? q1 + R : rb) - q1;  // the next chunk's rows
    const int64_t share = tiles > 0 ? (n1 * lines_per_row + tiles - 1) / tiles : 0;
    const C inv = C(1) / C(q1 - q0);
    int64_t j0 = 0;
    for (int64_t tile = 0; j0 + K * L <= W; j0 += K * L, ++tile) {
      for (int64_t l = tile * share; l < (tile + 1) * share && l < n1 * lines_per_row; ++l) {
        const int64_t r = q1 + l / lines_per_row;
        prefetch(reinterpret_cast<const char*>(X + idx.offset(r)) + (l % lines_per_row) * 64);
      }
      chunk_moments_tile<T, C, K>(X, idx, q0, q1, j0, L, inv, t0, t1, t2);
    }
    for (; j0 < W; j0 += L)
      chunk_moments_tile<T, C, 1>(X, idx, q0, q1, j0, W - j0 < L ? W - j0 : L, inv, t0, t1, t2);
    // corrected_moments and merge_moments (common/row_norm_math.hpp) for every column, with
    // the chunk's divisions — the same for all its columns — taken once: a division per
    // column and chunk made this merge most of the time of a channels-last reduction.
    const double dn = double(q1 - q0), inv_dn = 1.0 / dn;
    const double wb = dn / (count + dn), wab = count * wb;
    for (int64_t j = 0; j < W; ++j) {
      const double m = double(t0[j]), d1 = double(t1[j]);
      double cmean = m + d1 * inv_dn;
      if (cmean != cmean) cmean = m;  // an infinite m: the mean is m (corrected_moments)
      double cm2 = double(t2[j]) - d1 * d1 * inv_dn;
      cm2 = cm2 < 0.0 ? 0.0 : cm2;
      if (count == 0) {
        mean[j] = cmean, m2[j] = cm2;
      } else {
        const double delta = cmean - mean[j];
        mean[j] += delta * wb;
        m2[j] += cm2 + delta * delta * wab;
      }
    }
    count += dn;
  }
}

// Per-column Σdy, Σdy·d, Σd (d = x − hi[j]) of rows [ra, rb) of channels-last dy and x, in
// the compute type, into t[0..3W) (overwritten). Rows are walked in order four at a time, each
// vector of accumulators loaded and stored once per four rows: the reads stay sequential
// streams (a column-tile walk, as column_moments', defeats the prefetchers here: dy and x do
// not stay in cache between tiles).
template <typename T, typename C>
void column_sums(const T* DY, const detail::RowIndex& dy_idx, const T* X,
                 const detail::RowIndex& x_idx, int64_t ra, int64_t rb, int64_t W, const C* hi,
                 C* t) {
  using V = Vec<C>;
  constexpr int64_t L = V::size;
  constexpr int kRows = 4;
  C* t0 = t;
  C* t1 = t + W;
  C* t2 = t + 2 * W;
  std::memset(static_cast<void*>(t), 0, sizeof(C) * size_t(3 * W));
  for (int64_t r0 = ra; r0 < rb; r0 += kRows) {
    const int nr = rb - r0 < kRows ? int(rb - r0) : kRows;
    const T* dyr[kRows];
    const T* xr[kRows];
    for (int k = 0; k < nr; ++k) dyr[k] = DY + dy_idx.offset(r0 + k), xr[k] = X + x_idx.offset(r0 + k);
    for (int64_t j = 0; j < W; j += L) {
      const int64_t n = W - j < L ? W - j : L;
      const V h = ld<C, V>(hi + j, n);
      V a = ld<C, V>(t0 + j, n), b = ld<C, V>(t1 + j, n), c = ld<C, V>(t2 + j, n);
      for (int k = 0; k < nr; ++k) {  // the rows in order
        const V g = ld<T, V>(dyr[k] + j, n), d = ld<T, V>(xr[k] + j, n) - h;
        a = a + g;
        b = V::fmadd(g, d, b);
        c = c + d;
      }
      st<C, V>(a, t0 + j, n, false);
      st<C, V>(b, t1 + j, n, false);
      st<C, V>(c, t2 + j, n, false);
    }
  }
}

}  // namespace normkit::cpu::NK_CPU_ISA
