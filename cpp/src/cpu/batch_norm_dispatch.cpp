// Batch norm's CPU dispatch: every entry point (cpp/src/batch_norm.cpp) becomes one call of
// the batch_norm kernel (cpu/batch_norm_kernel.cpp) — a reduction, an elementwise pass, or
// both fused — with per-channel coefficients from common/batch_norm_math.hpp. The fused
// forward and backward are the split phases composed: the same reductions, the same
// coefficients, the same elementwise passes. Compiled without ISA flags.
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "common/backends.hpp"
#include "cpu/chan_io.hpp"
#include "cpu/dispatch.hpp"
#include "normkit/error.hpp"

namespace normkit::cpu {
namespace {

using detail::BnOp;
using detail::BnProblem;
using detail::Chan;

template <typename C>
struct Dispatch {
  const BnProblem& p;
  const int64_t Cn = p.C;
  const size_t nC = size_t(p.C);
  const double M = double(p.count());
  const bool empty = p.rows == 0 || p.width == 0;
  std::vector<C> hi = std::vector<C>(nC), a = hi, b = hi, c = hi;
  std::vector<double> r0 = std::vector<double>(nC), r1 = r0, r2 = r0;
  ParamBuf wbuf, bbuf;
  std::unique_ptr<char[]> scratch;
  BnPrep prep;

  explicit Dispatch(const BnProblem& prob) : p(prob) {
    prep.hi = hi.data(), prep.a = a.data(), prep.b = b.data(), prep.c = c.data();
    prep.r0 = r0.data(), prep.r1 = r1.data(), prep.r2 = r2.data();
  }

  const C* param(const Chan& t, ParamBuf& buf) {
    return static_cast<const C*>(as_compute(t.p, t.dtype, p.x_dtype, Cn, 0.0, buf));
  }

  // Runs the kernel: a reduction (`reduce`), then an elementwise pass when the problem has
  // an output (`backward` says which); `fused` finishes each channel in between.
  void run(BnReduce reduce, bool backward, bool fused) {
    if (empty) return;
    prep.reduce = reduce;
    prep.backward = backward;
    prep.fused = fused;
    const int64_t elems = p.rows * p.width;
    const bool apply = p.out != nullptr;
    prep.nontemporal = apply && elems * dtype_size(p.x_dtype) >= nontemporal_threshold();
    size_t bytes = 0;
    if (p.per_row) {
      prep.threads = threads_for(elems, p.rows);
      // Channel-major order keeps a channel's planes in cache from its reduction to its
      // elementwise pass; without a reduction, planes go in memory order (the output streams
      // out sequentially instead of in plane-sized pieces C planes apart).
      prep.channel_major = reduce != BnReduce::None && (prep.threads == 1 || Cn >= prep.threads);
      if (prep.channel_major) prep.threads = threads_for(elems, Cn);
      if (reduce != BnReduce::None && !prep.channel_major) bytes = size_t(3 * p.rows) * sizeof(double);
    } else {
      const Blocks bl = block_layout(p.rows, Cn);
      prep.nblocks = bl.nblocks;
      prep.rows_per_block = bl.rows_per_block;
      prep.threads = threads_for(elems, reduce != BnReduce::None ? bl.nblocks : p.rows);
      if (reduce != BnReduce::None)
        bytes = size_t(3 * Cn) * (size_t(bl.nblocks) * sizeof(double) +
                                  size_t(prep.threads) * sizeof(C));
      // The elementwise pass may use more threads than the reduction has blocks.
      if (apply && reduce == BnReduce::None) prep.threads = threads_for(elems, p.rows);
    }
    if (bytes > 0) {
      scratch.reset(new char[bytes]);
      prep.partials = scratch.get();
    }
    current().batch_norm(p, prep);
  }

  // ---- forward ---------------------------------------------------------------------------

  void forward_coeffs_from(const detail::BnChannel<C>* chs, const C* w, const C* bias) {
    for (int64_t i = 0; i < Cn; ++i) {
      const detail::BnAffine<C> aff = detail::bn_affine<C>(chs[i], w ? w[i] : C(1), bias ? bias[i] : C(0));
      hi[size_t(i)] = aff.hi, a[size_t(i)] = aff.a, b[size_t(i)] = aff.b;
    }
  }

