// Batch layer norm's CPU dispatch (SPEC §7): the Columns phase (batch statistics), the
// per-column math (common/batch_norm_math.hpp, as batch norm's: statistics, running updates,
// coefficients), the Rows phase (feature statistics and the elementwise pass), then what
// follows from the rows (saved feature statistics, running feature statistics; dγ, dβ summed
// over blocks in order). Compiled without ISA flags.
#include <cmath>
#include <memory>
#include <vector>

#include "common/backends.hpp"
#include "cpu/chan_io.hpp"
#include "cpu/dispatch.hpp"

namespace normkit::cpu {
namespace {

using detail::BlnProblem;

template <typename C>
struct Dispatch {
  const BlnProblem& p;
  const int64_t F = p.F, PF = p.P * p.F, R = p.B * p.P;
  const bool empty = p.B == 0 || p.P == 0;
  std::vector<C> gamma = std::vector<C>(size_t(F));
  ParamBuf bbuf;
  std::vector<C> hb, ab, bdb, cb, kb, kb0;
  std::vector<double> colstat, rowstat, blo;
  BlnPrep prep;
  std::unique_ptr<char[]> scratch;

  explicit Dispatch(const BlnProblem& prob) : p(prob) {
    ParamBuf wbuf;
    const C* w = static_cast<const C*>(as_compute(p.weight.p, p.weight.dtype, p.x_dtype, F, 0.0, wbuf));
    const C rs = C(1.0 / std::sqrt(double(F)));
    for (int64_t f = 0; f < F; ++f) gamma[size_t(f)] = (w ? w[f] : C(1)) * rs;
    prep.gamma = gamma.data();
    prep.wf = p.wf;
    prep.rsqrt_f = 1.0 / std::sqrt(double(F));
    prep.eps = p.eps;
    prep.feature_input = p.feature_input;
    const int64_t elems = p.B * PF;
    prep.threads = threads_for(elems, R);
    prep.nontemporal = p.out != nullptr && elems * dtype_size(p.x_dtype) >= nontemporal_threshold();
  }

  void run(BlnPhase phase) {
    prep.phase = phase;
    if (phase == BlnPhase::Columns) {
      const int64_t nblk = (PF + prep.col_block - 1) / prep.col_block;
      const int t = threads_for(p.B * PF, nblk);
      prep.scratch_stride = (size_t(3 * prep.col_block) * sizeof(C) + 63) / 64 * 64;
      scratch.reset(new char[prep.scratch_stride * size_t(t)]);
      prep.scratch = scratch.get();
      const int saved = prep.threads;
      prep.threads = t;
      current().batch_layer_norm(p, prep);
      prep.threads = saved;
    } else {
      current().batch_layer_norm(p, prep);
    }
  }

  void columns_arrays(int n) {
    hb.resize(size_t(PF)), ab.resize(size_t(PF)), cb.resize(size_t(PF));
    prep.hb = hb.data(), prep.ab = ab.data(), prep.cb = cb.data();
    if (n > 3) {
      bdb.resize(size_t(PF)), kb.resize(size_t(PF)), kb0.resize(size_t(PF));
      prep.bdb = bdb.data(), prep.kb = kb.data(), prep.kb0 = kb0.data();
    }
  }

  void forward() {
    ParamBuf biasbuf;
    prep.bias = as_compute(p.bias.p, p.bias.dtype, p.x_dtype, F, 0.0, biasbuf);
    columns_arrays(3);
    const double B = double(p.B);
    if (p.batch_input) {
      colstat.assign(size_t(2 * PF), 0.0);
      prep.colstat = colstat.data();
      if (!empty) run(BlnPhase::Columns);
    }
    for (int64_t j = 0; j < PF; ++j) {
      detail::BnChannel<C> ch;
      if (p.batch_input) {
        const double mean = colstat[size_t(j)], m2 = colstat[size_t(PF + j)];
        ch = detail::bn_batch_channel<C>(mean, m2, B > 0 ? B : 1.0, p.eps);
        if (p.run_bmean.p) {
          write(p.run_bmean, j, detail::bn_running_update(read(p.run_bmean, j), mean, p.momentum));
          write(p.run_bvar, j, detail::bn_running_update(read(p.run_bvar, j), m2 / (B - 1.0), p.momentum));
        }
      } else {
        ch = detail::bn_running_channel<C>(C(read(p.run_bmean, j)), C(read(p.run_bvar, j)), p.eps);
      }
      write(p.bmean, j, double(ch.hi));
      write(p.brstd, j, double(ch.rstd));
      const C a = C(p.wb) * ch.rstd;
      hb[size_t(j)] = ch.hi, ab[size_t(j)] = a, cb[size_t(j)] = -a * ch.lo;
    }
    std::vector<C> run_hi, run_rstd;
    if (p.feature_input) {
      rowstat.assign(size_t(2 * R), 0.0);
      prep.rowstat = rowstat.data();
    } else {
      run_hi.resize(size_t(p.P)), run_rstd.resize(size_t(p.P));
      for (int64_t q = 0; q < p.P; ++q) {
        const detail::BnChannel<C> ch =
            detail::bn_running_channel<C>(C(read(p.run_fmean, q)), C(read(p.run_fvar, q)), p.eps);
        run_hi[size_t(q)] = ch.hi, run_rstd[size_t(q)] = ch.rstd;
      }
      prep.run_hi = run_hi.data(), prep.run_rstd = run_rstd.data();
    }
    if (!empty) run(BlnPhase::Rows);
    for (int64_t r = 0; r < R; ++r) {
      const detail::BnChannel<C> ch =
          p.feature_input ? detail::bn_batch_channel<C>(rowstat[size_t(2 * r)], rowstat[size_t(2 * r + 1)], double(F), p.eps)
                          : detail::BnChannel<C>{run_hi[size_t(r % p.P)], C(0), run_rstd[size_t(r % p.P)]};
      write(p.fmean, r, double(ch.hi));
      write(p.frstd, r, double(ch.rstd));
    }
    if (p.feature_input && p.run_fmean.p && p.B > 0) {
      for (int64_t q = 0; q < p.P; ++q) {
        double mean = 0, var = 0;
        for (int64_t b = 0; b < p.B; ++b)
          mean += rowstat[size_t(2 * (b * p.P + q))], var += rowstat[size_t(2 * (b * p.P + q) + 1)] / double(F - 1);
        write(p.run_fmean, q, detail::bn_running_update(read(p.run_fmean, q), mean / B, p.momentum));
        write(p.run_fvar, q, detail::bn_running_update(read(p.run_fvar, q), var / B, p.momentum));
      }
    }
  }

