// Spectral-norm CPU kernel (SPEC §10): the passes over W, written once against Vec<C> and
// compiled once per ISA; what they compute and how the dispatcher composes them is
// cpu/spectral_norm_prep.hpp and cpu/spectral_norm_dispatch.cpp.
//
// Note [One pass per power iteration]: torch's iteration u = normalize(W v),
// v = normalize(Wᵀu) reads W twice. But Wᵀ(W v) = Σ_r (W_r·v)·W_r: once row r's dot
// a_r = W_r·v is known, its share of Wᵀa is a_r·W_r, formed while the row is still in cache.
// So one read of W gives both products (Wᵀu = Wᵀa/‖a‖ follows), and σ = uᵀW v_new
// = ‖Wᵀu‖²/max(‖Wᵀu‖, eps) needs no further read: a training forward reads W twice (the
// iteration, then W/σ) where torch's parametrization reads it four times.
//
// Assumptions: validated (cpp/src/spectral_norm.cpp) and prepared: rows, cols >= 1; vectors
// are compute-type arrays. No static initializers in this file (it is compiled with ISA flags).
#include <cstdint>
#include <cstring>

#include "cpu/kernels.hpp"
#include "cpu/vec/loops.hpp"
#include "cpu/vec/vec.hpp"

namespace normkit::cpu::NK_CPU_ISA {
namespace {

using detail::SnProblem;

// Σ_j x[j]·y[j] over n elements, in an order fixed by n (four vector accumulators).
template <typename T, typename C>
NK_ALWAYS_INLINE C dot(const T* x, const C* y, int64_t n) {
  using V = Vec<C>;
  constexpr int64_t L = V::size;
  V s0 = V::zero(), s1 = V::zero(), s2 = V::zero(), s3 = V::zero();
  int64_t j = 0;
  for (; j + 4 * L <= n; j += 4 * L) {
    s0 = V::fmadd(ld<T, V>(x + j, L), V::load(y + j), s0);
    s1 = V::fmadd(ld<T, V>(x + j + L, L), V::load(y + j + L), s1);
    s2 = V::fmadd(ld<T, V>(x + j + 2 * L, L), V::load(y + j + 2 * L), s2);
    s3 = V::fmadd(ld<T, V>(x + j + 3 * L, L), V::load(y + j + 3 * L), s3);
  }
  for (; j < n; j += L) {
    const int64_t m = n - j < L ? n - j : L;
    s0 = V::fmadd(ld<T, V>(x + j, m), ld<C, V>(y + j, m), s0);
  }
  return ((s0 + s1) + (s2 + s3)).sum();
}

// Σ_j x[j]·y[j] for two arrays of T (the backward's ⟨dy, W⟩).
template <typename T, typename C>
NK_ALWAYS_INLINE C dot2(const T* x, const T* y, int64_t n) {
  using V = Vec<C>;
  constexpr int64_t L = V::size;
  V s0 = V::zero(), s1 = V::zero();
  int64_t j = 0;
  for (; j + 2 * L <= n; j += 2 * L) {
    s0 = V::fmadd(ld<T, V>(x + j, L), ld<T, V>(y + j, L), s0);
    s1 = V::fmadd(ld<T, V>(x + j + L, L), ld<T, V>(y + j + L, L), s1);
  }
  for (; j < n; j += L) {
    const int64_t m = n - j < L ? n - j : L;
    s0 = V::fmadd(ld<T, V>(x + j, m), ld<T, V>(y + j, m), s0);
  }
  return (s0 + s1).sum();
}

template <typename T>
void run(const SnProblem& p, const SnPass& s) {
  using C = compute_t<T>;
  using V = Vec<C>;
  constexpr int64_t L = V::size;
  const int64_t H = p.cols;
  const T* W = static_cast<const T*>(p.w);
  const C* v = static_cast<const C*>(s.v);
  C* a = static_cast<C*>(s.a);
  parallel_ranges(s.threads, s.nblocks, [&](int, int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t r0 = b * s.rows_per_block;
      const int64_t r1 = r0 + s.rows_per_block < p.rows ? r0 + s.rows_per_block : p.rows;
      switch (s.kind) {
        case SnPassKind::Power: {  // Note [One pass per power iteration]
          C* t = static_cast<C*>(s.partials) + b * H;
          std::memset(static_cast<void*>(t), 0, sizeof(C) * size_t(H));
          for (int64_t r = r0; r < r1; ++r) {
            const T* wr = W + r * p.w_ld;
            const C ar = dot<T, C>(wr, v, H);
            a[r] = ar;
            const V va = V::set1(ar);
            for (int64_t j = 0; j < H; j += L) {
              const int64_t m = H - j < L ? H - j : L;
              st<C, V>(V::fmadd(va, ld<T, V>(wr + j, m), ld<C, V>(t + j, m)), t + j, m, false);
            }
          }
          break;
        }
        case SnPassKind::RowDot:
          for (int64_t r = r0; r < r1; ++r) a[r] = dot<T, C>(W + r * p.w_ld, v, H);
          break;
        case SnPassKind::Scale: {
          T* O = static_cast<T*>(p.out);
          const V vk = V::set1(C(s.k));
          for (int64_t r = r0; r < r1; ++r) {
            const T* wr = W + r * p.w_ld;
            T* orow = O + r * p.out_ld;
            map_vectors<T, C>(H, orow, s.nontemporal, [&](int64_t j, int64_t n) NK_INLINE_LAMBDA {
              return ld<T, V>(wr + j, n) * vk;
            });
          }
          break;
        }
        case SnPassKind::Dot: {
          const T* DY = static_cast<const T*>(p.dy);
          double acc = 0.0;
          for (int64_t r = r0; r < r1; ++r)
            acc += double(dot2<T, C>(DY + r * p.dy_ld, W + r * p.w_ld, H));
          s.dots[b] = acc;
          break;
        }
        case SnPassKind::BackwardApply: {
          const T* DY = static_cast<const T*>(p.dy);
          T* DW = static_cast<T*>(p.dw);
          const C* u = static_cast<const C*>(s.u);
          const V vk = V::set1(C(s.k));
          for (int64_t r = r0; r < r1; ++r) {
            const T* dyr = DY + r * p.dy_ld;
            T* dwr = DW + r * p.dw_ld;
            const V c = V::set1(-C(s.k2) * u[r]);
            map_vectors<T, C>(H, dwr, s.nontemporal, [&](int64_t j, int64_t n) NK_INLINE_LAMBDA {
              return V::fmadd(ld<T, V>(dyr + j, n), vk, c * ld<C, V>(v + j, n));
            });
          }
          break;
        }
      }
    }
    if (s.nontemporal) stream_fence();  // Note [Fence on every thread]
  });
}

}  // namespace

void spectral_norm_pass(const SnProblem& p, const SnPass& s) {
  switch (p.dtype) {
    case DType::Float32: return run<float>(p, s);
    case DType::Float64: return run<double>(p, s);
    case DType::Float16: return run<half_t>(p, s);
    case DType::BFloat16: return run<bfloat16_t>(p, s);
  }
}

}  // namespace normkit::cpu::NK_CPU_ISA