  void forward() {
    const C* w = param(p.weight, wbuf);
    const C* bias = param(p.bias, bbuf);
    if (p.training) {
      prep.finish.backward = false;
      prep.finish.eps = p.eps;
      prep.finish.M = M;
      prep.finish.weight = w;
      prep.finish.bias = bias;
      run(BnReduce::Moments, false, true);
      for (int64_t i = 0; i < Cn; ++i) {
        const detail::BnChannel<C> ch = detail::bn_batch_channel<C>(r0[size_t(i)], r1[size_t(i)], M, p.eps);
        write(p.save_mean, i, double(ch.hi));
        write(p.save_rstd, i, double(ch.rstd));
        if (p.running_mean.p) {
          write(p.running_mean, i, detail::bn_running_update(read(p.running_mean, i), r0[size_t(i)], p.momentum));
          write(p.running_var, i,
                detail::bn_running_update(read(p.running_var, i), r1[size_t(i)] / (M - 1.0), p.momentum));
        }
      }
      return;
    }
    std::vector<detail::BnChannel<C>> chs(nC);
    for (int64_t i = 0; i < Cn; ++i) {
      chs[size_t(i)] = detail::bn_running_channel<C>(C(read(p.running_mean, i)), C(read(p.running_var, i)), p.eps);
      write(p.save_mean, i, double(chs[size_t(i)].hi));
      write(p.save_rstd, i, double(chs[size_t(i)].rstd));
    }
    forward_coeffs_from(chs.data(), w, bias);
    run(BnReduce::None, false, false);
  }

  void apply() {
    split<C>(p.mean, Cn, hi.data(), lo.data());
    std::vector<detail::BnChannel<C>> chs(nC);
    for (int64_t i = 0; i < Cn; ++i)
      chs[size_t(i)] = {hi[size_t(i)], C(lo[size_t(i)]), C(read(p.rstd, i))};
    forward_coeffs_from(chs.data(), param(p.weight, wbuf), param(p.bias, bbuf));
    run(BnReduce::None, false, false);
  }

  void stats() {
    if (empty) std::fill(r0.begin(), r0.end(), 0.0), std::fill(r1.begin(), r1.end(), 0.0);
    run(BnReduce::Moments, false, false);
    for (int64_t i = 0; i < Cn; ++i) write(p.stat_mean, i, r0[size_t(i)]), write(p.stat_m2, i, r1[size_t(i)]);
  }

  // ---- weight norm (SPEC §9): hi = 0, the norms from the moments -------------------------

  // A channel of zero norm has no direction (w = g·v/‖v‖ is undefined): an error, raised
  // after the kernel (which cannot throw) from the norms it computed.
  void check_norms(const std::vector<double>& norms) const {
    if (empty) return;
    for (int64_t i = 0; i < Cn; ++i)
      if (!(norms[size_t(i)] > 0.0) && !std::isnan(norms[size_t(i)]))
        throw Error(ErrorKind::Value,
                    "weight_norm: v: channel " + std::to_string(i) +
                        " has norm 0 (w = g·v/‖v‖ is undefined for a zero v)");
  }

  void weight_norm() {
    prep.finish.weight_norm = true;
    prep.finish.M = M;
    prep.finish.weight = param(p.weight, wbuf);
    run(BnReduce::Moments, false, true);
    std::vector<double> norms(nC);
    for (int64_t i = 0; i < Cn; ++i) {
      norms[size_t(i)] = detail::wn_norm(r0[size_t(i)], r1[size_t(i)], M);
      write(p.save_rstd, i, norms[size_t(i)]);
    }
    check_norms(norms);
  }

  void weight_norm_backward() {
    std::vector<double> norms(nC);
    for (int64_t i = 0; i < Cn; ++i) {
      norms[size_t(i)] = read(p.rstd, i);
      rstd[size_t(i)] = C(norms[size_t(i)]);
    }
    check_norms(norms);
    const C* w = param(p.weight, wbuf);
    prep.finish.weight_norm = true;
    prep.finish.backward = true;
    prep.finish.weight = w;
    prep.finish.rstd = rstd.data();
    if (empty) std::fill(r1.begin(), r1.end(), 0.0);
    run(BnReduce::Sums, true, p.out != nullptr);  // hi = 0: Σdw·(v − 0)
    for (int64_t i = 0; i < Cn; ++i)
      write(p.dweight, i, detail::wn_backward<C>(r1[size_t(i)], w ? w[i] : C(1), norms[size_t(i)]).dg);
  }

  // ---- backward --------------------------------------------------------------------------

  // hi (and lo, unless the reduction is to recover it) from the mean; rstd in C.
  std::vector<C> rstd = std::vector<C>(nC);
  std::vector<double> lo = std::vector<double>(nC);
  void backward_inputs() {
    split<C>(p.mean, Cn, hi.data(), lo.data());
    for (int64_t i = 0; i < Cn; ++i) rstd[size_t(i)] = C(read(p.rstd, i));
  }

