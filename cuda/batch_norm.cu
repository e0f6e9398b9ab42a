// cuda/batch_norm.cu — batch norm on the GPU (SPEC §4), and weight norm (SPEC §9) on the same
// kernels: every entry point of cpp/src/batch_norm.cpp as up to three launches, as on the CPU (cpu/batch_norm_dispatch.cpp):
//
//   1. a reduction (the moments of x, or the backward's Σdy, Σdy·d, Σd with d = x − hi) into
//      per-plane (channels first) or per-split (channels last) partials, in double;
//   2. bn_channel_kernel, one thread per channel: adds the partials in order, then computes
//      everything per channel on the device — statistics, running-statistic updates, saved
//      statistics, dweight / dbias and the coefficients of the elementwise pass — with the
//      functions of common/batch_norm_math.hpp (the CPU's), so there is no host round trip;
//   3. the elementwise pass: y = (x − hi)·a + b, or dx = a·dy + b·(x − hi) + c.
//
// Orders depend on the shape only: a plane is reduced by one block with a fixed tree (the
// moments by two passes, Note [Corrected two-pass]), planes are added n = 0, 1, ...;
// channels last, each (32-column tile, row split) block walks fixed rows (per-thread
// Welford, the 8 row lanes Chan-merged in order), splits are merged in order. No atomics.
#include <cstdint>
#include <string>

#include "common.cuh"
#include "common/backends.hpp"
#include "common/batch_norm_math.hpp"
#include "common/batch_norm_problem.hpp"
#include "common/lane.hpp"

namespace normkit::detail::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kColTile = 32;
constexpr int kColRows = 8;
constexpr int64_t kRowsPerSplitMin = 64;
constexpr int64_t kMaxSplits = 256;

enum Mode : int { kNoReduce = 0, kMoments = 1, kSums = 2 };

__device__ __forceinline__ void wr(void* p, DType dt, int64_t i, double v) {
  if (p != nullptr) store_as(p, dt, i, v);
}

struct RedArgs {
  int mode = kNoReduce;
  int64_t rows = 0, width = 0, C = 0, rows_per_split = 0;
  const void* x = nullptr;
  RowIndex x_idx;
  const void* dy = nullptr;
  RowIndex dy_idx;
  Arr mean;               // kSums: hi = C(mean)
  double* part = nullptr;  // [rows][3] (planes) or [nsplit][3][C] (columns)
};

// Channels first. Assumptions: blockDim.x = kThreads, blockDim.y = 1; any grid (grid-stride
// over planes; the loop is uniform over the block).
template <typename T, int kMode>
__global__ void __launch_bounds__(kThreads) bn_reduce_planes_kernel(const __grid_constant__ RedArgs a) {
  using C = compute_t<T>;
  __shared__ C red[kThreads / 32][3];
  for (int64_t r = blockIdx.x; r < a.rows; r += gridDim.x) {
    const T* xr = static_cast<const T*>(a.x) + a.x_idx.offset(r);
    double* out = a.part + 3 * r;
    if constexpr (kMode == kMoments) {
      C s[1] = {C(0)};
      for (int64_t j = threadIdx.x; j < a.width; j += kThreads) s[0] += to_c(xr[j]);
      group_sum(s, red);
      const C m = s[0] / C(a.width);
      C q[2] = {C(0), C(0)};
      for (int64_t j = threadIdx.x; j < a.width; j += kThreads) {
        const C d = C(to_c(xr[j])) - m;
        q[0] += d;
        q[1] += d * d;
      }
      group_sum(q, red);
      if (threadIdx.x == 0) {
        const Moments<double> cm = corrected_moments<C>(a.width, m, q[0], q[1]);
        out[0] = cm.mean, out[1] = cm.m2, out[2] = 0.0;
      }
    } else {
      const T* dyr = static_cast<const T*>(a.dy) + a.dy_idx.offset(r);
      const C hi = a.mean.p ? C(rd(a.mean, r % a.C)) : C(0);  // weight norm: no mean
      C s[3] = {C(0), C(0), C(0)};
      for (int64_t j = threadIdx.x; j < a.width; j += kThreads) {
        const C g = to_c(dyr[j]), d = C(to_c(xr[j])) - hi;
        s[0] += g;
        s[1] += g * d;
        s[2] += d;
      }
      group_sum(s, red);
      if (threadIdx.x == 0) out[0] = double(s[0]), out[1] = double(s[1]), out[2] = double(s[2]);
    }
  }
}

