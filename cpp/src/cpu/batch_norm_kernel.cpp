// Batch-norm CPU kernel (SPEC §4): the per-channel reductions (moments of x; the backward's
// sums) and the elementwise passes, written once against Vec<C> and compiled once per ISA.
// The per-channel math is common/batch_norm_math.hpp; what the dispatcher prepared is
// cpu/batch_norm_prep.hpp.
//
// Note [Channel reductions in a fixed order]: a channel's statistics never depend on the
// thread count. Channels first: each (n, c) plane is reduced alone (its moments by chunked
// two-pass, its sums in a fixed vector order), and the planes of a channel are combined in
// order n = 0, 1, ... — whether one thread walks the channel (channel_major) or the planes
// were reduced in parallel first. Channels last: rows are cut into blocks by block_layout
// (the shape alone); a block's columns are reduced row by row (moments: chunks of rows by
// two-pass, Chan-merged in order), and blocks are combined in block order.
//
// Assumptions: validated (cpp/src/batch_norm.cpp) and prepared (cpu/batch_norm_dispatch.cpp):
// rows >= 1, width >= 1, C >= 1; coefficient arrays are [C] of the compute type.
// No static initializers in this file (it is compiled with ISA flags).
#include <cstdint>
#include <cstring>

#include "cpu/kernels.hpp"
#include "cpu/vec/channel_sums.hpp"
#include "cpu/vec/loops.hpp"
#include "cpu/vec/vec.hpp"

namespace normkit::cpu::NK_CPU_ISA {
namespace {

using detail::BnProblem;

template <typename T, typename C>
struct Kernel {
  using V = Vec<C>;
  static constexpr int64_t L = V::size;

  const BnProblem& p;
  const BnPrep& prep;
  const T* X = static_cast<const T*>(p.x);
  const T* DY = static_cast<const T*>(p.dy);
  T* OUT = static_cast<T*>(p.out);
  C* hi = static_cast<C*>(prep.hi);
  C* ca = static_cast<C*>(prep.a);
  C* cb = static_cast<C*>(prep.b);
  C* cc = static_cast<C*>(prep.c);

  void finish(int64_t ch) const {
    bn_finish_channel<C>(prep.finish, ch, prep.r0[ch], prep.r1[ch], prep.r2 ? prep.r2[ch] : 0.0,
                         hi, ca, cb, cc);
  }

  // ---- channels first: row r is the (n, c) plane -------------------------------------

  // The plane's reduction into t[0..3) (moments: mean, M2; sums: Σdy, Σdy·d, Σd).
  void plane_reduce(int64_t r, int64_t ch, double* t) const {
    const T* xr = X + p.x_idx.offset(r);
    if (prep.reduce == BnReduce::Moments) {
      layer_stats<T, C>(xr, p.width, t[0], t[1]);
      t[2] = 0;
    } else {
      C a, b, c;
      run_sums<T, C>(DY + p.dy_idx.offset(r), xr, p.width, hi[ch], a, b, c);
      t[0] = double(a), t[1] = double(b), t[2] = double(c);
    }
  }

  // Combining plane results of a channel in order n = 0, 1, ...
  struct Acc {
    detail::Moments<double> m{0.0, 0.0, 0.0};
    double s[3] = {0.0, 0.0, 0.0};
  };
  void accumulate(Acc& acc, const double* t, double count) const {
    if (prep.reduce == BnReduce::Moments)
      acc.m = detail::merge_moments(acc.m, detail::Moments<double>{count, t[0], t[1]});
    else
      for (int k = 0; k < 3; ++k) acc.s[k] += t[k];
  }
  void store(const Acc& acc, int64_t ch) const {
    if (prep.reduce == BnReduce::Moments) {
      prep.r0[ch] = acc.m.mean, prep.r1[ch] = acc.m.m2;
    } else {
      prep.r0[ch] = acc.s[0], prep.r1[ch] = acc.s[1];
      if (prep.r2) prep.r2[ch] = acc.s[2];
    }
  }

