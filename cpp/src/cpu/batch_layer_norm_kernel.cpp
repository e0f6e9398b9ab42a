// Batch layer norm CPU kernel (SPEC §7): the two phases of cpu/batch_layer_norm_prep.hpp,
// written once against Vec<C> and compiled once per ISA.
//
// Columns: a task is a block of columns; their moments over the B samples by column_moments
// (two-pass chunks, Chan-merged in order), or their backward sums in the compute type over
// kSumRows samples at a time, then in double. Rows: a task is a range of feature rows; a
// row's statistics by chunked two-pass (layer_stats) or its weighted sums in a fixed vector
// order, then its elementwise pass while it is in L1. Every order depends on the shape only.
//
// Assumptions: validated (cpp/src/batch_layer_norm.cpp) and prepared by the dispatcher:
// B, P, F >= 1. No static initializers in this file (it is compiled with ISA flags).
#include <cstdint>
#include <cstring>

#include "cpu/kernels.hpp"
#include "cpu/vec/channel_sums.hpp"
#include "cpu/vec/loops.hpp"
#include "cpu/vec/moments.hpp"
#include "cpu/vec/vec.hpp"

namespace normkit::cpu::NK_CPU_ISA {
namespace {

using detail::BlnProblem;

constexpr int64_t kSumRows = 512;

template <typename T, typename C>
struct Kernel {
  using V = Vec<C>;
  static constexpr int64_t L = V::size;

  const BlnProblem& p;
  const BlnPrep& prep;
  const T* X = static_cast<const T*>(p.x);
  const T* DY = static_cast<const T*>(p.dy);
  T* OUT = static_cast<T*>(p.out);
  const C* GM = static_cast<const C*>(prep.gamma);
  const C* BI = static_cast<const C*>(prep.bias);
  const C* HB = static_cast<const C*>(prep.hb);
  const C* AB = static_cast<const C*>(prep.ab);
  const C* BDB = static_cast<const C*>(prep.bdb);
  const C* CB = static_cast<const C*>(prep.cb);
  const C* KB = static_cast<const C*>(prep.kb);
  const C* KB0 = static_cast<const C*>(prep.kb0);
  const int64_t F = p.F, PF = p.P * p.F;

  char* scratch(int t) const { return prep.scratch + size_t(t) * prep.scratch_stride; }

  // ---- Columns ------------------------------------------------------------------------------

  void columns() const {
    const int64_t nblk = (PF + prep.col_block - 1) / prep.col_block;
    parallel_ranges(prep.threads, nblk, [&](int t, int64_t q0, int64_t q1) {
      C* tmp = reinterpret_cast<C*>(scratch(t));
      for (int64_t q = q0; q < q1; ++q) {
        const int64_t j0 = q * prep.col_block;
        const int64_t W = PF - j0 < prep.col_block ? PF - j0 : prep.col_block;
        if (!p.backward) {
          column_moments<T, C>(X + j0, p.x_idx, 0, p.B, W, tmp, prep.colstat + j0,
                               prep.colstat + PF + j0);
          continue;
        }
        double* s = prep.colstat;
        for (int k = 0; k < 3; ++k)
          for (int64_t j = 0; j < W; ++j) s[k * PF + j0 + j] = 0.0;
        for (int64_t b0 = 0; b0 < p.B; b0 += kSumRows) {
          const int64_t b1 = b0 + kSumRows < p.B ? b0 + kSumRows : p.B;
          column_sums<T, C>(DY + j0, p.dy_idx, X + j0, p.x_idx, b0, b1, W, HB + j0, tmp);
          for (int k = 0; k < 3; ++k)
            for (int64_t j = 0; j < W; ++j) s[k * PF + j0 + j] += double(tmp[k * W + j]);
        }
      }
    });
  }

  // ---- Rows ---------------------------------------------------------------------------------

  const T* row_ptr(const T* base, const detail::RowIndex& idx, int64_t r) const {
    return base + idx.offset(r / p.P) + (r % p.P) * F;
  }

  template <bool kNT>
  void forward_row(int64_t r) const {
    const T* xr = row_ptr(X, p.x_idx, r);
    T* yr = OUT + p.out_idx.offset(r / p.P) + (r % p.P) * F;
    detail::BnChannel<C> ch;
    if (prep.feature_input) {
      double mean, m2;
      layer_stats<T, C>(xr, F, mean, m2);
      prep.rowstat[2 * r] = mean, prep.rowstat[2 * r + 1] = m2;
      ch = detail::bn_batch_channel<C>(mean, m2, double(F), prep.eps);
    } else {
      const int64_t q = r % p.P;
      ch = {static_cast<const C*>(prep.run_hi)[q], C(0), static_cast<const C*>(prep.run_rstd)[q]};
    }
    const C af = C(prep.wf) * ch.rstd;
    const V vaf = V::set1(af), vhf = V::set1(ch.hi), vcf = V::set1(-af * ch.lo);
    const int64_t j0 = (r % p.P) * F;
    const C* hb = HB + j0;
    const C* ab = AB + j0;
    const C* cb = CB + j0;
    map_vectors<T, C>(F, yr, kNT, [&](int64_t j, int64_t n) NK_INLINE_LAMBDA {
      const V x = ld<T, V>(xr + j, n);
      const V db = x - ld<C, V>(hb + j, n);
      const V t = V::fmadd(vaf, x - vhf, V::fmadd(ld<C, V>(ab + j, n), db, vcf + ld<C, V>(cb + j, n)));
      const V bias = BI ? ld<C, V>(BI + j, n) : V::zero();
      return V::fmadd(ld<C, V>(GM + j, n), t, bias);
    });
  }