// Channels last. Assumptions: blockDim = (kColTile, kColRows); gridDim = (ceil(C / kColTile),
// nsplit).
template <typename T, int kMode>
__global__ void __launch_bounds__(kColTile* kColRows, 1) bn_reduce_columns_kernel(const __grid_constant__ RedArgs a) {
  using C = compute_t<T>;
  __shared__ double red[3][kColRows][kColTile];
  const int tx = int(threadIdx.x), ty = int(threadIdx.y);
  const int64_t col = int64_t(blockIdx.x) * kColTile + tx;
  const int64_t r0 = int64_t(blockIdx.y) * a.rows_per_split;
  const int64_t r1 = min(r0 + a.rows_per_split, a.rows);
  double v0 = 0.0, v1 = 0.0, v2 = 0.0;
  if (col < a.C) {
    if constexpr (kMode == kMoments) {  // Welford over this thread's rows
      C n = C(0), mean = C(0), m2 = C(0);
      for (int64_t r = r0 + ty; r < r1; r += kColRows) {
        const C x = to_c(static_cast<const T*>(a.x)[a.x_idx.offset(r) + col]);
        n += C(1);
        const C d = x - mean;
        mean += d / n;
        m2 += d * (x - mean);
      }
      v0 = double(n), v1 = double(mean), v2 = double(m2);
    } else {
      const C hi = a.mean.p ? C(rd(a.mean, col)) : C(0);
      C s0 = C(0), s1 = C(0), s2 = C(0);
      for (int64_t r = r0 + ty; r < r1; r += kColRows) {
        const C g = to_c(static_cast<const T*>(a.dy)[a.dy_idx.offset(r) + col]);
        const C d = C(to_c(static_cast<const T*>(a.x)[a.x_idx.offset(r) + col])) - hi;
        s0 += g;
        s1 += g * d;
        s2 += d;
      }
      v0 = double(s0), v1 = double(s1), v2 = double(s2);
    }
  }
  red[0][ty][tx] = v0;
  red[1][ty][tx] = v1;
  red[2][ty][tx] = v2;
  __syncthreads();
  if (ty == 0 && col < a.C) {
    double* out = a.part + int64_t(blockIdx.y) * 3 * a.C;
    if constexpr (kMode == kMoments) {
      Moments<double> m{0.0, 0.0, 0.0};
      for (int k = 0; k < kColRows; ++k)  // the row lanes in order
        m = merge_moments(m, Moments<double>{red[0][k][tx], red[1][k][tx], red[2][k][tx]});
      out[col] = m.mean, out[a.C + col] = m.m2, out[2 * a.C + col] = 0.0;
    } else {
      double s0 = 0.0, s1 = 0.0, s2 = 0.0;
      for (int k = 0; k < kColRows; ++k) s0 += red[0][k][tx], s1 += red[1][k][tx], s2 += red[2][k][tx];
      out[col] = s0, out[a.C + col] = s1, out[2 * a.C + col] = s2;
    }
  }
}

