// Group-norm CPU kernel (SPEC §5; instance norm is G = C): the forward (a group's exact
// moments, then its normalize) and the backward (a group's sums, its dx, and the per-(n, c)
// partials of dγ and dβ), written once against Vec<C> and compiled once per ISA.
//
// Note [Group reductions]: a group's statistics depend on its sample alone, in an order fixed
// by the shape. Channels first, a task is one group (n, g): its C/G planes are reduced one by
// one (moments by chunked two-pass, Chan-merged in channel order; sums in a fixed vector
// order), then normalized while still in cache. Channels last, a task is one sample: per-
// column moments over the sample's rows (column_moments: two-pass chunks, Chan-merged in
// order), merged per group in channel order; the backward's column sums are accumulated in
// the compute type over blocks of kSumRows rows, then in double.
//
// Assumptions: validated (cpp/src/group_norm.cpp) and prepared (cpu/group_norm_dispatch.cpp):
// N, C, rows, width >= 1; parameters and per-group arrays of the compute type.
// No static initializers in this file (it is compiled with ISA flags).
#include <cstdint>

#include "cpu/kernels.hpp"
#include "cpu/vec/channel_sums.hpp"
#include "cpu/vec/loops.hpp"
#include "cpu/vec/moments.hpp"
#include "cpu/vec/vec.hpp"

namespace normkit::cpu::NK_CPU_ISA {
namespace {

using detail::GnProblem;

constexpr int64_t kSumRows = 512;

template <typename T, typename C>
struct Kernel {
  using V = Vec<C>;

  const GnProblem& p;
  const GnPrep& prep;
  const T* X = static_cast<const T*>(p.x);
  const T* DY = static_cast<const T*>(p.dy);
  T* OUT = static_cast<T*>(p.out);
  const C* W = static_cast<const C*>(prep.weight);
  const C* B = static_cast<const C*>(prep.bias);
  const int64_t Cn = p.C, G = p.G, Cg = p.Cg();
  const double M = double(p.group_count());

  C w(int64_t c) const { return W ? W[c] : C(1); }
  C b(int64_t c) const { return B ? B[c] : C(0); }
  char* scratch(int t) const { return prep.scratch + size_t(t) * prep.scratch_stride; }

  // The group's saved mean (hi, and r: lo or recovered from Σd) and rstd (backward).
  C ghi(int64_t ng) const { return static_cast<const C*>(prep.hi)[ng]; }
  C grstd(int64_t ng) const { return static_cast<const C*>(prep.rstd)[ng]; }

  // ---- elementwise passes over one contiguous run ----------------------------------------

  // `nx`, `ndy` (or null): the next task's plane, touched as this pass goes (Note [Prefetch
  // the next row], cpu/vec/loops.hpp).
  template <bool kNT>
  void apply_run(const T* xr, T* outr, int64_t n, C hi, C a, C bb, const T* nx) const {
    const V vh = V::set1(hi), va = V::set1(a), vb = V::set1(bb);
    map_vectors<T, C>(n, outr, kNT, [&](int64_t j, int64_t k) NK_INLINE_LAMBDA {
      prefetch(nx ? nx + j : nullptr);
      return V::fmadd(ld<T, V>(xr + j, k) - vh, va, vb);
    });
  }
  template <bool kNT>
  void backward_run(const T* dyr, const T* xr, T* outr, int64_t n, C hi, C a, C bd, C c,
                    const T* ndy, const T* nx) const {
    const V vh = V::set1(hi), va = V::set1(a), vb = V::set1(bd), vc = V::set1(c);
    map_vectors<T, C>(n, outr, kNT, [&](int64_t j, int64_t k) NK_INLINE_LAMBDA {
      prefetch(nx ? nx + j : nullptr);
      prefetch(ndy ? ndy + j : nullptr);
      const V dy = ld<T, V>(dyr + j, k);  // both read before dx (it may alias either)
      const V d = ld<T, V>(xr + j, k) - vh;
      return V::fmadd(va, dy, V::fmadd(vb, d, vc));
    });
  }
  // Channels last: one row with per-channel coefficient arrays.
  template <bool kNT>
  void apply_row(const T* xr, T* outr, const C* hi, const C* a, const C* bb) const {
    map_vectors<T, C>(Cn, outr, kNT, [&](int64_t j, int64_t k) NK_INLINE_LAMBDA {
      const V d = ld<T, V>(xr + j, k) - ld<C, V>(hi + j, k);
      return V::fmadd(d, ld<C, V>(a + j, k), ld<C, V>(bb + j, k));
    });
  }
  template <bool kNT>
  void backward_row(const T* dyr, const T* xr, T* outr, const C* hi, const C* a, const C* bd,
                    const C* c) const {
    map_vectors<T, C>(Cn, outr, kNT, [&](int64_t j, int64_t k) NK_INLINE_LAMBDA {
      const V dy = ld<T, V>(dyr + j, k);
      const V d = ld<T, V>(xr + j, k) - ld<C, V>(hi + j, k);
      return V::fmadd(ld<C, V>(a + j, k), dy, V::fmadd(ld<C, V>(bd + j, k), d, ld<C, V>(c + j, k)));
    });
  }