  // Σg, Σg·d, Σd over the row (g = γ'·dy, d = x − hi), in a fixed vector order.
  void row_sums(const T* dyr, const T* xr, C hi, C& s_g, C& s_gd, C& s_d) const {
    const V vh = V::set1(hi);
    V a = V::zero(), b = V::zero(), c = V::zero();
    int64_t j = 0;
    for (; j + L <= F; j += L) {
      const V g = V::load(dyr + j) * V::load(GM + j), d = V::load(xr + j) - vh;
      a = a + g;
      b = V::fmadd(g, d, b);
      c = c + d;
    }
    C sa = a.sum(), sb = b.sum(), sc = c.sum();
    for (; j < F; ++j) {
      const C g = C(to_compute(dyr[j])) * GM[j], d = C(to_compute(xr[j])) - hi;
      sa += g;
      sb += g * d;
      sc += d;
    }
    s_g = sa, s_gd = sb, s_d = sc;
  }

  template <bool kNT>
  void backward_row(int64_t r, C* pw, C* pb) const {
    const T* xr = row_ptr(X, p.x_idx, r);
    const T* dyr = row_ptr(DY, p.dy_idx, r);
    const C hi = static_cast<const C*>(prep.fhi)[r];
    const C rstd = static_cast<const C*>(prep.frstd)[r];
    C af = C(prep.wf) * rstd, bdf = C(0), cf = C(0);
    double rf = prep.flo ? prep.flo[r] : 0.0;
    if (prep.feature_input) {
      C sg, sgd, sd;
      row_sums(dyr, xr, hi, sg, sgd, sd);
      if (!prep.flo) rf = double(sd) / double(F);
      const double sgx = detail::bn_sum_dy_xhat<C>(double(sg), double(sgd), rf, rstd);
      const detail::BnBackward<C> g =
          detail::bn_backward<C>(true, hi, rf, rstd, C(prep.wf), double(sg), sgx, double(F));
      af = g.a, bdf = g.bd, cf = g.c;
    }
    const C kf = C(prep.wf * prep.rsqrt_f) * rstd;
    const V vaf = V::set1(af), vbdf = V::set1(bdf), vcf = V::set1(cf), vh = V::set1(hi);
    const V vkf = V::set1(kf), vkf0 = V::set1(C(-double(kf) * rf));
    const int64_t j0 = (r % p.P) * F;
    const C* hb = HB + j0;
    const C* ab = AB + j0;
    const C* bdb = BDB + j0;
    const C* cb = CB + j0;
    const C* kb = KB + j0;
    const C* kb0 = KB0 + j0;
    T* dxr = OUT ? OUT + p.out_idx.offset(r / p.P) + (r % p.P) * F : nullptr;
    for (int64_t j = 0; j < F; j += L) {
      const int64_t n = F - j < L ? F - j : L;
      const V dy = ld<T, V>(dyr + j, n);  // both read before dx (it may alias either)
      const V x = ld<T, V>(xr + j, n);
      const V df = x - vh, db = x - ld<C, V>(hb + j, n);
      if (pw != nullptr) {
        const V xh = V::fmadd(vkf, df, vkf0 + V::fmadd(ld<C, V>(kb + j, n), db, ld<C, V>(kb0 + j, n)));
        st<C, V>(V::fmadd(dy, xh, ld<C, V>(pw + j, n)), pw + j, n, false);
        st<C, V>(ld<C, V>(pb + j, n) + dy, pb + j, n, false);
      }
      if (dxr != nullptr) {
        const V a = V::fmadd(vaf, ld<C, V>(GM + j, n), ld<C, V>(ab + j, n));
        const V v = V::fmadd(a, dy, V::fmadd(vbdf, df, V::fmadd(ld<C, V>(bdb + j, n), db,
                                                                 vcf + ld<C, V>(cb + j, n))));
        st<T, V>(v, dxr + j, n, kNT);
      }
    }
  }

  template <bool kNT>
  void rows() const {
    const int64_t R = p.feature_rows();
    if (!p.backward) {
      parallel_ranges(prep.threads, R, [&](int, int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) forward_row<kNT>(r);
        if constexpr (kNT) stream_fence();  // Note [Fence on every thread]
      });
      return;
    }
    parallel_ranges(prep.threads, prep.nblocks, [&](int, int64_t q0, int64_t q1) {
      for (int64_t q = q0; q < q1; ++q) {
        C* pw = prep.partials ? static_cast<C*>(prep.partials) + q * 2 * F : nullptr;
        C* pb = pw ? pw + F : nullptr;
        if (pw) std::memset(static_cast<void*>(pw), 0, sizeof(C) * size_t(2 * F));
        const int64_t ra = q * prep.rows_per_block;
        const int64_t rb = ra + prep.rows_per_block < R ? ra + prep.rows_per_block : R;
        for (int64_t r = ra; r < rb; ++r) backward_row<kNT>(r, pw, pb);
      }
      if constexpr (kNT) stream_fence();
    });
  }

  void run() const {
    if (prep.phase == BlnPhase::Columns)
      columns();
    else if (prep.nontemporal)
      rows<true>();
    else
      rows<false>();
  }
};

template <typename T>
void typed(const BlnProblem& p, const BlnPrep& prep) {
  Kernel<T, compute_t<T>>{p, prep}.run();
}

}  // namespace

void batch_layer_norm(const BlnProblem& p, const BlnPrep& prep) {
  switch (p.x_dtype) {
    case DType::Float32: return typed<float>(p, prep);
    case DType::Float64: return typed<double>(p, prep);
    case DType::Float16: return typed<half_t>(p, prep);
    case DType::BFloat16: return typed<bfloat16_t>(p, prep);
  }
}

}  // namespace normkit::cpu::NK_CPU_ISA
