// cuda/batch_layer_norm.cu — batch layer norm on the GPU (SPEC §7): cpp/src/batch_layer_norm.cpp's
// entry points as the CPU's phases (cpu/batch_layer_norm_prep.hpp), with the same per-column
// and per-row math (common/batch_norm_math.hpp):
//
//   bln_columns_kernel, one thread per column j = p·F + f: the batch statistics over the B
//     samples (two passes; backward: Σdy, Σdy·d_b, Σd_b) and everything per column —
//     saved and running statistics, the elementwise coefficients;
//   bln_rows_kernel, one block per feature row: its statistics (two-pass block tree) or the
//     running ones, saved; the backward's weighted sums; the elementwise pass;
//   forward: bln_feature_running_kernel, one thread per position (samples in order);
//   backward: bln_param_kernel (per split of rows, one thread per feature) and
//     bln_param_sum_kernel (splits in order): dγ, dβ.
//
// Orders depend on the shape only; no atomics. Untuned: scalar loads, one column per thread.
#include <cmath>
#include <cstdint>

#include "common.cuh"
#include "common/backends.hpp"
#include "common/batch_layer_norm_problem.hpp"
#include "common/batch_norm_math.hpp"
#include "common/lane.hpp"

namespace normkit::detail::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kRowsPerSplitMin = 64;
constexpr int64_t kMaxSplits = 256;

__device__ __forceinline__ void wr(const Chan& c, int64_t i, double v) {
  if (c.p != nullptr) store_as(c.p, c.dtype, i, v);
}

struct Args {
  int64_t B = 0, P = 0, F = 0;
  const void* x = nullptr;
  RowIndex x_idx;
  const void* dy = nullptr;
  RowIndex dy_idx;
  void* out = nullptr;
  RowIndex out_idx;
  Arr weight, bias;
  bool batch_input = true, feature_input = true;
  bool recover_b = false, recover_f = false;
  Chan run_bmean, run_bvar, run_fmean, run_fvar, bmean, brstd, fmean, frstd, dweight, dbias;
  double momentum = 0, eps = 0, wf = 0, wb = 0, rsqrt_f = 1;
  // Scratch: per column [P·F] compute type: hb, ab, bdb, cb, kb, kb0; per row [B·P]: rowstat
  // (double mean, M2) forward, or hi_f, kf, kf0 (compute type) backward; param partials.
  void* col[6] = {};
  double* rowstat = nullptr;
  void* row[3] = {};
  double* part = nullptr;  // [nsplit][2][F]
  int64_t rows_per_split = 0, nsplit = 0;
};

template <typename T>
__device__ __forceinline__ compute_t<T> ld(const void* base, const RowIndex& idx, int64_t b,
                                           int64_t j) {
  return to_c(static_cast<const T*>(base)[idx.offset(b) + j]);
}
template <typename T>
__device__ __forceinline__ compute_t<T> gamma(const Args& a, int64_t f) {
  using C = compute_t<T>;
  return (a.weight.p ? C(rd(a.weight, f)) : C(1)) * C(a.rsqrt_f);
}