  // ---- the per-group math -----------------------------------------------------------------

  // From a group's moments: its statistics (written for the dispatcher) and channel c's
  // coefficients.
  detail::BnChannel<C> forward_group(int64_t ng, detail::Moments<double> m) const {
    prep.stats[2 * ng] = m.mean;
    prep.stats[2 * ng + 1] = m.m2;
    return detail::bn_batch_channel<C>(m.mean, m.m2, M, p.eps);
  }

  // From a group's per-channel sums s[3·k + {0, 1, 2}] = Σdy, Σdy·d, Σd (k < C/G): the
  // group's dx coefficients (a per channel = w·rstd) and the (n, c) partials of dγ, dβ.
  detail::BnBackward<C> backward_group(int64_t n, int64_t g, const double* s) const {
    const int64_t ng = n * G + g;
    const C rstd = grstd(ng);
    double r = 0;
    if (prep.lo != nullptr) {
      r = prep.lo[ng];
    } else {
      for (int64_t k = 0; k < Cg; ++k) r += s[3 * k + 2];
      r /= M;
    }
    double sg = 0, sgd = 0;
    for (int64_t k = 0; k < Cg; ++k) {
      const int64_t c = g * Cg + k;
      const double wk = double(w(c));
      const double sdx = detail::bn_sum_dy_xhat<C>(s[3 * k], s[3 * k + 1], r, rstd);
      sg += wk * s[3 * k];
      sgd += wk * sdx;
      prep.part[2 * (n * Cn + c)] = sdx;
      prep.part[2 * (n * Cn + c) + 1] = s[3 * k];
    }
    return detail::bn_backward<C>(true, ghi(ng), r, rstd, C(1), sg, sgd, M);
  }

  // ---- channels first: task = group (n, g) -----------------------------------------------

  template <bool kBwd, bool kNT>
  void channels_first() const {
    parallel_ranges(prep.threads, p.N * G, [&](int t, int64_t q0, int64_t q1) {
      double* s = reinterpret_cast<double*>(scratch(t));
      for (int64_t ng = q0; ng < q1; ++ng) {
        const int64_t n = ng / G, g = ng % G, r0 = n * Cn + g * Cg;
        const bool more = ng + 1 < q1;  // the next group's planes follow: rows r0 + Cg + k
        auto next = [&](const T* base, const detail::RowIndex& idx, int64_t k) -> const T* {
          return more ? base + idx.offset(r0 + Cg + k) : nullptr;
        };
        if constexpr (!kBwd) {
          detail::Moments<double> acc{0.0, 0.0, 0.0};
          for (int64_t k = 0; k < Cg; ++k) {
            double mean, m2;
            layer_stats<T, C>(X + p.x_idx.offset(r0 + k), p.width, mean, m2);
            acc = detail::merge_moments(acc, detail::Moments<double>{double(p.width), mean, m2});
          }
          const detail::BnChannel<C> ch = forward_group(ng, acc);
          for (int64_t k = 0; k < Cg; ++k) {
            const detail::BnAffine<C> aff = detail::bn_affine<C>(ch, w(g * Cg + k), b(g * Cg + k));
            apply_run<kNT>(X + p.x_idx.offset(r0 + k), OUT + p.out_idx.offset(r0 + k), p.width,
                           aff.hi, aff.a, aff.b, next(X, p.x_idx, k));
          }
        } else {
          const C hi = ghi(ng);
          for (int64_t k = 0; k < Cg; ++k) {
            C a, bb, c;
            run_sums<T, C>(DY + p.dy_idx.offset(r0 + k), X + p.x_idx.offset(r0 + k), p.width, hi,
                           a, bb, c);
            s[3 * k] = double(a), s[3 * k + 1] = double(bb), s[3 * k + 2] = double(c);
          }
          const detail::BnBackward<C> gb = backward_group(n, g, s);
          if (OUT != nullptr)
            for (int64_t k = 0; k < Cg; ++k)
              backward_run<kNT>(DY + p.dy_idx.offset(r0 + k), X + p.x_idx.offset(r0 + k),
                                OUT + p.out_idx.offset(r0 + k), p.width, hi,
                                w(g * Cg + k) * gb.a, gb.bd, gb.c, next(DY, p.dy_idx, k),
                                next(X, p.x_idx, k));
        }
      }
      if constexpr (kNT) stream_fence();  // Note [Fence on every thread]
    });
  }