struct ChanArgs {
  BnOp op = BnOp::Forward;
  int mode = kNoReduce;
  bool per_row = false, training = false, recover = false;
  int64_t C = 0, parts = 0, rows = 0, rows_per_split = 0;  // parts: planes per channel / splits
  double plane = 0;  // elements per plane (channels first)
  double M = 0, eps = 0, momentum = 0, total = 0;
  const double* part = nullptr;
  Arr mean, rstd, weight, bias, running_mean, running_var, sum_dy, sum_dy_xhat;
  void* running_mean_out = nullptr;  // training: the running statistics, updated
  void* running_var_out = nullptr;
  Chan save_mean, save_rstd, stat_mean, stat_m2, red_dy, red_dy_xhat, dweight, dbias;
  void* hi = nullptr;  // [C] compute type each
  void* ca = nullptr;
  void* cb = nullptr;
  void* cc = nullptr;
};

// One thread per channel; any grid (grid-stride).
template <typename T>
__global__ void bn_channel_kernel(const __grid_constant__ ChanArgs a) {
  using C = compute_t<T>;
  for (int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; c < a.C;
       c += int64_t(gridDim.x) * blockDim.x) {
    double r0 = 0.0, r1 = 0.0, r2 = 0.0;
    if (a.mode == kMoments) {
      Moments<double> m{0.0, 0.0, 0.0};
      for (int64_t k = 0; k < a.parts; ++k) {
        const double* q = a.per_row ? a.part + 3 * (k * a.C + c) : a.part + k * 3 * a.C + c;
        const double n = a.per_row ? a.plane
                                   : double(min(a.rows_per_split, a.rows - k * a.rows_per_split));
        m = merge_moments(m, Moments<double>{n, q[0], q[a.per_row ? 1 : a.C]});
      }
      r0 = m.mean, r1 = m.m2;
    } else if (a.mode == kSums) {
      for (int64_t k = 0; k < a.parts; ++k) {
        const double* q = a.per_row ? a.part + 3 * (k * a.C + c) : a.part + k * 3 * a.C + c;
        const int64_t s = a.per_row ? 1 : a.C;
        r0 += q[0], r1 += q[s], r2 += q[2 * s];
      }
    }
    const C w = a.weight.p ? C(rd(a.weight, c)) : C(1);
    const C b = a.bias.p ? C(rd(a.bias, c)) : C(0);
    C* hi = static_cast<C*>(a.hi);
    C* ca = static_cast<C*>(a.ca);
    C* cb = static_cast<C*>(a.cb);
    C* cc = static_cast<C*>(a.cc);
    switch (a.op) {
      case BnOp::Forward: {
        const BnChannel<C> ch = a.training
            ? bn_batch_channel<C>(r0, r1, a.M, a.eps)
            : bn_running_channel<C>(C(rd(a.running_mean, c)), C(rd(a.running_var, c)), a.eps);
        const BnAffine<C> aff = bn_affine<C>(ch, w, b);
        hi[c] = aff.hi, ca[c] = aff.a, cb[c] = aff.b;
        wr(a.save_mean.p, a.save_mean.dtype, c, double(ch.hi));
        wr(a.save_rstd.p, a.save_rstd.dtype, c, double(ch.rstd));
        if (a.training && a.running_mean_out != nullptr) {
          wr(a.running_mean_out, a.running_mean.dt, c,
             bn_running_update(rd(a.running_mean, c), r0, a.momentum));
          wr(a.running_var_out, a.running_var.dt, c,
             bn_running_update(rd(a.running_var, c), r1 / (a.M - 1.0), a.momentum));
        }
        break;
      }
      case BnOp::Stats:
        wr(a.stat_mean.p, a.stat_mean.dtype, c, r0);
        wr(a.stat_m2.p, a.stat_m2.dtype, c, r1);
        break;
      case BnOp::Apply: {
        const double mean = rd(a.mean, c);
        const BnChannel<C> ch{C(mean), C(mean - double(C(mean))), C(rd(a.rstd, c))};
        const BnAffine<C> aff = bn_affine<C>(ch, w, b);
        hi[c] = aff.hi, ca[c] = aff.a, cb[c] = aff.b;
        break;
      }
      case BnOp::BackwardReduce: {
        const double mean = rd(a.mean, c);
        const double lo = mean - double(C(mean));
        wr(a.red_dy.p, a.red_dy.dtype, c, r0);
        wr(a.red_dy_xhat.p, a.red_dy_xhat.dtype, c,
           bn_sum_dy_xhat<C>(r0, r1, lo, C(rd(a.rstd, c))));
        break;
      }
      case BnOp::WeightNorm: {  // common/batch_norm_math.hpp: w = v·g/‖v‖
        const double norm = wn_norm(r0, r1, a.M);
        hi[c] = C(0), ca[c] = C(double(w) / norm), cb[c] = C(0);
        wr(a.save_rstd.p, a.save_rstd.dtype, c, norm);
        break;
      }
      case BnOp::WeightNormBackward: {
        const WnBackward<C> g = wn_backward<C>(r1, w, rd(a.rstd, c));
        hi[c] = C(0), ca[c] = g.a, cb[c] = g.bd, cc[c] = C(0);
        wr(a.dweight.p, a.dweight.dtype, c, g.dg);
        break;
      }
      case BnOp::BackwardApply:
      case BnOp::Backward: {
        const double mean = rd(a.mean, c);
        const C h = C(mean), rstd = C(rd(a.rstd, c));
        double sdy, sdx, r, M;
        if (a.op == BnOp::BackwardApply) {
          r = mean - double(h);
          sdy = rd(a.sum_dy, c), sdx = rd(a.sum_dy_xhat, c), M = a.total;
        } else {
          r = a.recover ? (a.M > 0 ? r2 / a.M : 0.0) : mean - double(h);
          sdy = r0, sdx = bn_sum_dy_xhat<C>(r0, r1, r, rstd), M = a.M;
          wr(a.dweight.p, a.dweight.dtype, c, sdx);
          wr(a.dbias.p, a.dbias.dtype, c, sdy);
        }
        const bool train = a.op == BnOp::BackwardApply || a.training;
        const BnBackward<C> g = bn_backward<C>(train, h, train ? r : 0.0, rstd, w, sdy, sdx, M);
        hi[c] = g.hi, ca[c] = g.a, cb[c] = g.bd, cc[c] = g.c;
        break;
      }
    }
  }
}