// One thread per column; any grid.
template <typename T, bool kBwd>
__global__ void __launch_bounds__(kThreads) bln_columns_kernel(const __grid_constant__ Args a) {
  using C = compute_t<T>;
  const int64_t PF = a.P * a.F;
  C* hb = static_cast<C*>(a.col[0]);
  C* ab = static_cast<C*>(a.col[1]);
  C* bdb = static_cast<C*>(a.col[2]);
  C* cb = static_cast<C*>(a.col[3]);
  C* kb = static_cast<C*>(a.col[4]);
  C* kb0 = static_cast<C*>(a.col[5]);
  const double B = double(a.B);
  for (int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; j < PF;
       j += int64_t(gridDim.x) * blockDim.x) {
    if constexpr (!kBwd) {
      BnChannel<C> ch;
      if (a.batch_input) {
        C s = C(0);
        for (int64_t b = 0; b < a.B; ++b) s += ld<T>(a.x, a.x_idx, b, j);
        const C m = s / C(a.B);
        C q0 = C(0), q1 = C(0);
        for (int64_t b = 0; b < a.B; ++b) {
          const C d = ld<T>(a.x, a.x_idx, b, j) - m;
          q0 += d;
          q1 += d * d;
        }
        const Moments<double> cm = corrected_moments<C>(a.B, m, q0, q1);
        ch = bn_batch_channel<C>(cm.mean, cm.m2, B, a.eps);
        if (a.run_bmean.p) {
          const Arr rm = arr(a.run_bmean), rv = arr(a.run_bvar);
          wr(a.run_bmean, j, bn_running_update(rd(rm, j), cm.mean, a.momentum));
          wr(a.run_bvar, j, bn_running_update(rd(rv, j), cm.m2 / (B - 1.0), a.momentum));
        }
      } else {
        ch = bn_running_channel<C>(C(rd(arr(a.run_bmean), j)), C(rd(arr(a.run_bvar), j)), a.eps);
      }
      wr(a.bmean, j, double(ch.hi));
      wr(a.brstd, j, double(ch.rstd));
      const C k = C(a.wb) * ch.rstd;
      hb[j] = ch.hi, ab[j] = k, cb[j] = -k * ch.lo;
    } else {
      const double mean = rd(arr(a.bmean), j);
      const C h = C(mean), rstd = C(rd(arr(a.brstd), j));
      const C w = C(a.wb) * gamma<T>(a, j % a.F);
      double r = mean - double(h);
      BnBackward<C> g;
      if (a.batch_input) {
        C s0 = C(0), s1 = C(0), s2 = C(0);
        for (int64_t b = 0; b < a.B; ++b) {
          const C dy = ld<T>(a.dy, a.dy_idx, b, j), d = ld<T>(a.x, a.x_idx, b, j) - h;
          s0 += dy;
          s1 += dy * d;
          s2 += d;
        }
        if (a.recover_b) r = double(s2) / B;
        const double sdx = bn_sum_dy_xhat<C>(double(s0), double(s1), r, rstd);
        g = bn_backward<C>(true, h, r, rstd, w, double(s0), sdx, B);
      } else {
        g = bn_backward<C>(false, h, 0.0, rstd, w, 0.0, 0.0, 1.0);
      }
      hb[j] = h, ab[j] = g.a, bdb[j] = g.bd, cb[j] = g.c;
      const C k = C(a.wb * a.rsqrt_f) * rstd;
      kb[j] = k, kb0[j] = C(-double(k) * r);
    }
  }
}

