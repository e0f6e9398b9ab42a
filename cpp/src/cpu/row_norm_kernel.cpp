// Row-norm CPU kernels (layer norm, RMS norm, fused add + norm, AdaNorm; forward and backward),
// written once against Vec<C> and compiled once per ISA (see vec/vec.hpp).
//
// Assumptions: the problem was validated (cpp/src/row_norm.cpp) and prepared
// (cpu/dispatch.cpp): rows >= 1, H >= 1, every row of x/y/residual/... is H contiguous
// elements at RowIndex::offset(r); parameters are [H] arrays of the compute type C.
// No static initializers in this file (it is compiled with ISA flags).
#include <cstdint>
#include <algorithm>
#include <cstring>
#include <memory>

#include "common/row_norm_math.hpp"
#include "cpu/kernels.hpp"
#include "cpu/vec/moments.hpp"
#include "cpu/vec/loops.hpp"
#include "cpu/vec/vec.hpp"



namespace normkit::cpu::NK_CPU_ISA {
namespace {

using detail::Moments;
using detail::RowNormBackwardProblem;
using detail::RowNormProblem;

// mean(x²): sums of squares are well conditioned (all terms positive), one pass.
template <typename T, typename C>
C rms_mean_sq(const T* x, int64_t H) {
  return row_sum_sq_dev<T, C>(x, H, C(0)) / C(H);
}

// y = ((x − mean_hi) − mean_lo)·rstd·w + b over one row (norm_affine, in vector form), or
// x·rstd·w + b for RMS norm (kCentered false; its mean is zero), or AdaNorm's (a + nb·x̂)·x̂
// (kAda); streaming stores when kNT.
template <typename T, typename C, bool kCentered, bool kAda, bool kW, bool kB, bool kNT>
NK_ALWAYS_INLINE void normalize_row(const T* x, T* y, int64_t H, detail::SplitMean<C> mean,
                                    C rstd, const C* NK_RESTRICT w, const C* NK_RESTRICT b,
                                    detail::AdaCoeffs<C> ada, const T* next_x) {
  using V = Vec<C>;
  const V vm = V::set1(mean.hi), vl = V::set1(mean.lo), vr = V::set1(rstd);
  const V va = V::set1(ada.a), vnb = V::set1(ada.nb);
  // Note [Walk away from aliased stores] (loops.hpp).
  map_vectors<T, C>(H, y, kNT, walk_for(kNT, y, x), [&](int64_t j, int64_t n) NK_INLINE_LAMBDA {
    prefetch(next_x ? next_x + j : nullptr);
    V t;
    if constexpr (kCentered) {
      t = ((ld<T, V>(x + j, n) - vm) - vl) * vr;
    } else {
      t = ld<T, V>(x + j, n) * vr;
    }
    if constexpr (kAda) {
      t = detail::ada_phi(t, va, vnb) * t;
    } else if constexpr (kW && kB) {
      t = V::fmadd(t, ld<C, V>(w + j, n), ld<C, V>(b + j, n));
    } else if constexpr (kW) {
      t = t * ld<C, V>(w + j, n);
    } else if constexpr (kB) {
      t = t + ld<C, V>(b + j, n);
    }
    return t;
  }, [](int64_t, int64_t, const V&) NK_INLINE_LAMBDA {});
}

// s = (x + x_bias) + scale·r, rounded to T (the stored residual stream is what gets
// normalized).
template <typename T, typename C>
void add_row(const T* x, const T* r, const C* NK_RESTRICT xb, C scale, T* s, int64_t H) {
  using V = Vec<C>;
  const V vs = V::set1(scale);
  map_vectors<T, C>(H, s, false, [&](int64_t j, int64_t n) NK_INLINE_LAMBDA {
    V v = ld<T, V>(x + j, n);
    if (xb) v = v + ld<C, V>(xb + j, n);
    return V::fmadd(vs, ld<T, V>(r + j, n), v);
  });
}

template <typename T, NormKind K, bool kW, bool kB, bool kNT>
void forward_impl(const RowNormProblem& p, const ForwardPrep& prep) {
  using C = compute_t<T>;
  const int64_t H = p.H;
  const T* X = static_cast<const T*>(p.x);
  const T* R = static_cast<const T*>(p.residual);
  T* Y = static_cast<T*>(p.y);
  T* S = static_cast<T*>(p.residual_out);
  const C* w = static_cast<const C*>(prep.weight);
  const C* b = static_cast<const C*>(prep.bias);
  const C* xb = static_cast<const C*>(prep.x_bias);
  C* mean_out = static_cast<C*>(p.mean);
  C* rstd_out = static_cast<C*>(p.rstd);
  const C eps = C(p.eps), scale = C(p.residual_scale);
  const detail::AdaCoeffs<C> ada = detail::ada_coeffs<C>(p.ada_k, p.ada_scale);
  const bool need_scratch = R != nullptr && S == nullptr;

  // Without residual_out, s lives in a per-thread row (it must still be rounded to T). One
  // allocation for all threads, made here: a bad_alloc inside a parallel region would
  // terminate the process instead of reaching the caller.
  std::unique_ptr<T[]> scratch_all(
      need_scratch ? new T[size_t(H) * size_t(prep.threads > 1 ? prep.threads : 1)] : nullptr);
  const int64_t pf = prefetch_rows<T>(H);
  parallel_ranges(prep.threads, p.rows, [&](int thread, int64_t r_begin, int64_t r_end) {
    T* const scratch = need_scratch ? scratch_all.get() + size_t(H) * size_t(thread) : nullptr;
    for (int64_t r = r_begin; r < r_end; ++r) {
      const T* xr = X + p.x_idx.offset(r);
      // Note [Prefetch the next row]: the input that pass 1 of a row ahead reads first.
      const int64_t rn = r + pf;
      const T* next = rn < r_end ? (R ? R + p.r_idx.offset(rn) : X + p.x_idx.offset(rn))
                                 : nullptr;
      if (R) {
        T* s = S ? S + p.s_idx.offset(r) : scratch;
        add_row<T, C>(xr, R + p.r_idx.offset(r), xb, scale, s, H);
        xr = s;
      }
      detail::SplitMean<C> mean{C(0), C(0)};
      C rstd;
      if constexpr (K == NormKind::RMS) {
        rstd = detail::inv_std<C>(rms_mean_sq<T, C>(xr, H), eps);
      } else {
        double mean_d, m2_d;
        layer_stats<T, C>(xr, H, mean_d, m2_d);
        mean = detail::split_mean<C>(mean_d);
        rstd = K == NormKind::Ada ? detail::ada_inv_std<C>(C(m2_d / double(H - 1)), eps)
                                  : detail::inv_std<C>(C(m2_d / double(H)), eps);
      }
      if (mean_out) mean_out[r] = mean.hi;
      if (rstd_out) rstd_out[r] = rstd;
      normalize_row<T, C, K != NormKind::RMS, K == NormKind::Ada, kW, kB, kNT>(
          xr, Y + p.y_idx.offset(r), H, mean, rstd, w, b, ada, next);
    }
    if constexpr (kNT) stream_fence();  // Note [Fence on every thread]
  });
}

template <typename T, NormKind K>
void forward_dispatch_flags(const RowNormProblem& p, const ForwardPrep& prep) {
  const bool w = prep.weight != nullptr, b = prep.bias != nullptr;
#define NK_FWD(W, B)                                                        \
  (prep.nontemporal ? forward_impl<T, K, W, B, true>(p, prep)               \
                    : forward_impl<T, K, W, B, false>(p, prep))
  if constexpr (K == NormKind::Ada) NK_FWD(false, false);  // AdaNorm has no parameters
  else if (w && b) NK_FWD(true, true);
  else if (w) NK_FWD(true, false);
  else if (b) NK_FWD(false, true);
  else NK_FWD(false, false);
#undef NK_FWD
}

template <typename T>
void forward_typed(const RowNormProblem& p, const ForwardPrep& prep) {
  switch (p.kind) {
    case NormKind::Layer: return forward_dispatch_flags<T, NormKind::Layer>(p, prep);
    case NormKind::RMS: return forward_dispatch_flags<T, NormKind::RMS>(p, prep);
    case NormKind::Ada: return forward_dispatch_flags<T, NormKind::Ada>(p, prep);
  }
}

// ---------------------------------------------------------------------------------------
// Backward
// ---------------------------------------------------------------------------------------

// Pass 1 of AdaNorm's backward over one row: the five sums of Note [AdaNorm backward]
// (row_norm_math.hpp), over e = x − mean.
template <typename T, typename C>
NK_ALWAYS_INLINE detail::AdaSums<C> ada_row_sums(const T* dy, const T* x, int64_t H, C mean) {
  using V = Vec<C>;
  constexpr int64_t L = V::size;
  const V vm = V::set1(mean);
  V se = V::zero(), se2 = V::zero(), sdy = V::zero(), sde = V::zero(), sde2 = V::zero();
  int64_t j = 0;
  for (; j + L <= H; j += L) {
    const V d = V::load(dy + j);
    const V e = V::load(x + j) - vm;
    const V de = d * e;
    se = se + e;
    se2 = V::fmadd(e, e, se2);
    sdy = sdy + d;
    sde = sde + de;
    sde2 = V::fmadd(de, e, sde2);
  }
  detail::AdaSums<C> s{se.sum(), se2.sum(), sdy.sum(), sde.sum(), sde2.sum()};
  for (; j < H; ++j) {
    const C d = C(to_compute(dy[j]));
    const C e = C(to_compute(x[j])) - mean;
    s.e += e;
    s.e2 += e * e;
    s.dy += d;
    s.dye += d * e;
    s.dye2 += d * e * e;
  }
  return s;
}

// One row of the backward (math in row_norm_math.hpp: norm_dx, backward_terms,
// ada_backward_terms). Pass 1 forms, with d = x − mean: Σd (the mean correction r, Note
// [Corrected two-pass]), Σg and Σg·d, from which mean(g) and mean(g·x̂) (AdaNorm: the sums
// of Note [AdaNorm backward]). Pass 2 writes dx (+ ds) and scale·dx, and adds dy·x̂, dy and
// dx into the block's parameter partials.
template <typename T, NormKind K, bool kW, bool kNT>
NK_ALWAYS_INLINE void backward_row(const T* dy, const T* x, const T* ds, T* dx, T* dr, int64_t H,
                                   compute_t<T> mean, compute_t<T> rstd,
                                   const compute_t<T>* NK_RESTRICT w, compute_t<T>* pdw,
                                   compute_t<T>* pdb, compute_t<T>* pdxb, compute_t<T> scale,
                                   detail::AdaCoeffs<compute_t<T>> ada, const T* next_dy,
                                   const T* next_x) {
  using C = compute_t<T>;
  using V = Vec<C>;
  constexpr int64_t L = V::size;
  constexpr bool kRMS = K == NormKind::RMS, kAda = K == NormKind::Ada;
  const V vm = V::set1(mean);
  detail::BackwardTerms<C> t;
  if constexpr (kAda) {
    t = detail::ada_backward_terms<C>(ada_row_sums<T, C>(dy, x, H, mean), H, rstd, ada);
  } else {
    V sd0 = V::zero(), sd1 = V::zero(), sg0 = V::zero(), sg1 = V::zero();
    V sx0 = V::zero(), sx1 = V::zero();
    int64_t j = 0;
    for (; j + 2 * L <= H; j += 2 * L) {
      const V d0 = V::load(dy + j), d1 = V::load(dy + j + L);
      const V e0 = V::load(x + j) - vm, e1 = V::load(x + j + L) - vm;
      V g0 = d0, g1 = d1;
      if constexpr (kW) {
        g0 = d0 * V::load(w + j);
        g1 = d1 * V::load(w + j + L);
      }
      if constexpr (!kRMS) {
        sd0 = sd0 + e0;
        sd1 = sd1 + e1;
        sg0 = sg0 + g0;
        sg1 = sg1 + g1;
      }
      sx0 = V::fmadd(g0, e0, sx0);
      sx1 = V::fmadd(g1, e1, sx1);
    }
    C sd = (sd0 + sd1).sum(), sg = (sg0 + sg1).sum(), sgd = (sx0 + sx1).sum();
    for (; j < H; ++j) {
      const C d = C(to_compute(dy[j]));
      const C e = C(to_compute(x[j])) - mean;
      const C g = kW ? d * w[j] : d;
      if constexpr (!kRMS) {
        sd += e;
        sg += g;
      }
      sgd += g * e;
    }
    t = detail::backward_terms<C>(sd, sg, sgd, H, rstd, kRMS);
  }

  const V vc = V::set1(t.corr), vr = V::set1(rstd);
  const V vmg = V::set1(t.mean_g), vmgx = V::set1(t.mean_gx), vs = V::set1(scale);
  const V va = V::set1(ada.a), vnb = V::set1(ada.nb);
  struct Pass2 {
    V out, d, h;  // dx, dy, x̂
  };
  map_vectors<T, C>(
      H, dx, kNT, walk_for(kNT, dx, dy, x),  // Note [Walk away from aliased stores]
      [&](int64_t k, int64_t n) NK_INLINE_LAMBDA {
        prefetch(next_dy ? next_dy + k : nullptr);  // Note [Prefetch the next row]
        prefetch(next_x ? next_x + k : nullptr);
        const V d = ld<T, V>(dy + k, n);
        const V h = ((ld<T, V>(x + k, n) - vm) - vc) * vr;
        V g = d;
        if constexpr (kAda) g = d * detail::ada_phi(h, va, vnb);
        else if constexpr (kW) g = d * ld<C, V>(w + k, n);
        V v = detail::norm_dx(vr, g, vmg, h, vmgx);
        if (ds) v = v + ld<T, V>(ds + k, n);
        return Pass2{v, d, h};
      },
      [&](int64_t k, int64_t n, const Pass2& r) NK_INLINE_LAMBDA {
        if (dr) st<T, V>(vs * r.out, dr + k, n, false);
        if (pdw) st<C, V>(V::fmadd(r.d, r.h, ld<C, V>(pdw + k, n)), pdw + k, n, false);
        if (pdb) st<C, V>(ld<C, V>(pdb + k, n) + r.d, pdb + k, n, false);
        if (pdxb) st<C, V>(ld<C, V>(pdxb + k, n) + r.out, pdxb + k, n, false);
      });
}

template <typename T, NormKind K, bool kW, bool kNT>
void backward_impl(const RowNormBackwardProblem& p, const BackwardPrep& prep) {
  using C = compute_t<T>;
  const int64_t H = p.H;
  const T* DY = static_cast<const T*>(p.dy);
  const T* DS = static_cast<const T*>(p.ds);
  const T* X = static_cast<const T*>(p.x);
  T* DX = static_cast<T*>(p.dx);
  T* DR = static_cast<T*>(p.dresidual);
  const C* mean = static_cast<const C*>(p.mean);
  const C* rstd = static_cast<const C*>(p.rstd);
  const C* w = static_cast<const C*>(prep.weight);
  C* partials = static_cast<C*>(prep.partials);
  const C scale = C(p.residual_scale);
  const detail::AdaCoeffs<C> ada = detail::ada_coeffs<C>(p.ada_k, p.ada_scale);
  const int has_dw = p.dweight != nullptr, has_db = p.dbias != nullptr;
  const int has_dxb = p.dx_bias != nullptr;

  const int64_t pf = prefetch_rows<T>(H);
  parallel_ranges(prep.threads, prep.nblocks, [&](int, int64_t b_begin, int64_t b_end) {
  // This thread's rows end here: the prefetch runs on into its next block.
  const int64_t r_last = std::min<int64_t>(b_end * prep.rows_per_block, p.rows);
  for (int64_t blk = b_begin; blk < b_end; ++blk) {
    C* base = partials ? partials + blk * prep.nacc * H : nullptr;
    if (base) std::memset(static_cast<void*>(base), 0, sizeof(C) * size_t(prep.nacc * H));
    C* pdw = has_dw ? base : nullptr;
    C* pdb = has_db ? base + has_dw * H : nullptr;
    C* pdxb = has_dxb ? base + (has_dw + has_db) * H : nullptr;
    const int64_t r0 = blk * prep.rows_per_block;
    const int64_t r1 = r0 + prep.rows_per_block < p.rows ? r0 + prep.rows_per_block : p.rows;
    for (int64_t r = r0; r < r1; ++r) {
      backward_row<T, K, kW, kNT>(DY + p.dy_idx.offset(r), X + p.x_idx.offset(r),
                                  DS ? DS + p.ds_idx.offset(r) : nullptr,
                                  DX + p.dx_idx.offset(r), DR ? DR + p.dr_idx.offset(r) : nullptr,
                                  H, K == NormKind::RMS ? C(0) : mean[r], rstd[r], w, pdw, pdb,
                                  pdxb, scale, ada,
                                  r + pf < r_last ? DY + p.dy_idx.offset(r + pf) : nullptr,
                                  r + pf < r_last ? X + p.x_idx.offset(r + pf) : nullptr);
    }
  }
  // Note [Fence on every thread]: a store fence orders the streaming stores of the thread
  // that issues it only; each thread fences its own before the region ends.
  if constexpr (kNT) stream_fence();
  });

  if (prep.nacc == 0) return;
  // Second pass: add the blocks' partials in block order, column by column.
  void* outs[3];
  DType dts[3];
  int k = 0;
  if (has_dw) outs[k] = p.dweight, dts[k++] = p.dweight_dtype;
  if (has_db) outs[k] = p.dbias, dts[k++] = p.dbias_dtype;
  if (has_dxb) outs[k] = p.dx_bias, dts[k++] = p.dx_bias_dtype;
  finish_column_sums<C>(partials, prep.nblocks, prep.nacc, H, outs, dts, nullptr, prep.threads);
}

template <typename T>
void backward_typed(const RowNormBackwardProblem& p, const BackwardPrep& prep) {
  const bool w = prep.weight != nullptr;
#define NK_BWD(K, W)                                                         \
  (prep.nontemporal ? backward_impl<T, K, W, true>(p, prep)                  \
                    : backward_impl<T, K, W, false>(p, prep))
  switch (p.kind) {
    case NormKind::Layer:
      if (w) NK_BWD(NormKind::Layer, true);
      else NK_BWD(NormKind::Layer, false);
      return;
    case NormKind::RMS:
      if (w) NK_BWD(NormKind::RMS, true);
      else NK_BWD(NormKind::RMS, false);
      return;
    case NormKind::Ada: NK_BWD(NormKind::Ada, false); return;  // no parameters
  }
#undef NK_BWD
}

}  // namespace

void row_norm_forward(const RowNormProblem& p, const ForwardPrep& prep) {
  switch (p.x_dtype) {
    case DType::Float32: return forward_typed<float>(p, prep);
    case DType::Float64: return forward_typed<double>(p, prep);
    case DType::Float16: return forward_typed<half_t>(p, prep);
    case DType::BFloat16: return forward_typed<bfloat16_t>(p, prep);
  }
}

void row_norm_backward(const RowNormBackwardProblem& p, const BackwardPrep& prep) {
  switch (p.x_dtype) {
    case DType::Float32: return backward_typed<float>(p, prep);
    case DType::Float64: return backward_typed<double>(p, prep);
    case DType::Float16: return backward_typed<half_t>(p, prep);
    case DType::BFloat16: return backward_typed<bfloat16_t>(p, prep);
  }
}

// A memory copy with the same machinery (threads, streaming stores): the bandwidth roof the
// benchmark compares the kernels with.
void copy(const void* src, void* dst, int64_t bytes, int threads, bool nontemporal) {
  using V = Vec<float>;
  constexpr int64_t L = V::size;
  const int64_t n = bytes / 4;
  const float* s = static_cast<const float*>(src);
  float* d = static_cast<float*>(dst);
  const int64_t kBlock = 1 << 16;  // floats per task
  const int64_t nblk = (n + kBlock - 1) / kBlock;
  parallel_ranges(threads, nblk, [&](int, int64_t b_begin, int64_t b_end) {
  for (int64_t b = b_begin; b < b_end; ++b) {
    const int64_t j1 = (b + 1) * kBlock < n ? (b + 1) * kBlock : n;
    int64_t j = b * kBlock;
    constexpr int A = stream_alignment<float>();
    if constexpr (A > 0) {
      if (nontemporal) {
        while (j < j1 && reinterpret_cast<uintptr_t>(d + j) % A != 0) {
          d[j] = s[j];
          ++j;
        }
        for (; j + L <= j1; j += L) V::load(s + j).stream(d + j);
      }
    }
    for (; j + L <= j1; j += L) V::load(s + j).store(d + j);
    for (; j < j1; ++j) d[j] = s[j];
  }
  if (nontemporal) stream_fence();  // Note [Fence on every thread]
  });
  std::memcpy(static_cast<char*>(dst) + n * 4, static_cast<const char*>(src) + n * 4,
              size_t(bytes - n * 4));
}

}  // namespace normkit::cpu::NK_CPU_ISA