  // The elementwise pass over plane r. `next` (or -1): a plane the next task reduces, whose
  // lines are touched as this pass goes (Note [Prefetch the next row], cpu/vec/loops.hpp:
  // its reads from memory then overlap this pass's writes).
  template <bool kBwd, bool kNT>
  void plane_apply(int64_t r, int64_t ch, int64_t next = -1) const {
    const T* xr = X + p.x_idx.offset(r);
    T* outr = OUT + p.out_idx.offset(r);
    const T* nx = next >= 0 ? X + p.x_idx.offset(next) : nullptr;
    const V vh = V::set1(hi[ch]), va = V::set1(ca[ch]), vb = V::set1(cb[ch]);
    if constexpr (kBwd) {
      const T* dyr = DY + p.dy_idx.offset(r);
      const T* ndy = next >= 0 ? DY + p.dy_idx.offset(next) : nullptr;
      const V vc = V::set1(cc[ch]);
      map_vectors<T, C>(p.width, outr, kNT, [&](int64_t j, int64_t n) NK_INLINE_LAMBDA {
        prefetch(nx ? nx + j : nullptr);
        prefetch(ndy ? ndy + j : nullptr);
        const V dy = ld<T, V>(dyr + j, n);  // both read before dx (it may alias either)
        const V d = ld<T, V>(xr + j, n) - vh;
        return V::fmadd(va, dy, V::fmadd(vb, d, vc));
      });
    } else {
      map_vectors<T, C>(p.width, outr, kNT, [&](int64_t j, int64_t n) NK_INLINE_LAMBDA {
        prefetch(nx ? nx + j : nullptr);
        return V::fmadd(ld<T, V>(xr + j, n) - vh, va, vb);
      });
    }
  }

  template <bool kBwd, bool kNT>
  void channels_first() const {
    const int64_t Cn = p.C, N = p.rows / p.C;
    const bool reduce = prep.reduce != BnReduce::None, apply = OUT != nullptr;
    const double S = double(p.width);
    if (prep.channel_major) {  // a thread takes whole channels: reduce, finish, apply
      parallel_ranges(prep.threads, Cn, [&](int, int64_t c0, int64_t c1) {
        for (int64_t ch = c0; ch < c1; ++ch) {
          if (reduce) {
            Acc acc;
            for (int64_t n = 0; n < N; ++n) {
              double t[3];
              plane_reduce(n * Cn + ch, ch, t);
              accumulate(acc, t, S);
            }
            store(acc, ch);
            if (prep.fused) finish(ch);
          }
          if (apply) {
            const bool more = reduce && ch + 1 < c1;  // the next channel's planes, prefetched
            for (int64_t n = 0; n < N; ++n)
              plane_apply<kBwd, kNT>(n * Cn + ch, ch, more ? n * Cn + ch + 1 : -1);
          }
        }
        if constexpr (kNT) stream_fence();  // Note [Fence on every thread]
      });
      return;
    }
    if (reduce) {  // planes in parallel, then each channel's planes in order
      double* P = static_cast<double*>(prep.partials);
      parallel_ranges(prep.threads, p.rows, [&](int, int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) plane_reduce(r, r % Cn, P + 3 * r);
      });
      for (int64_t ch = 0; ch < Cn; ++ch) {
        Acc acc;
        for (int64_t n = 0; n < N; ++n) accumulate(acc, P + 3 * (n * Cn + ch), S);
        store(acc, ch);
        if (prep.fused) finish(ch);
      }
    }
    if (apply) {
      parallel_ranges(prep.threads, p.rows, [&](int, int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) plane_apply<kBwd, kNT>(r, r % Cn);
        if constexpr (kNT) stream_fence();
      });
    }
  }

  // ---- channels last: rows of C channels ------------------------------------------------