  void backward_reduce() {
    backward_inputs();
    if (empty) std::fill(r0.begin(), r0.end(), 0.0), std::fill(r1.begin(), r1.end(), 0.0);
    run(BnReduce::Sums, false, false);
    for (int64_t i = 0; i < Cn; ++i) {
      write(p.red_dy, i, r0[size_t(i)]);
      write(p.red_dy_xhat, i, detail::bn_sum_dy_xhat<C>(r0[size_t(i)], r1[size_t(i)], lo[size_t(i)], rstd[size_t(i)]));
    }
  }

  void backward_apply() {
    backward_inputs();
    const C* w = param(p.weight, wbuf);
    for (int64_t i = 0; i < Cn; ++i) {
      const detail::BnBackward<C> g = detail::bn_backward<C>(
          true, hi[size_t(i)], lo[size_t(i)], rstd[size_t(i)], w ? w[i] : C(1), read(p.sum_dy, i),
          read(p.sum_dy_xhat, i), p.total);
      a[size_t(i)] = g.a, b[size_t(i)] = g.bd, c[size_t(i)] = g.c;
    }
    run(BnReduce::None, true, false);
  }

  void backward() {
    backward_inputs();
    const C* w = param(p.weight, wbuf);
    // The saved mean of this batch holds all C can: recover the rest from the data (as the row
    // norms do); a float64 mean for float C is used as hi + lo.
    const bool recover = p.training && p.mean.dtype == compute_dtype(p.x_dtype);
    const bool sums = p.training || p.dweight.p || p.dbias.p;
    prep.finish.backward = true;
    prep.finish.training = p.training;
    prep.finish.M = M;
    prep.finish.weight = w;
    prep.finish.rstd = rstd.data();
    prep.finish.lo = recover ? nullptr : lo.data();
    if (!p.training) {  // dx = γ·rstd·dy: no reduction needed for it
      for (int64_t i = 0; i < Cn; ++i) {
        const detail::BnBackward<C> g = detail::bn_backward<C>(false, hi[size_t(i)], 0.0, rstd[size_t(i)], w ? w[i] : C(1), 0.0, 0.0, M);
        a[size_t(i)] = g.a, b[size_t(i)] = g.bd, c[size_t(i)] = g.c;
      }
    }
    if (empty) std::fill(r0.begin(), r0.end(), 0.0), std::fill(r1.begin(), r1.end(), 0.0);
    run(sums ? BnReduce::Sums : BnReduce::None, true, p.training && p.out != nullptr);
    for (int64_t i = 0; i < Cn; ++i) {
      const double r = recover ? (M > 0 ? r2[size_t(i)] / M : 0.0) : lo[size_t(i)];
      write(p.dweight, i, detail::bn_sum_dy_xhat<C>(r0[size_t(i)], r1[size_t(i)], r, rstd[size_t(i)]));
      write(p.dbias, i, r0[size_t(i)]);
    }
  }
};

template <typename C>
void dispatch(const BnProblem& p) {
  Dispatch<C> d(p);
  switch (p.op) {
    case BnOp::Forward: return d.forward();
    case BnOp::Backward: return d.backward();
    case BnOp::Stats: return d.stats();
    case BnOp::Apply: return d.apply();
    case BnOp::BackwardReduce: return d.backward_reduce();
    case BnOp::BackwardApply: return d.backward_apply();
    case BnOp::WeightNorm: return d.weight_norm();
    case BnOp::WeightNormBackward: return d.weight_norm_backward();
  }
}

}  // namespace
}  // namespace normkit::cpu

namespace normkit::detail {

void cpu_batch_norm(const BnProblem& p) {
  if (p.x_dtype == DType::Float64)
    cpu::dispatch<double>(p);
  else
    cpu::dispatch<float>(p);
}

void cpu_moments_merge(const MomentsMergeProblem& p) {
  double total = 0;
  for (int64_t k = 0; k < p.K; ++k) total += cpu::read(p.counts, k);
  for (int64_t c = 0; c < p.C; ++c) {
    Moments<double> acc{0.0, 0.0, 0.0};
    for (int64_t k = 0; k < p.K; ++k)
      acc = merge_moments(acc, Moments<double>{cpu::read(p.counts, k), cpu::read(p.means, k * p.C + c),
                                               cpu::read(p.m2s, k * p.C + c)});
    cpu::write(p.mean, c, acc.mean);
    cpu::write(p.m2, c, acc.m2);
  }
  cpu::write(p.count, 0, total);
}

}  // namespace normkit::detail
