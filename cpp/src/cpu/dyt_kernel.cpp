// DyT CPU kernels (SPEC §6, forward and backward), written once against Vec<C> and compiled
// once per ISA; the math is common/dyt_math.hpp.
//
// Assumptions: the problem was validated (cpp/src/dyt.cpp) and prepared
// (cpu/dyt_dispatch.cpp): rows >= 1, width >= 1, each row is `width` contiguous elements at
// RowIndex::offset(r); weight/bias are [C] arrays of the compute type C or null.
// No static initializers in this file (it is compiled with ISA flags).
#include <cstdint>
#include <cstring>
#include <memory>

#include "common/dyt_math.hpp"
#include "cpu/kernels.hpp"
#include "cpu/vec/loops.hpp"
#include "cpu/vec/vec.hpp"

namespace normkit::cpu::NK_CPU_ISA {
namespace {

using detail::DytBackwardProblem;
using detail::DytProblem;

// ---------------------------------------------------------------------------------------
// Forward: y = γ·tanh(α·x) + β, one code path per element (Note [One code path per element]).
// ---------------------------------------------------------------------------------------

template <typename T, bool kW, bool kB, bool kNT>
void forward_impl(const DytProblem& p, const DytPrep& prep) {
  using C = compute_t<T>;
  using V = Vec<C>;
  const T* X = static_cast<const T*>(p.x);
  T* Y = static_cast<T*>(p.y);
  const C* w = static_cast<const C*>(prep.weight);
  const C* b = static_cast<const C*>(prep.bias);
  const V va = V::set1(C(prep.alpha));
  const int64_t W = p.width;
  parallel_ranges(prep.threads, p.rows, [&](int, int64_t r_begin, int64_t r_end) {
    for (int64_t r = r_begin; r < r_end; ++r) {
      const T* xr = X + p.x_idx.offset(r);
      T* yr = Y + p.y_idx.offset(r);
      if (p.per_row) {  // one channel per row: γ, β are broadcast
        const int64_t c = r % p.C;
        const V vw = V::set1(kW ? w[c] : C(1)), vb = V::set1(kB ? b[c] : C(0));
        map_vectors<T, C>(W, yr, kNT, [&](int64_t j, int64_t n) NK_INLINE_LAMBDA {
          return detail::dyt_forward<kB>(ld<T, V>(xr + j, n), va, vw, vb);
        });
      } else {  // channel = column
        map_vectors<T, C>(W, yr, kNT, [&](int64_t j, int64_t n) NK_INLINE_LAMBDA {
          const V vw = kW ? ld<C, V>(w + j, n) : V::set1(C(1));
          const V vb = kB ? ld<C, V>(b + j, n) : V::zero();
          return detail::dyt_forward<kB>(ld<T, V>(xr + j, n), va, vw, vb);
        });
      }
    }
    if constexpr (kNT) stream_fence();  // Note [Fence on every thread]
  });
}

template <typename T>
void forward_typed(const DytProblem& p, const DytPrep& prep) {
  const bool w = prep.weight != nullptr, b = prep.bias != nullptr;
#define NK_FWD(W, B) \
  (prep.nontemporal ? forward_impl<T, W, B, true>(p, prep) : forward_impl<T, W, B, false>(p, prep))
  if (w && b) NK_FWD(true, true);
  else if (w) NK_FWD(true, false);
  else if (b) NK_FWD(false, true);
  else NK_FWD(false, false);
#undef NK_FWD
}

// ---------------------------------------------------------------------------------------
// Backward
// ---------------------------------------------------------------------------------------

// The last step of every layout: from the per-channel sums A (kA), G, B (in C), the outputs.
// dα = Σ_c γ_c·A_c in double, channels in order (common/dyt_math.hpp).
template <typename C>
void store_dalpha(const DytBackwardProblem& p, const C* A, const C* w) {
  double s = 0.0;
  for (int64_t c = 0; c < p.C; ++c) s += double(w ? w[c] : C(1)) * double(A[c]);
  store_as(p.dalpha, p.alpha_dtype, 0, s);
}

// Channels last: block b of rows accumulates, row by row, A/G/B column partials
// (partials[b][k][C]); then the blocks are added in order (finish_column_sums).
template <typename T, bool kW, bool kNT>
void backward_columns(const DytBackwardProblem& p, const DytPrep& prep) {
  using C = compute_t<T>;
  using V = Vec<C>;
  const int64_t W = p.width;  // == C
  const T* DY = static_cast<const T*>(p.dy);
  const T* X = static_cast<const T*>(p.x);
  T* DX = static_cast<T*>(p.dx);
  const C* w = static_cast<const C*>(prep.weight);
  C* partials = static_cast<C*>(prep.partials);
  const detail::DytSums sums = detail::dyt_sums(p);
  const V va = V::set1(C(prep.alpha));
  parallel_ranges(prep.threads, prep.nblocks, [&](int, int64_t b_begin, int64_t b_end) {
    for (int64_t blk = b_begin; blk < b_end; ++blk) {
      C* base = partials ? partials + blk * prep.nacc * W : nullptr;
      if (base) std::memset(static_cast<void*>(base), 0, sizeof(C) * size_t(prep.nacc * W));
      C* pa = sums.a ? base : nullptr;
      C* pg = sums.g ? base + int(sums.a) * W : nullptr;
      C* pb = sums.b ? base + (int(sums.a) + int(sums.g)) * W : nullptr;
      const int64_t r0 = blk * prep.rows_per_block;
      const int64_t r1 = r0 + prep.rows_per_block < p.rows ? r0 + prep.rows_per_block : p.rows;
      for (int64_t r = r0; r < r1; ++r) {
        const T* dyr = DY + p.dy_idx.offset(r);
        const T* xr = X + p.x_idx.offset(r);
        T* dxr = DX + p.dx_idx.offset(r);
        struct Grad {
          V out, dy, a, t;  // dx, dy and the terms of the parameter partials
        };
        // The partials are added after dx is stored (map_vectors' `after`).
        map_vectors<T, C>(
            W, dxr, kNT,
            [&](int64_t j, int64_t n) NK_INLINE_LAMBDA {
              const V dy = ld<T, V>(dyr + j, n);  // both read before dx (it may alias either)
              const V x = ld<T, V>(xr + j, n);
              const auto g =
                  detail::dyt_backward(dy, x, va, kW ? ld<C, V>(w + j, n) : V::set1(C(1)));
              return Grad{g.dx, dy, g.a, g.t};
            },
            [&](int64_t j, int64_t n, const Grad& g) NK_INLINE_LAMBDA {
              if (pa) st<C, V>(ld<C, V>(pa + j, n) + g.a, pa + j, n, false);
              if (pg) st<C, V>(V::fmadd(g.dy, g.t, ld<C, V>(pg + j, n)), pg + j, n, false);
              if (pb) st<C, V>(ld<C, V>(pb + j, n) + g.dy, pb + j, n, false);
            });
      }
    }
    if constexpr (kNT) stream_fence();  // Note [Fence on every thread]
  });
  if (prep.nacc == 0) return;
  void* outs[3] = {};
  DType dts[3] = {};
  C* raw[3] = {};
  int k = 0;
  if (sums.a) raw[k++] = partials;  // A stays in C, in block 0's slot
  if (sums.g) outs[k] = p.dweight, dts[k++] = p.dweight_dtype;
  if (sums.b) outs[k] = p.dbias, dts[k++] = p.dbias_dtype;
  finish_column_sums<C>(partials, prep.nblocks, prep.nacc, W, outs, dts, raw, prep.threads);
  if (sums.a) store_dalpha<C>(p, partials, w);
}

// Channels first: each (n, c) plane's A/G/B are sums over its row, in a fixed vector order
// (plain loop, no alignment peel: the grouping of a sum must not depend on the address of
// dx); then per channel the planes n = 0, 1, ... are added in order.
template <typename T, bool kW>
void backward_planes(const DytBackwardProblem& p, const DytPrep& prep) {
  using C = compute_t<T>;
  using V = Vec<C>;
  constexpr int64_t L = V::size;
  const int64_t W = p.width;
  const T* DY = static_cast<const T*>(p.dy);
  const T* X = static_cast<const T*>(p.x);
  T* DX = static_cast<T*>(p.dx);
  const C* w = static_cast<const C*>(prep.weight);
  C* partials = static_cast<C*>(prep.partials);
  const detail::DytSums sums = detail::dyt_sums(p);
  const int nacc = prep.nacc;
  const V va = V::set1(C(prep.alpha));
  parallel_ranges(prep.threads, p.rows, [&](int, int64_t r_begin, int64_t r_end) {
  for (int64_t r = r_begin; r < r_end; ++r) {
    const int64_t c = r % p.C;
    const V vw = V::set1(kW ? w[c] : C(1));
    const T* dyr = DY + p.dy_idx.offset(r);
    const T* xr = X + p.x_idx.offset(r);
    T* dxr = DX + p.dx_idx.offset(r);
    V sa = V::zero(), sg = V::zero(), sb = V::zero();
    for (int64_t j = 0; j < W; j += L) {
      const int64_t n = W - j < L ? W - j : L;
      const V dy = ld<T, V>(dyr + j, n);  // padding lanes are 0: they add nothing
      const V x = ld<T, V>(xr + j, n);
      const auto g = detail::dyt_backward(dy, x, va, vw);
      st<T, V>(g.dx, dxr + j, n, false);
      sa = sa + g.a;
      sg = V::fmadd(dy, g.t, sg);
      sb = sb + dy;
    }
    if (nacc > 0) {
      C* out = partials + r * nacc;
      int k = 0;
      if (sums.a) out[k++] = sa.sum();
      if (sums.g) out[k++] = sg.sum();
      if (sums.b) out[k++] = sb.sum();
    }
  }
  });
  if (nacc == 0) return;
  // Per channel: Σ over n in order. A is kept in C in a small buffer for dα.
  const int64_t N = p.rows / p.C;
  std::unique_ptr<C[]> A(sums.a ? new C[size_t(p.C)] : nullptr);
  for (int64_t c = 0; c < p.C; ++c) {
    C s[3] = {C(0), C(0), C(0)};
    for (int64_t n = 0; n < N; ++n)
      for (int k = 0; k < nacc; ++k) s[k] += partials[(n * p.C + c) * nacc + k];
    int k = 0;
    if (sums.a) A[c] = s[k++];
    if (sums.g) store_as(p.dweight, p.dweight_dtype, c, s[k++]);
    if (sums.b) store_as(p.dbias, p.dbias_dtype, c, s[k++]);
  }
  if (sums.a) store_dalpha<C>(p, A.get(), w);
}

template <typename T>
void backward_typed(const DytBackwardProblem& p, const DytPrep& prep) {
  const bool w = prep.weight != nullptr;
  if (p.per_row) {
    if (w) backward_planes<T, true>(p, prep);
    else backward_planes<T, false>(p, prep);
    return;
  }
#define NK_BWD(W) \
  (prep.nontemporal ? backward_columns<T, W, true>(p, prep) : backward_columns<T, W, false>(p, prep))
  if (w) NK_BWD(true);
  else NK_BWD(false);
#undef NK_BWD
}

}  // namespace

void dyt_forward(const DytProblem& p, const DytPrep& prep) {
  switch (p.x_dtype) {
    case DType::Float32: return forward_typed<float>(p, prep);
    case DType::Float64: return forward_typed<double>(p, prep);
    case DType::Float16: return forward_typed<half_t>(p, prep);
    case DType::BFloat16: return forward_typed<bfloat16_t>(p, prep);
  }
}

void dyt_backward(const DytBackwardProblem& p, const DytPrep& prep) {
  switch (p.x_dtype) {
    case DType::Float32: return backward_typed<float>(p, prep);
    case DType::Float64: return backward_typed<double>(p, prep);
    case DType::Float16: return backward_typed<half_t>(p, prep);
    case DType::BFloat16: return backward_typed<bfloat16_t>(p, prep);
  }
}

}  // namespace normkit::cpu::NK_CPU_ISA