// One block per feature row (grid-stride, uniform over the block). Assumptions:
// blockDim.x = kThreads, blockDim.y = 1.
template <typename T, bool kBwd>
__global__ void __launch_bounds__(kThreads, 1) bln_rows_kernel(const __grid_constant__ Args a) {
  using C = compute_t<T>;
  __shared__ C red[kThreads / 32][3];
  const C* hb = static_cast<const C*>(a.col[0]);
  const C* ab = static_cast<const C*>(a.col[1]);
  const C* bdb = static_cast<const C*>(a.col[2]);
  const C* cb = static_cast<const C*>(a.col[3]);
  for (int64_t r = blockIdx.x; r < a.B * a.P; r += gridDim.x) {
    const int64_t b = r / a.P, j0 = (r - b * a.P) * a.F;
    if constexpr (!kBwd) {
      BnChannel<C> ch;
      if (a.feature_input) {
        C s[1] = {C(0)};
        for (int64_t f = threadIdx.x; f < a.F; f += kThreads) s[0] += ld<T>(a.x, a.x_idx, b, j0 + f);
        group_sum(s, red);
        const C m = s[0] / C(a.F);
        C q[2] = {C(0), C(0)};
        for (int64_t f = threadIdx.x; f < a.F; f += kThreads) {
          const C d = ld<T>(a.x, a.x_idx, b, j0 + f) - m;
          q[0] += d;
          q[1] += d * d;
        }
        group_sum(q, red);
        const Moments<double> cm = corrected_moments<C>(a.F, m, q[0], q[1]);
        ch = bn_batch_channel<C>(cm.mean, cm.m2, double(a.F), a.eps);
        if (threadIdx.x == 0) a.rowstat[2 * r] = cm.mean, a.rowstat[2 * r + 1] = cm.m2;
      } else {
        const int64_t q = r - b * a.P;
        ch = bn_running_channel<C>(C(rd(arr(a.run_fmean), q)), C(rd(arr(a.run_fvar), q)), a.eps);
      }
      if (threadIdx.x == 0) wr(a.fmean, r, double(ch.hi)), wr(a.frstd, r, double(ch.rstd));
      const C af = C(a.wf) * ch.rstd, cf = -af * ch.lo;
      for (int64_t f = threadIdx.x; f < a.F; f += kThreads) {
        const int64_t j = j0 + f;
        const C x = ld<T>(a.x, a.x_idx, b, j);
        const C t = Lane<C>::fmadd(Lane<C>::set1(af), Lane<C>::set1(x - ch.hi),
                                   Lane<C>::fmadd(Lane<C>::set1(ab[j]), Lane<C>::set1(x - hb[j]),
                                                  Lane<C>::set1(cf + cb[j]))).v;
        const C bias = a.bias.p ? C(rd(a.bias, f)) : C(0);
        const C y = Lane<C>::fmadd(Lane<C>::set1(gamma<T>(a, f)), Lane<C>::set1(t), Lane<C>::set1(bias)).v;
        static_cast<T*>(a.out)[a.out_idx.offset(b) + j] = from_c<T>(y);
      }
    } else {
      const double mean = rd(arr(a.fmean), r);
      const C hi = C(mean), rstd = C(rd(arr(a.frstd), r));
      double rf = mean - double(hi);
      C af = C(a.wf) * rstd, bdf = C(0), cf = C(0);
      if (a.feature_input) {
        C s[3] = {C(0), C(0), C(0)};
        for (int64_t f = threadIdx.x; f < a.F; f += kThreads) {
          const C g = ld<T>(a.dy, a.dy_idx, b, j0 + f) * gamma<T>(a, f);
          const C d = ld<T>(a.x, a.x_idx, b, j0 + f) - hi;
          s[0] += g;
          s[1] += g * d;
          s[2] += d;
        }
        group_sum(s, red);
        if (a.recover_f) rf = double(s[2]) / double(a.F);
        const double sgx = bn_sum_dy_xhat<C>(double(s[0]), double(s[1]), rf, rstd);
        const BnBackward<C> g = bn_backward<C>(true, hi, rf, rstd, C(a.wf), double(s[0]), sgx, double(a.F));
        af = g.a, bdf = g.bd, cf = g.c;
      }
      const C kf = C(a.wf * a.rsqrt_f) * rstd;
      if (threadIdx.x == 0) {
        static_cast<C*>(a.row[0])[r] = hi;
        static_cast<C*>(a.row[1])[r] = kf;
        static_cast<C*>(a.row[2])[r] = C(-double(kf) * rf);
      }
      if (a.out == nullptr) continue;
      for (int64_t f = threadIdx.x; f < a.F; f += kThreads) {
        const int64_t j = j0 + f;
        const C dy = ld<T>(a.dy, a.dy_idx, b, j), x = ld<T>(a.x, a.x_idx, b, j);
        const C k = Lane<C>::fmadd(Lane<C>::set1(af), Lane<C>::set1(gamma<T>(a, f)), Lane<C>::set1(ab[j])).v;
        const C v = Lane<C>::fmadd(
            Lane<C>::set1(k), Lane<C>::set1(dy),
            Lane<C>::fmadd(Lane<C>::set1(bdf), Lane<C>::set1(x - hi),
                           Lane<C>::fmadd(Lane<C>::set1(bdb[j]), Lane<C>::set1(x - hb[j]),
                                          Lane<C>::set1(cf + cb[j])))).v;
        static_cast<T*>(a.out)[a.out_idx.offset(b) + j] = from_c<T>(v);
      }
    }
  }
}