  // Block blk's per-column reduction into P[blk][0..3][C] (double).
  void block_reduce(int64_t blk, C* tmp) const {
    const int64_t W = p.C;
    double* out = static_cast<double*>(prep.partials) + blk * 3 * W;
    const int64_t ra = blk * prep.rows_per_block;
    const int64_t rb = ra + prep.rows_per_block < p.rows ? ra + prep.rows_per_block : p.rows;
    if (prep.reduce == BnReduce::Sums) {
      column_sums<T, C>(DY, p.dy_idx, X, p.x_idx, ra, rb, W, hi, tmp);
      for (int64_t k = 0; k < 3 * W; ++k) out[k] = double(tmp[k]);
      return;
    }
    column_moments<T, C>(X, p.x_idx, ra, rb, W, tmp, out, out + W);
  }

  template <bool kBwd, bool kNT>
  void row_apply(int64_t r) const {
    const T* xr = X + p.x_idx.offset(r);
    T* outr = OUT + p.out_idx.offset(r);
    if constexpr (kBwd) {
      const T* dyr = DY + p.dy_idx.offset(r);
      map_vectors<T, C>(p.C, outr, kNT, [&](int64_t j, int64_t n) NK_INLINE_LAMBDA {
        const V dy = ld<T, V>(dyr + j, n);  // both read before dx (it may alias either)
        const V d = ld<T, V>(xr + j, n) - ld<C, V>(hi + j, n);
        return V::fmadd(ld<C, V>(ca + j, n), dy, V::fmadd(ld<C, V>(cb + j, n), d, ld<C, V>(cc + j, n)));
      });
    } else {
      map_vectors<T, C>(p.C, outr, kNT, [&](int64_t j, int64_t n) NK_INLINE_LAMBDA {
        const V d = ld<T, V>(xr + j, n) - ld<C, V>(hi + j, n);
        return V::fmadd(d, ld<C, V>(ca + j, n), ld<C, V>(cb + j, n));
      });
    }
  }

  template <bool kBwd, bool kNT>
  void channels_last() const {
    const int64_t W = p.C;
    if (prep.reduce != BnReduce::None) {
      const double* P = static_cast<const double*>(prep.partials);
      C* temp = reinterpret_cast<C*>(static_cast<double*>(prep.partials) + prep.nblocks * 3 * W);
      parallel_ranges(prep.threads, prep.nblocks, [&](int t, int64_t b0, int64_t b1) {
        for (int64_t blk = b0; blk < b1; ++blk) block_reduce(blk, temp + int64_t(t) * 3 * W);
      });
      for (int64_t ch = 0; ch < W; ++ch) {  // blocks in order
        Acc acc;
        for (int64_t blk = 0; blk < prep.nblocks; ++blk) {
          const double* q = P + blk * 3 * W;
          const double t[3] = {q[ch], q[W + ch], q[2 * W + ch]};
          const int64_t ra = blk * prep.rows_per_block;
          const int64_t rb = ra + prep.rows_per_block < p.rows ? ra + prep.rows_per_block : p.rows;
          accumulate(acc, t, double(rb - ra));
        }
        store(acc, ch);
        if (prep.fused) finish(ch);
      }
    }
    if (OUT != nullptr) {
      parallel_ranges(prep.threads, p.rows, [&](int, int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) row_apply<kBwd, kNT>(r);
        if constexpr (kNT) stream_fence();
      });
    }
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
void typed(const BnProblem& p, const BnPrep& prep) {
  using C = compute_t<T>;
  const Kernel<T, C> k{p, prep};
  if (prep.backward)
    prep.nontemporal ? k.template run<true, true>() : k.template run<true, false>();
  else
    prep.nontemporal ? k.template run<false, true>() : k.template run<false, false>();
}

}  // namespace

void batch_norm(const BnProblem& p, const BnPrep& prep) {
  switch (p.x_dtype) {
    case DType::Float32: return typed<float>(p, prep);
    case DType::Float64: return typed<double>(p, prep);
    case DType::Float16: return typed<half_t>(p, prep);
    case DType::BFloat16: return typed<bfloat16_t>(p, prep);
  }
}

}  // namespace normkit::cpu::NK_CPU_ISA
