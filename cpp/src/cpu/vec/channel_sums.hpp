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

// Rows of a channels-last chunk: the unit of its two-pass moments, ~64 KB of float32 (it
// must stay in cache between the passes; the per-column merge is amortized over its rows).
constexpr int64_t kColumnChunk = 16384;

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

// Exact per-column moments of rows [ra, rb) of a channels-last array (row r at
// X + idx.offset(r), W channels): chunks of rows by two passes over the chunk (in cache),
// Chan-merged in order into mean[W], m2[W]. tmp: 3·W of the compute type.
template <typename T, typename C>
void column_moments(const T* X, const detail::RowIndex& idx, int64_t ra, int64_t rb, int64_t W,
                    C* tmp, double* mean, double* m2) {
  using V = Vec<C>;
  constexpr int64_t L = V::size;
  C* t0 = tmp;
  C* t1 = tmp + W;
  C* t2 = tmp + 2 * W;
  const int64_t R = W >= kColumnChunk ? 1 : kColumnChunk / W;
  double count = 0;
  for (int64_t q0 = ra; q0 < rb; q0 += R) {
    const int64_t q1 = q0 + R < rb ? q0 + R : rb;
    const C inv = C(1) / C(q1 - q0);
    std::memset(static_cast<void*>(t0), 0, sizeof(C) * size_t(W));
    for (int64_t r = q0; r < q1; ++r) {
      const T* xr = X + idx.offset(r);
      for (int64_t j = 0; j < W; j += L) {
        const int64_t n = W - j < L ? W - j : L;
        st<C, V>(ld<C, V>(t0 + j, n) + ld<T, V>(xr + j, n), t0 + j, n, false);
      }
    }
    for (int64_t j = 0; j < W; j += L) {  // the chunk's column means
      const int64_t n = W - j < L ? W - j : L;
      st<C, V>(ld<C, V>(t0 + j, n) * V::set1(inv), t0 + j, n, false);
    }
    std::memset(static_cast<void*>(t1), 0, sizeof(C) * size_t(2 * W));
    for (int64_t r = q0; r < q1; ++r) {
      const T* xr = X + idx.offset(r);
      for (int64_t j = 0; j < W; j += L) {
        const int64_t n = W - j < L ? W - j : L;
        const V d = ld<T, V>(xr + j, n) - ld<C, V>(t0 + j, n);
        st<C, V>(ld<C, V>(t1 + j, n) + d, t1 + j, n, false);
        st<C, V>(V::fmadd(d, d, ld<C, V>(t2 + j, n)), t2 + j, n, false);
      }
    }
    const int64_t rows = q1 - q0;
    for (int64_t j = 0; j < W; ++j) {
      const detail::Moments<double> cm = detail::corrected_moments<C>(rows, t0[j], t1[j], t2[j]);
      const detail::Moments<double> acc =
          count == 0 ? cm : detail::merge_moments(detail::Moments<double>{count, mean[j], m2[j]}, cm);
      mean[j] = acc.mean, m2[j] = acc.m2;
    }
    count += double(rows);
  }
}

// Per-column Σdy, Σdy·d, Σd (d = x − hi[j]) of rows [ra, rb) of channels-last dy and x, in
// the compute type, into t[0..3W) (overwritten).
template <typename T, typename C>
void column_sums(const T* DY, const detail::RowIndex& dy_idx, const T* X,
                 const detail::RowIndex& x_idx, int64_t ra, int64_t rb, int64_t W, const C* hi,
                 C* t) {
  using V = Vec<C>;
  constexpr int64_t L = V::size;
  C* t0 = t;
  C* t1 = t + W;
  C* t2 = t + 2 * W;
  std::memset(static_cast<void*>(t), 0, sizeof(C) * size_t(3 * W));
  for (int64_t r = ra; r < rb; ++r) {
    const T* dyr = DY + dy_idx.offset(r);
    const T* xr = X + x_idx.offset(r);
    for (int64_t j = 0; j < W; j += L) {
      const int64_t n = W - j < L ? W - j : L;
      const V g = ld<T, V>(dyr + j, n), d = ld<T, V>(xr + j, n) - ld<C, V>(hi + j, n);
      st<C, V>(ld<C, V>(t0 + j, n) + g, t0 + j, n, false);
      st<C, V>(V::fmadd(g, d, ld<C, V>(t1 + j, n)), t1 + j, n, false);
      st<C, V>(ld<C, V>(t2 + j, n) + d, t2 + j, n, false);
    }
  }
}

}  // namespace normkit::cpu::NK_CPU_ISA