// Instance-averaged running feature statistics: one thread per position; any grid.
__global__ void bln_feature_running_kernel(const __grid_constant__ Args a) {
  for (int64_t q = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; q < a.P;
       q += int64_t(gridDim.x) * blockDim.x) {
    double mean = 0.0, var = 0.0;
    for (int64_t b = 0; b < a.B; ++b) {
      mean += a.rowstat[2 * (b * a.P + q)];
      var += a.rowstat[2 * (b * a.P + q) + 1] / double(a.F - 1);
    }
    wr(a.run_fmean, q, bn_running_update(rd(arr(a.run_fmean), q), mean / double(a.B), a.momentum));
    wr(a.run_fvar, q, bn_running_update(rd(arr(a.run_fvar), q), var / double(a.B), a.momentum));
  }
}

// dγ, dβ partials of one split of rows: gridDim = (ceil(F / kThreads), nsplit).
template <typename T>
__global__ void __launch_bounds__(kThreads) bln_param_kernel(const __grid_constant__ Args a) {
  using C = compute_t<T>;
  const int64_t f = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (f >= a.F) return;
  const C* hb = static_cast<const C*>(a.col[0]);
  const C* kb = static_cast<const C*>(a.col[4]);
  const C* kb0 = static_cast<const C*>(a.col[5]);
  const C* hf = static_cast<const C*>(a.row[0]);
  const C* kf = static_cast<const C*>(a.row[1]);
  const C* kf0 = static_cast<const C*>(a.row[2]);
  const int64_t r0 = int64_t(blockIdx.y) * a.rows_per_split;
  const int64_t r1 = min(r0 + a.rows_per_split, a.B * a.P);
  C sw = C(0), sb = C(0);
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t b = r / a.P, j = (r - b * a.P) * a.F + f;
    const C dy = ld<T>(a.dy, a.dy_idx, b, j), x = ld<T>(a.x, a.x_idx, b, j);
    const C xh = kf[r] * (x - hf[r]) + kf0[r] + kb[j] * (x - hb[j]) + kb0[j];
    sw += dy * xh;
    sb += dy;
  }
  double* out = a.part + int64_t(blockIdx.y) * 2 * a.F;
  out[f] = double(sw), out[a.F + f] = double(sb);
}

// The splits in order; one thread per feature; any grid.
__global__ void bln_param_sum_kernel(const __grid_constant__ Args a) {
  for (int64_t f = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; f < a.F;
       f += int64_t(gridDim.x) * blockDim.x) {
    double sw = 0.0, sb = 0.0;
    for (int64_t k = 0; k < a.nsplit; ++k) sw += a.part[k * 2 * a.F + f], sb += a.part[k * 2 * a.F + a.F + f];
    wr(a.dweight, f, sw);
    wr(a.dbias, f, sb);
  }
}