struct MapArgs {
  bool backward = false, per_row = false;
  int64_t rows = 0, width = 0, C = 0;
  const void* x = nullptr;
  RowIndex x_idx;
  const void* dy = nullptr;
  RowIndex dy_idx;
  void* out = nullptr;
  RowIndex out_idx;
  const void* hi = nullptr;
  const void* ca = nullptr;
  const void* cb = nullptr;
  const void* cc = nullptr;
};

// Elementwise; any grid (grid-stride over every element).
template <typename T>
__global__ void __launch_bounds__(kThreads) bn_map_kernel(const __grid_constant__ MapArgs a) {
  using C = compute_t<T>;
  const int64_t total = a.rows * a.width;
  const C* hi = static_cast<const C*>(a.hi);
  const C* ca = static_cast<const C*>(a.ca);
  const C* cb = static_cast<const C*>(a.cb);
  const C* cc = static_cast<const C*>(a.cc);
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / a.width, j = i - r * a.width;
    const int64_t c = a.per_row ? r % a.C : j;
    const C d = C(to_c(static_cast<const T*>(a.x)[a.x_idx.offset(r) + j])) - hi[c];
    C v;
    if (a.backward) {
      const C g = to_c(static_cast<const T*>(a.dy)[a.dy_idx.offset(r) + j]);
      v = Lane<C>::fmadd(Lane<C>::set1(ca[c]), Lane<C>::set1(g),
                         Lane<C>::fmadd(Lane<C>::set1(cb[c]), Lane<C>::set1(d), Lane<C>::set1(cc[c]))).v;
    } else {
      v = Lane<C>::fmadd(Lane<C>::set1(d), Lane<C>::set1(ca[c]), Lane<C>::set1(cb[c])).v;
    }
    static_cast<T*>(a.out)[a.out_idx.offset(r) + j] = from_c<T>(v);
  }
}