  // ---- channels last: task = sample n ----------------------------------------------------

  template <bool kBwd, bool kNT>
  void channels_last() const {
    const int64_t Rs = p.rows_per_sample();
    parallel_ranges(prep.threads, p.N, [&](int t, int64_t n0, int64_t n1) {
      double* d0 = reinterpret_cast<double*>(scratch(t));  // 3·C doubles
      C* tmp = reinterpret_cast<C*>(d0 + 3 * Cn);         // 3·C
      C* hi = tmp + 3 * Cn;                                // 4 coefficient arrays of C
      C* ca = hi + Cn;
      C* cb = ca + Cn;
      C* cc = cb + Cn;
      for (int64_t n = n0; n < n1; ++n) {  // (no prefetch of the next sample: a sample of
        // MBs would evict the current one from L2/L3 between its passes — measured slower)
        const int64_t ra = n * Rs, rb = ra + Rs;
        if constexpr (!kBwd) {
          column_moments<T, C>(X, p.x_idx, ra, rb, Cn, tmp, d0, d0 + Cn);
          for (int64_t g = 0; g < G; ++g) {
            detail::Moments<double> acc{0.0, 0.0, 0.0};
            for (int64_t k = 0; k < Cg; ++k)
              acc = detail::merge_moments(
                  acc, detail::Moments<double>{double(Rs), d0[g * Cg + k], d0[Cn + g * Cg + k]});
            const detail::BnChannel<C> ch = forward_group(n * G + g, acc);
            for (int64_t k = 0; k < Cg; ++k) {
              const int64_t c = g * Cg + k;
              const detail::BnAffine<C> aff = detail::bn_affine<C>(ch, w(c), b(c));
              hi[c] = aff.hi, ca[c] = aff.a, cb[c] = aff.b;
            }
          }
          for (int64_t r = ra; r < rb; ++r)
            apply_row<kNT>(X + p.x_idx.offset(r), OUT + p.out_idx.offset(r), hi, ca, cb);
        } else {
          for (int64_t g = 0; g < G; ++g)
            for (int64_t k = 0; k < Cg; ++k) hi[g * Cg + k] = ghi(n * G + g);
          for (int64_t k = 0; k < 3 * Cn; ++k) d0[k] = 0.0;
          for (int64_t q0 = ra; q0 < rb; q0 += kSumRows) {
            const int64_t q1 = q0 + kSumRows < rb ? q0 + kSumRows : rb;
            column_sums<T, C>(DY, p.dy_idx, X, p.x_idx, q0, q1, Cn, hi, tmp);
            for (int64_t c = 0; c < Cn; ++c)  // as [c][3], the layout backward_group reads
              for (int k = 0; k < 3; ++k) d0[3 * c + k] += double(tmp[k * Cn + c]);
          }
          for (int64_t g = 0; g < G; ++g) {
            const detail::BnBackward<C> gb = backward_group(n, g, d0 + 3 * g * Cg);
            for (int64_t k = 0; k < Cg; ++k) {
              const int64_t c = g * Cg + k;
              ca[c] = w(c) * gb.a, cb[c] = gb.bd, cc[c] = gb.c;
            }
          }
          if (OUT != nullptr)
            for (int64_t r = ra; r < rb; ++r)
              backward_row<kNT>(DY + p.dy_idx.offset(r), X + p.x_idx.offset(r),
                                OUT + p.out_idx.offset(r), hi, ca, cb, cc);
        }
      }
      if constexpr (kNT) stream_fence();
    });
  }

  template <bool kBwd, bool kNT>
  void run() const {
    if (p.per_row)
      channels_first<kBwd, kNT>();
    else
      channels_last<kBwd, kNT>();
  }
};

template <typename T>
void typed(const GnProblem& p, const GnPrep& prep) {
  using C = compute_t<T>;
  const Kernel<T, C> k{p, prep};
  if (p.backward)
    prep.nontemporal ? k.template run<true, true>() : k.template run<true, false>();
  else
    prep.nontemporal ? k.template run<false, true>() : k.template run<false, false>();
}

}  // namespace

void group_norm(const GnProblem& p, const GnPrep& prep) {
  switch (p.x_dtype) {
    case DType::Float32: return typed<float>(p, prep);
    case DType::Float64: return typed<double>(p, prep);
    case DType::Float16: return typed<half_t>(p, prep);
    case DType::BFloat16: return typed<bfloat16_t>(p, prep);
  }
}

}  // namespace normkit::cpu::NK_CPU_ISA
