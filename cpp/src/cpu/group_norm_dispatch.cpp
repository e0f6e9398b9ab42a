// Group norm's CPU dispatch (instance norm is G = C): prepares the kernel's parameters,
// per-group inputs and scratch (cpu/group_norm_prep.hpp), runs the kernel, then derives what
// is per group or per channel from its results: the saved statistics and instance norm's
// running statistics (forward), dγ and dβ summed over n = 0, 1, ... (backward). Compiled
// without ISA flags.
#include <cmath>
#include <memory>
#include <vector>

#include "common/backends.hpp"
#include "cpu/chan_io.hpp"
#include "cpu/dispatch.hpp"

namespace normkit::cpu {
namespace {

using detail::GnProblem;

template <typename C>
void run(const GnProblem& p) {
  const int64_t NG = p.N * p.G, NC = p.N * p.C;
  const bool empty = p.rows == 0 || p.width == 0;
  const double M = double(p.group_count());
  GnPrep prep;
  ParamBuf wbuf, bbuf;
  prep.weight = as_compute(p.weight.p, p.weight.dtype, p.x_dtype, p.C, 0.0, wbuf);
  if (!p.backward) prep.bias = as_compute(p.bias.p, p.bias.dtype, p.x_dtype, p.C, 0.0, bbuf);
  std::vector<double> stats(size_t(2 * NG), 0.0), part, lo;
  std::vector<C> hi, rstd;
  if (p.backward) {
    hi.resize(size_t(NG));
    lo.resize(size_t(NG));
    rstd.resize(size_t(NG));
    split<C>(p.mean, NG, hi.data(), lo.data());
    for (int64_t i = 0; i < NG; ++i) rstd[size_t(i)] = C(read(p.rstd, i));
    part.assign(size_t(2 * NC), 0.0);
    prep.hi = hi.data();
    prep.rstd = rstd.data();
    // The saved mean of this batch holds all C can: recover the rest from the data (as batch
    // norm does); a float64 mean for float C is used as hi + lo.
    prep.lo = p.mean.dtype == compute_dtype(p.x_dtype) ? nullptr : lo.data();
    prep.part = part.data();
  } else {
    prep.stats = stats.data();
  }
  if (!empty) {
    const int64_t elems = p.rows * p.width;
    prep.threads = threads_for(elems, p.per_row ? NG : p.N);
    prep.nontemporal =
        p.out != nullptr && elems * dtype_size(p.x_dtype) >= nontemporal_threshold();
    prep.scratch_stride = (gn_scratch_bytes(p.C, sizeof(C)) + 63) / 64 * 64;
    std::unique_ptr<char[]> scratch(new char[prep.scratch_stride * size_t(prep.threads) + 64]);
    prep.scratch = reinterpret_cast<char*>((reinterpret_cast<uintptr_t>(scratch.get()) + 63) /
                                           64 * 64);
    current().group_norm(p, prep);
  }
  if (p.backward) {
    for (int64_t c = 0; c < p.C; ++c) {
      double dw = 0, db = 0;
      for (int64_t n = 0; n < p.N; ++n) dw += part[size_t(2 * (n * p.C + c))],
                                        db += part[size_t(2 * (n * p.C + c) + 1)];
      write(p.dweight, c, dw);
      write(p.dbias, c, db);
    }
    return;
  }
  for (int64_t i = 0; i < NG; ++i) {
    const detail::BnChannel<C> ch =
        detail::bn_batch_channel<C>(stats[size_t(2 * i)], stats[size_t(2 * i + 1)], M > 0 ? M : 1.0, p.eps);
    write(p.save_mean, i, double(ch.hi));
    write(p.save_rstd, i, double(ch.rstd));
  }
  if (p.running_mean.p != nullptr) {  // instance norm: G == C, spatial > 1
    const double S = double(p.spatial());
    for (int64_t c = 0; c < p.C; ++c) {
      double mean = 0, var = 0;
      for (int64_t n = 0; n < p.N; ++n)
        mean += stats[size_t(2 * (n * p.C + c))], var += stats[size_t(2 * (n * p.C + c) + 1)] / (S - 1.0);
      const double inv = 1.0 / double(p.N);
      write(p.running_mean, c, detail::bn_running_update(read(p.running_mean, c), mean * inv, p.momentum));
      write(p.running_var, c, detail::bn_running_update(read(p.running_var, c), var * inv, p.momentum));
    }
  }
}

}  // namespace
}  // namespace normkit::cpu

namespace normkit::detail {

void cpu_group_norm(const GnProblem& p) {
  if (p.x_dtype == DType::Float64)
    cpu::run<double>(p);
  else
    cpu::run<float>(p);
}

}  // namespace normkit::detail