template <typename T>
void run(const BnProblem& p, cudaStream_t st) {
  using C = compute_t<T>;
  const int64_t Cn = p.C;
  const bool empty = p.rows == 0 || p.width == 0;
  const double M = double(p.count());
  int mode = kNoReduce;
  switch (p.op) {
    case BnOp::Forward: mode = p.training ? kMoments : kNoReduce; break;
    case BnOp::Stats: mode = kMoments; break;
    case BnOp::BackwardReduce: mode = kSums; break;
    case BnOp::Backward: mode = (p.training || p.dweight.p || p.dbias.p) ? kSums : kNoReduce; break;
    case BnOp::WeightNorm: mode = kMoments; break;
    case BnOp::WeightNormBackward: mode = kSums; break;
    case BnOp::Apply:
    case BnOp::BackwardApply: break;
  }
  int64_t parts = 0, rps = 0;
  size_t part_bytes = 0;
  if (!empty && mode != kNoReduce) {
    if (p.per_row) {
      parts = p.rows / Cn;
      part_bytes = align_up(size_t(3 * p.rows) * sizeof(double));
    } else {
      parts = ceil_div(p.rows, kRowsPerSplitMin);  // depends on rows only
      if (parts > kMaxSplits) parts = kMaxSplits;
      rps = ceil_div(p.rows, parts);
      parts = ceil_div(p.rows, rps);
      part_bytes = align_up(size_t(parts) * size_t(3 * Cn) * sizeof(double));
    }
  }
  const size_t coef_bytes = align_up(size_t(Cn) * sizeof(C));
  StreamScratch scratch(part_bytes + 4 * coef_bytes, st);
  char* ws = static_cast<char*>(scratch.get());
  double* part = reinterpret_cast<double*>(ws);
  char* coef = ws + part_bytes;

  if (parts > 0) {
    RedArgs r;
    r.mode = mode;
    r.rows = p.rows, r.width = p.width, r.C = Cn, r.rows_per_split = rps;
    r.x = p.x, r.x_idx = p.x_idx, r.dy = p.dy, r.dy_idx = p.dy_idx;
    r.mean = arr(p.mean);
    r.part = part;
    const bool moments = mode == kMoments;
    if (p.per_row) {
      const auto k = moments ? bn_reduce_planes_kernel<T, kMoments> : bn_reduce_planes_kernel<T, kSums>;
      launch("bn_reduce_planes_kernel", k, grid_size(k, kThreads, p.rows, p.device_index), kThreads, 0, st, r);
    } else {
      launch("bn_reduce_columns_kernel",
             moments ? bn_reduce_columns_kernel<T, kMoments> : bn_reduce_columns_kernel<T, kSums>,
             dim3(unsigned(ceil_div(Cn, kColTile)), unsigned(parts)), dim3(kColTile, kColRows), 0, st, r);
    }
  }
  ChanArgs c;
  c.op = p.op;
  c.mode = mode;
  c.per_row = p.per_row;
  c.training = p.training;
  c.recover = p.training && p.mean.dtype == (p.x_dtype == DType::Float64 ? DType::Float64 : DType::Float32);
  c.C = Cn, c.parts = parts, c.rows = p.rows, c.rows_per_split = rps;
  c.plane = double(p.width);
  c.M = M, c.eps = p.eps, c.momentum = p.momentum, c.total = p.total;
  c.part = part;
  c.mean = arr(p.mean), c.rstd = arr(p.rstd), c.weight = arr(p.weight), c.bias = arr(p.bias);
  c.running_mean = arr(p.running_mean), c.running_var = arr(p.running_var);
  c.running_mean_out = p.training ? p.running_mean.p : nullptr;
  c.running_var_out = p.training ? p.running_var.p : nullptr;
  c.sum_dy = arr(p.sum_dy), c.sum_dy_xhat = arr(p.sum_dy_xhat);
  c.save_mean = p.save_mean, c.save_rstd = p.save_rstd, c.stat_mean = p.stat_mean;
  c.stat_m2 = p.stat_m2, c.red_dy = p.red_dy, c.red_dy_xhat = p.red_dy_xhat;
  c.dweight = p.dweight, c.dbias = p.dbias;
  c.hi = coef, c.ca = coef + coef_bytes, c.cb = coef + 2 * coef_bytes, c.cc = coef + 3 * coef_bytes;
  {
    const auto k = bn_channel_kernel<T>;
    launch("bn_channel_kernel", k, grid_size(k, kThreads, ceil_div(Cn, kThreads), p.device_index),
           kThreads, 0, st, c);
  }
  if (!empty && p.out != nullptr &&
      (p.op == BnOp::Forward || p.op == BnOp::Apply || p.op == BnOp::Backward ||
       p.op == BnOp::BackwardApply || p.op == BnOp::WeightNorm ||
       p.op == BnOp::WeightNormBackward)) {
    MapArgs m;
    m.backward = p.op == BnOp::Backward || p.op == BnOp::BackwardApply ||
                 p.op == BnOp::WeightNormBackward;
    m.per_row = p.per_row;
    m.rows = p.rows, m.width = p.width, m.C = Cn;
    m.x = p.x, m.x_idx = p.x_idx, m.dy = p.dy, m.dy_idx = p.dy_idx;
    m.out = p.out, m.out_idx = p.out_idx;
    m.hi = c.hi, m.ca = c.ca, m.cb = c.cb, m.cc = c.cc;
    const auto k = bn_map_kernel<T>;
    launch("bn_map_kernel", k, grid_size(k, kThreads, ceil_div(p.rows * p.width, kThreads), p.device_index),
           kThreads, 0, st, m);
  }
}