  void backward() {
    columns_arrays(6);
    const double B = double(p.B);
    const bool recover_b = p.bmean.dtype == compute_dtype(p.x_dtype);
    std::vector<C> brstd(static_cast<size_t>(PF));
    blo.resize(size_t(PF));
    split<C>(p.bmean, PF, hb.data(), blo.data());
    for (int64_t j = 0; j < PF; ++j) brstd[size_t(j)] = C(read(p.brstd, j));
    if (p.batch_input) {
      colstat.assign(size_t(3 * PF), 0.0);
      prep.colstat = colstat.data();
      if (!empty) run(BlnPhase::Columns);
    }
    for (int64_t j = 0; j < PF; ++j) {
      const C g = gamma[size_t(j % F)], rstd = brstd[size_t(j)];
      const C w = C(p.wb) * g;
      double r = blo[size_t(j)];
      detail::BnBackward<C> gb;
      if (p.batch_input) {
        const double s_dy = colstat[size_t(j)], s_dyd = colstat[size_t(PF + j)];
        if (recover_b) r = B > 0 ? colstat[size_t(2 * PF + j)] / B : 0.0;
        const double sdx = detail::bn_sum_dy_xhat<C>(s_dy, s_dyd, r, rstd);
        gb = detail::bn_backward<C>(true, hb[size_t(j)], r, rstd, w, s_dy, sdx, B);
      } else {
        gb = detail::bn_backward<C>(false, hb[size_t(j)], 0.0, rstd, w, 0.0, 0.0, 1.0);
      }
      ab[size_t(j)] = gb.a, bdb[size_t(j)] = gb.bd, cb[size_t(j)] = gb.c;
      const C k = C(p.wb * (1.0 / std::sqrt(double(F)))) * rstd;
      kb[size_t(j)] = k, kb0[size_t(j)] = C(-double(k) * r);
    }
    std::vector<C> fhi(static_cast<size_t>(R)), frstd(static_cast<size_t>(R));
    std::vector<double> flo(static_cast<size_t>(R));
    split<C>(p.fmean, R, fhi.data(), flo.data());
    for (int64_t r = 0; r < R; ++r) frstd[size_t(r)] = C(read(p.frstd, r));
    prep.fhi = fhi.data(), prep.frstd = frstd.data();
    prep.flo = p.feature_input && p.fmean.dtype == compute_dtype(p.x_dtype) ? nullptr : flo.data();
    const bool grads = p.dweight.p || p.dbias.p;
    const Blocks bl = block_layout(R, F);
    prep.nblocks = bl.nblocks, prep.rows_per_block = bl.rows_per_block;
    std::vector<C> part;
    if (grads && !empty) {
      part.assign(size_t(bl.nblocks * 2 * F), C(0));
      prep.partials = part.data();
    }
    prep.threads = threads_for(p.B * PF, bl.nblocks);
    if (!empty && (grads || p.out)) run(BlnPhase::Rows);
    for (int64_t f = 0; f < F; ++f) {
      double dw = 0, db = 0;
      if (!empty && grads)
        for (int64_t q = 0; q < bl.nblocks; ++q)
          dw += double(part[size_t(q * 2 * F + f)]), db += double(part[size_t(q * 2 * F + F + f)]);
      write(p.dweight, f, dw);
      write(p.dbias, f, db);
    }
  }
};

}  // namespace
}  // namespace normkit::cpu

namespace normkit::detail {

void cpu_batch_layer_norm(const BlnProblem& p) {
  if (p.x_dtype == DType::Float64) {
    cpu::Dispatch<double> d(p);
    p.backward ? d.backward() : d.forward();
  } else {
    cpu::Dispatch<float> d(p);
    p.backward ? d.backward() : d.forward();
  }
}

}  // namespace normkit::detail
