// cuda/group_norm.cu — group and instance norm on the GPU (SPEC §5; instance norm is
// G = C): cpp/src/group_norm.cpp's two entry points as a few launches, with the per-group
// math of common/batch_norm_math.hpp (the CPU's, cpu/group_norm_kernel.cpp):
//
//   forward:  gn_stats_kernel, one block per (n, g): the group's exact moments by two passes
//             (Note [Corrected two-pass]), its saved statistics and coefficients;
//             gn_running_kernel (instance norm's running statistics), one thread per
//             channel, samples in order; gn_map_kernel, the elementwise pass.
//   backward: gn_sums_kernel, one block per (n, c): Σdy, Σdy·d, Σd (d = x − hi);
//             gn_group_kernel, one thread per (n, g): the group's dx coefficients and the
//             (n, c) partials of dγ; gn_param_kernel, one thread per channel: dγ, dβ summed
//             over n = 0, 1, ... in order; gn_map_kernel.
//
// Orders depend on the shape only (fixed block trees, fixed loops): no atomics. Untuned:
// scalar loads, and channels-last groups are walked with a stride.
#include <cstdint>

#include "common.cuh"
#include "common/backends.hpp"
#include "common/batch_norm_math.hpp"
#include "common/group_norm_problem.hpp"
#include "common/lane.hpp"

namespace normkit::detail::cuda {
namespace {

constexpr int kThreads = 256;


// The shape of a call, and where element e of group (n, g) or of channel (n, c) lies.
struct Shape {
  bool per_row = false;
  int64_t N = 0, C = 0, G = 0, Cg = 0, S = 0, Rs = 0, width = 0;