template <typename T>
void run(const BlnProblem& p, cudaStream_t st) {
  using C = compute_t<T>;
  Args a;
  a.B = p.B, a.P = p.P, a.F = p.F;
  a.x = p.x, a.x_idx = p.x_idx, a.dy = p.dy, a.dy_idx = p.dy_idx, a.out = p.out, a.out_idx = p.out_idx;
  a.weight = arr(p.weight), a.bias = arr(p.bias);
  a.batch_input = p.batch_input, a.feature_input = p.feature_input;
  const DType cdt = p.x_dtype == DType::Float64 ? DType::Float64 : DType::Float32;
  a.recover_b = p.batch_input && p.bmean.dtype == cdt;
  a.recover_f = p.feature_input && p.fmean.dtype == cdt;
  a.run_bmean = p.run_bmean, a.run_bvar = p.run_bvar, a.run_fmean = p.run_fmean, a.run_fvar = p.run_fvar;
  a.bmean = p.bmean, a.brstd = p.brstd, a.fmean = p.fmean, a.frstd = p.frstd;
  a.dweight = p.dweight, a.dbias = p.dbias;
  a.momentum = p.momentum, a.eps = p.eps, a.wf = p.wf, a.wb = p.wb;
  a.rsqrt_f = 1.0 / std::sqrt(double(p.F));
  const int64_t PF = p.P * p.F, R = p.B * p.P;
  const bool empty = R == 0;
  a.nsplit = empty ? 0 : ceil_div(R, kRowsPerSplitMin);
  if (a.nsplit > kMaxSplits) a.nsplit = kMaxSplits;
  a.rows_per_split = a.nsplit > 0 ? ceil_div(R, a.nsplit) : 0;
  if (a.nsplit > 0) a.nsplit = ceil_div(R, a.rows_per_split);
  const size_t col_bytes = align_up(size_t(PF) * sizeof(C));
  const size_t rowstat_bytes = align_up(size_t(2 * R) * sizeof(double));
  const size_t row_bytes = align_up(size_t(R) * sizeof(C));
  const size_t part_bytes = align_up(size_t(a.nsplit * 2 * p.F) * sizeof(double));
  StreamScratch scratch(6 * col_bytes + rowstat_bytes + 3 * row_bytes + part_bytes, st);
  char* ws = static_cast<char*>(scratch.get());
  for (int k = 0; k < 6; ++k) a.col[k] = ws + k * col_bytes;
  a.rowstat = reinterpret_cast<double*>(ws + 6 * col_bytes);
  for (int k = 0; k < 3; ++k) a.row[k] = ws + 6 * col_bytes + rowstat_bytes + k * row_bytes;
  a.part = reinterpret_cast<double*>(ws + 6 * col_bytes + rowstat_bytes + 3 * row_bytes);
  const int dev = p.device_index;
  if (!p.backward) {
    if (empty) return;
    const auto kc = bln_columns_kernel<T, false>;
    launch("bln_columns_kernel", kc, grid_size(kc, kThreads, ceil_div(PF, kThreads), dev), kThreads, 0, st, a);
    const auto kr = bln_rows_kernel<T, false>;
    launch("bln_rows_kernel", kr, grid_size(kr, kThreads, R, dev), kThreads, 0, st, a);
    if (p.feature_input && p.run_fmean.p)
      launch("bln_feature_running_kernel", bln_feature_running_kernel,
             grid_size(bln_feature_running_kernel, kThreads, ceil_div(p.P, kThreads), dev), kThreads, 0, st, a);
    return;
  }
  if (!empty) {
    const auto kc = bln_columns_kernel<T, true>;
    launch("bln_columns_kernel", kc, grid_size(kc, kThreads, ceil_div(PF, kThreads), dev), kThreads, 0, st, a);
    const auto kr = bln_rows_kernel<T, true>;
    launch("bln_rows_kernel", kr, grid_size(kr, kThreads, R, dev), kThreads, 0, st, a);
    if (p.dweight.p || p.dbias.p)
      launch("bln_param_kernel", bln_param_kernel<T>,
             dim3(unsigned(ceil_div(p.F, kThreads)), unsigned(a.nsplit)), dim3(kThreads), 0, st, a);
  }
  if (p.dweight.p || p.dbias.p)
    launch("bln_param_sum_kernel", bln_param_sum_kernel,
           grid_size(bln_param_sum_kernel, kThreads, ceil_div(p.F, kThreads), dev), kThreads, 0, st, a);
}

}  // namespace

void batch_layer_norm(const BlnProblem& p, Stream stream) {
  DeviceGuard guard(p.device_index);
  const auto st = static_cast<cudaStream_t>(stream);
  dispatch_dtype(p.x_dtype, [&](auto tag) { run<decltype(tag)>(p, st); });
}

}  // namespace normkit::detail::cuda