struct MergeArgs {
  int64_t K = 0, C = 0;
  Arr counts, means, m2s;
  Chan count, mean, m2;
};

// One thread per channel (thread 0 also writes the total count); any grid.
__global__ void moments_merge_kernel(const __grid_constant__ MergeArgs a) {
  const int64_t first = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (first == 0 && a.count.p != nullptr) {
    double t = 0.0;
    for (int64_t k = 0; k < a.K; ++k) t += rd(a.counts, k);
    store_as(a.count.p, a.count.dtype, 0, t);
  }
  for (int64_t c = first; c < a.C; c += int64_t(gridDim.x) * blockDim.x) {
    Moments<double> m{0.0, 0.0, 0.0};
    for (int64_t k = 0; k < a.K; ++k)
      m = merge_moments(m, Moments<double>{rd(a.counts, k), rd(a.means, k * a.C + c), rd(a.m2s, k * a.C + c)});
    store_as(a.mean.p, a.mean.dtype, c, m.mean);
    store_as(a.m2.p, a.m2.dtype, c, m.m2);
  }
}

}  // namespace

void batch_norm(const BnProblem& p, Stream stream) {
  DeviceGuard guard(p.device_index);
  const auto st = static_cast<cudaStream_t>(stream);
  dispatch_dtype(p.x_dtype, [&](auto tag) { run<decltype(tag)>(p, st); });
}

void moments_merge(const MomentsMergeProblem& p, Stream stream) {
  DeviceGuard guard(p.device_index);
  const auto st = static_cast<cudaStream_t>(stream);
  MergeArgs a;
  a.K = p.K, a.C = p.C;
  a.counts = arr(p.counts), a.means = arr(p.means), a.m2s = arr(p.m2s);
  a.count = p.count, a.mean = p.mean, a.m2 = p.m2;
  const int64_t n = p.C > 1 ? p.C : 1;
  launch("moments_merge_kernel", moments_merge_kernel,
         grid_size(moments_merge_kernel, kThreads, ceil_div(n, kThreads), p.device_index), kThreads, 0, st, a);
}

}  // namespace normkit::detail::cuda