  // Group (n, g), element e < Cg·S: its row and column.
  NK_HD void group_elem(int64_t n, int64_t g, int64_t e, int64_t& r, int64_t& j) const {
    if (per_row) {
      const int64_t k = e / S;
      r = n * C + g * Cg + k, j = e - k * S;
    } else {
      const int64_t s = e / Cg;
      r = n * Rs + s, j = g * Cg + (e - s * Cg);
    }
  }
  // Channel (n, c), element s < S.
  NK_HD void chan_elem(int64_t n, int64_t c, int64_t s, int64_t& r, int64_t& j) const {
    if (per_row)
      r = n * C + c, j = s;
    else
      r = n * Rs + s, j = c;
  }
  // (n, c) of row r, column j.
  NK_HD void nc_of(int64_t r, int64_t j, int64_t& n, int64_t& c) const {
    if (per_row)
      n = r / C, c = r - n * C;
    else
      n = r / Rs, c = j;
  }
};

struct Args {
  Shape sh;
  double M = 0, eps = 0, momentum = 0;
  const void* x = nullptr;
  RowIndex x_idx;
  const void* dy = nullptr;
  RowIndex dy_idx;
  void* out = nullptr;
  RowIndex out_idx;
  Arr weight, bias, mean, rstd;
  Chan save_mean, save_rstd, running_mean, running_var, dweight, dbias;
  bool recover = false;
  double* stats = nullptr;  // [N·G][2] mean, M2 (forward)
  double* part = nullptr;   // [N·C][3] (backward)
  void* ghi = nullptr;      // [N·G] compute type each: hi, lo, rstd; backward: bd, c
  void* glo = nullptr;
  void* grstd = nullptr;
  void* gbd = nullptr;
  void* gc = nullptr;
};

template <typename T>
__device__ __forceinline__ compute_t<T> load(const void* base, const RowIndex& idx, int64_t r,
                                             int64_t j) {
  return to_c(static_cast<const T*>(base)[idx.offset(r) + j]);
}

// Assumptions: blockDim.x = kThreads, blockDim.y = 1; any grid (grid-stride over groups, the
// loop uniform over the block).
template <typename T>
__global__ void __launch_bounds__(kThreads) gn_stats_kernel(const __grid_constant__ Args a) {
  using C = compute_t<T>;
  __shared__ C red[kThreads / 32][2];
  const int64_t Mg = a.sh.Cg * a.sh.S;
  for (int64_t ng = blockIdx.x; ng < a.sh.N * a.sh.G; ng += gridDim.x) {
    const int64_t n = ng / a.sh.G, g = ng - n * a.sh.G;
    C s[1] = {C(0)};
    for (int64_t e = threadIdx.x; e < Mg; e += kThreads) {
      int64_t r, j;
      a.sh.group_elem(n, g, e, r, j);
      s[0] += load<T>(a.x, a.x_idx, r, j);
    }
    group_sum(s, red);
    const C m = Mg > 0 ? s[0] / C(Mg) : C(0);
    C q[2] = {C(0), C(0)};
    for (int64_t e = threadIdx.x; e < Mg; e += kThreads) {
      int64_t r, j;
      a.sh.group_elem(n, g, e, r, j);
      const C d = load<T>(a.x, a.x_idx, r, j) - m;
      q[0] += d;
      q[1] += d * d;
    }
    group_sum(q, red);
    if (threadIdx.x == 0) {
      const Moments<double> cm =
          Mg > 0 ? corrected_moments<C>(Mg, m, q[0], q[1]) : Moments<double>{0.0, 0.0, 0.0};
      a.stats[2 * ng] = cm.mean, a.stats[2 * ng + 1] = cm.m2;
      const BnChannel<C> ch = bn_batch_channel<C>(cm.mean, cm.m2, a.M, a.eps);
      static_cast<C*>(a.ghi)[ng] = ch.hi;
      static_cast<C*>(a.glo)[ng] = ch.lo;
      static_cast<C*>(a.grstd)[ng] = ch.rstd;
      if (a.save_mean.p) store_as(a.save_mean.p, a.save_mean.dtype, ng, double(ch.hi));
      if (a.save_rstd.p) store_as(a.save_rstd.p, a.save_rstd.dtype, ng, double(ch.rstd));
    }
  }
}

// Instance norm's running statistics: one thread per channel, samples in order; any grid.
__global__ void gn_running_kernel(const __grid_constant__ Args a) {
  for (int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; c < a.sh.C;
       c += int64_t(gridDim.x) * blockDim.x) {
    double mean = 0.0, var = 0.0;
    for (int64_t n = 0; n < a.sh.N; ++n) {
      mean += a.stats[2 * (n * a.sh.C + c)];
      var += a.stats[2 * (n * a.sh.C + c) + 1] / double(a.sh.S - 1);
    }
    const double inv = 1.0 / double(a.sh.N);
    const Arr rm{a.running_mean.p, a.running_mean.dtype}, rv{a.running_var.p, a.running_var.dtype};
    store_as(a.running_mean.p, a.running_mean.dtype, c, bn_running_update(rd(rm, c), mean * inv, a.momentum));
    store_as(a.running_var.p, a.running_var.dtype, c, bn_running_update(rd(rv, c), var * inv, a.momentum));
  }
}

// Backward sums of channel (n, c) into part[3·(n·C + c)]. Assumptions as gn_stats_kernel.
template <typename T>
__global__ void __launch_bounds__(kThreads) gn_sums_kernel(const __grid_constant__ Args a) {
  using C = compute_t<T>;
  __shared__ C red[kThreads / 32][3];
  for (int64_t nc = blockIdx.x; nc < a.sh.N * a.sh.C; nc += gridDim.x) {
    const int64_t n = nc / a.sh.C, c = nc - n * a.sh.C;
    const C hi = C(rd(a.mean, n * a.sh.G + c / a.sh.Cg));
    C s[3] = {C(0), C(0), C(0)};
    for (int64_t e = threadIdx.x; e < a.sh.S; e += kThreads) {
      int64_t r, j;
      a.sh.chan_elem(n, c, e, r, j);
      const C g = load<T>(a.dy, a.dy_idx, r, j), d = load<T>(a.x, a.x_idx, r, j) - hi;
      s[0] += g;
      s[1] += g * d;
      s[2] += d;
    }
    group_sum(s, red);
    if (threadIdx.x == 0) {
      double* out = a.part + 3 * nc;
      out[0] = double(s[0]), out[1] = double(s[1]), out[2] = double(s[2]);
    }
  }
}

// One thread per group (n, g): its dx coefficients; part[3·(n·C + c) + 1] becomes the (n, c)
// partial of dγ (Σdy·x̂). Any grid.
template <typename T>
__global__ void gn_group_kernel(const __grid_constant__ Args a) {
  using C = compute_t<T>;
  for (int64_t ng = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; ng < a.sh.N * a.sh.G;
       ng += int64_t(gridDim.x) * blockDim.x) {
    const int64_t n = ng / a.sh.G, g = ng - n * a.sh.G;
    const double mean = rd(a.mean, ng);
    const C hi = C(mean), rstd = C(rd(a.rstd, ng));
    double* q = a.part + 3 * (n * a.sh.C + g * a.sh.Cg);
    double r = 0.0;
    if (a.recover) {
      for (int64_t k = 0; k < a.sh.Cg; ++k) r += q[3 * k + 2];
      r /= a.M;
    } else {
      r = mean - double(hi);
    }
    double sg = 0.0, sgd = 0.0;
    for (int64_t k = 0; k < a.sh.Cg; ++k) {
      const double wk = a.weight.p ? double(C(rd(a.weight, g * a.sh.Cg + k))) : 1.0;
      const double sdx = bn_sum_dy_xhat<C>(q[3 * k], q[3 * k + 1], r, rstd);
      sg += wk * q[3 * k];
      sgd += wk * sdx;
      q[3 * k + 1] = sdx;
    }
    const BnBackward<C> gb = bn_backward<C>(true, hi, r, rstd, C(1), sg, sgd, a.M);
    static_cast<C*>(a.ghi)[ng] = hi;
    static_cast<C*>(a.grstd)[ng] = rstd;
    static_cast<C*>(a.gbd)[ng] = gb.bd;
    static_cast<C*>(a.gc)[ng] = gb.c;
  }
}

// dγ, dβ: one thread per channel, samples in order; any grid.
__global__ void gn_param_kernel(const __grid_constant__ Args a) {
  for (int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; c < a.sh.C;
       c += int64_t(gridDim.x) * blockDim.x) {
    double dw = 0.0, db = 0.0;
    for (int64_t n = 0; n < a.sh.N; ++n) {
      const double* q = a.part + 3 * (n * a.sh.C + c);
      db += q[0];
      dw += q[1];
    }
    if (a.dweight.p) store_as(a.dweight.p, a.dweight.dtype, c, dw);
    if (a.dbias.p) store_as(a.dbias.p, a.dbias.dtype, c, db);
  }
}

// Elementwise: y = (x − hi)·a + b, or dx = a·dy + bd·(x − hi) + c, with a = rstd·γ per
// channel and the rest per group. Any grid (grid-stride over every element).
template <typename T, bool kBwd>
__global__ void __launch_bounds__(kThreads) gn_map_kernel(const __grid_constant__ Args a) {
  using C = compute_t<T>;
  const int64_t rows = a.sh.per_row ? a.sh.N * a.sh.C : a.sh.N * a.sh.Rs;
  const int64_t total = rows * a.sh.width;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / a.sh.width, j = i - r * a.sh.width;
    int64_t n, c;
    a.sh.nc_of(r, j, n, c);
    const int64_t ng = n * a.sh.G + c / a.sh.Cg;
    const C hi = static_cast<const C*>(a.ghi)[ng];
    const C w = a.weight.p ? C(rd(a.weight, c)) : C(1);
    const C ca = static_cast<const C*>(a.grstd)[ng] * w;
    const C d = load<T>(a.x, a.x_idx, r, j) - hi;
    C v;
    if constexpr (kBwd) {
      const C g = load<T>(a.dy, a.dy_idx, r, j);
      v = Lane<C>::fmadd(Lane<C>::set1(ca), Lane<C>::set1(g),
                         Lane<C>::fmadd(Lane<C>::set1(static_cast<const C*>(a.gbd)[ng]), Lane<C>::set1(d),
                                        Lane<C>::set1(static_cast<const C*>(a.gc)[ng]))).v;
    } else {
      const C b = (a.bias.p ? C(rd(a.bias, c)) : C(0)) - static_cast<const C*>(a.glo)[ng] * ca;
      v = Lane<C>::fmadd(Lane<C>::set1(d), Lane<C>::set1(ca), Lane<C>::set1(b)).v;
    }
    static_cast<T*>(a.out)[a.out_idx.offset(r) + j] = from_c<T>(v);
  }
}

template <typename T>
void run(const GnProblem& p, cudaStream_t st) {
  using C = compute_t<T>;
  Args a;
  a.sh.per_row = p.per_row;
  a.sh.N = p.N, a.sh.C = p.C, a.sh.G = p.G, a.sh.Cg = p.Cg(), a.sh.S = p.spatial();
  a.sh.Rs = p.rows_per_sample(), a.sh.width = p.width;
  a.M = p.group_count() > 0 ? double(p.group_count()) : 1.0;  // (an empty group: var 0)
  a.eps = p.eps, a.momentum = p.momentum;
  a.x = p.x, a.x_idx = p.x_idx, a.dy = p.dy, a.dy_idx = p.dy_idx, a.out = p.out, a.out_idx = p.out_idx;
  a.weight = arr(p.weight), a.bias = arr(p.bias), a.mean = arr(p.mean), a.rstd = arr(p.rstd);
  a.save_mean = p.save_mean, a.save_rstd = p.save_rstd;
  a.running_mean = p.running_mean, a.running_var = p.running_var;
  a.dweight = p.dweight, a.dbias = p.dbias;
  a.recover = p.mean.dtype == (p.x_dtype == DType::Float64 ? DType::Float64 : DType::Float32);
  const int64_t NG = p.N * p.G, NC = p.N * p.C;
  const bool empty = p.rows == 0 || p.width == 0;
  const size_t stats_bytes = align_up(size_t(2 * NG) * sizeof(double));
  const size_t part_bytes = p.backward ? align_up(size_t(3 * NC) * sizeof(double)) : 0;
  const size_t g_bytes = align_up(size_t(NG) * sizeof(C));
  StreamScratch scratch(stats_bytes + part_bytes + 5 * g_bytes, st);
  char* ws = static_cast<char*>(scratch.get());
  a.stats = reinterpret_cast<double*>(ws);
  a.part = reinterpret_cast<double*>(ws + stats_bytes);
  char* g = ws + stats_bytes + part_bytes;
  a.ghi = g, a.glo = g + g_bytes, a.grstd = g + 2 * g_bytes, a.gbd = g + 3 * g_bytes, a.gc = g + 4 * g_bytes;
  const int dev = p.device_index;
  const int64_t elems = empty ? 0 : p.rows * p.width;
  if (!p.backward) {
    // (An empty group gives mean 0, M2 0: the block loops run no iteration.)
    const auto ks = gn_stats_kernel<T>;
    launch("gn_stats_kernel", ks, grid_size(ks, kThreads, NG, dev), kThreads, 0, st, a);
    if (p.running_mean.p != nullptr)
      launch("gn_running_kernel", gn_running_kernel,
             grid_size(gn_running_kernel, kThreads, ceil_div(p.C, kThreads), dev), kThreads, 0, st, a);
    if (elems > 0) {
      const auto km = gn_map_kernel<T, false>;
      launch("gn_map_kernel", km, grid_size(km, kThreads, ceil_div(elems, kThreads), dev), kThreads, 0, st, a);
    }
    return;
  }
  if (NC > 0) {
    const auto k1 = gn_sums_kernel<T>;
    launch("gn_sums_kernel", k1, grid_size(k1, kThreads, NC, dev), kThreads, 0, st, a);
    const auto k2 = gn_group_kernel<T>;
    launch("gn_group_kernel", k2, grid_size(k2, kThreads, ceil_div(NG, kThreads), dev), kThreads, 0, st, a);
  }
  launch("gn_param_kernel", gn_param_kernel,
         grid_size(gn_param_kernel, kThreads, ceil_div(p.C, kThreads), dev), kThreads, 0, st, a);
  if (elems > 0 && p.out != nullptr) {
    const auto km = gn_map_kernel<T, true>;
    launch("gn_map_kernel", km, grid_size(km, kThreads, ceil_div(elems, kThreads), dev), kThreads, 0, st, a);
  }
}

}  // namespace

void group_norm(const GnProblem& p, Stream stream) {
  DeviceGuard guard(p.device_index);
  const auto st = static_cast<cudaStream_t>(stream);
  dispatch_dtype(p.x_dtype, [&](auto tag) { run<decltype(tag)>(p, st); });
}

}  // namespace normkit::detail::cuda
