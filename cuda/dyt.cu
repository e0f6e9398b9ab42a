// cuda/dyt.cu — Dynamic Tanh on the GPU (SPEC §6). The math is cpp/src/common/dyt_math.hpp,
// evaluated per element with detail::Lane<C> (the same functions the CPU kernels call); this
// file decides which thread computes what, and in which order.
//
// Layouts (common/dyt_problem.hpp): rows of `width` contiguous elements with a RowIndex per
// array; channels last (channel = column) or per row (channel = row % C).
//
// Forward: every thread owns whole 16-byte chunks (kVec elements) of a row, grid-stride.
// Backward, channels last: a column kernel gives each (32-column tile, row split) block a
// fixed row range; each thread walks its column down the split's rows writing dx and
// accumulating the A/G/B sums (dyt_math.hpp), the block adds its 8 row lanes in order, and a
// second pass adds the splits in order (column_finalize_kernel). Per row (channels first):
// one block per (n, c) plane sums A/G/B with a fixed tree (the shape decides it), and a
// channel pass adds the planes n = 0, 1, ... in order. Then dα = Σ_c γ_c·A_c in one block.
// Splits depend on `rows` only, trees on `width` only: no floating-point atomics, the same
// bits on every GPU and for every grid size.
#include <cstdint>
#include <string>

#include "common.cuh"
#include "common/backends.hpp"
#include "common/dyt_math.hpp"
#include "common/dyt_problem.hpp"
#include "common/lane.hpp"

namespace normkit::detail::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kColTile = 32;
constexpr int kColRows = 8;
constexpr int64_t kRowsPerSplitMin = 64;
constexpr int64_t kMaxSplits = 256;

template <typename C>
__device__ __forceinline__ C dyt_fwd1(C x, C alpha, C w, C b, bool bias) {
  const Lane<C> lx = Lane<C>::set1(x), la = Lane<C>::set1(alpha), lw = Lane<C>::set1(w);
  return bias ? detail::dyt_forward<true>(lx, la, lw, Lane<C>::set1(b)).v
              : detail::dyt_forward<false>(lx, la, lw, Lane<C>::set1(b)).v;
}

// ---------------------------------------------------------------------------------------
// Forward
// ---------------------------------------------------------------------------------------

struct FwdArgs {
  int64_t rows = 0, width = 0, C = 0;
  bool per_row = false;
  bool vec = false;  // 16-byte IO for x, y and the parameters (rows_vectorizable)
  ParamPtr alpha;  // one element, read by every thread (a broadcast load; no host sync)
  const void* x = nullptr;
  RowIndex x_idx;
  void* y = nullptr;
  RowIndex y_idx;
  ParamPtr weight, bias;
};

// Assumptions: blockDim.x = kThreads; any grid (grid-stride over all chunks).
template <typename T>
__global__ void __launch_bounds__(kThreads) dyt_forward_kernel(const __grid_constant__ FwdArgs a) {
  using C = compute_t<T>;
  constexpr int N = VecTraits<T>::kVec;
  const int64_t cpr = (a.width + N - 1) / N;  // chunks per row
  const int64_t total = a.rows * cpr;
  const C alpha = param_at<T, C>(a.alpha, 0);
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / cpr;
    const int64_t j0 = (i - r * cpr) * N;
    C x[N], w[N], b[N], y[N];
    load_vec(static_cast<const T*>(a.x) + a.x_idx.offset(r), j0, a.width, a.vec, x);
    if (a.per_row) {
      const int64_t c = r % a.C;
      const C wc = param_at<T, C>(a.weight, c);
      const C bc = a.bias.ptr != nullptr ? param_at<T, C>(a.bias, c) : C(0);
#pragma unroll
      for (int k = 0; k < N; ++k) w[k] = wc, b[k] = bc;
    } else {
      if (a.weight.ptr != nullptr) {
        load_param<T>(a.weight, j0, a.width, a.vec, w);
      } else {
#pragma unroll
        for (int k = 0; k < N; ++k) w[k] = C(1);
      }
      if (a.bias.ptr != nullptr) {
        load_param<T>(a.bias, j0, a.width, a.vec, b);
      } else {
#pragma unroll
        for (int k = 0; k < N; ++k) b[k] = C(0);
      }
    }
#pragma unroll
    for (int k = 0; k < N; ++k) y[k] = dyt_fwd1(x[k], alpha, w[k], b[k], a.bias.ptr != nullptr);
    store_vec(static_cast<T*>(a.y) + a.y_idx.offset(r), j0, a.width, a.vec, y);
  }
}

// ---------------------------------------------------------------------------------------
// Backward
// ---------------------------------------------------------------------------------------

struct BwdArgs {
  int64_t rows = 0, width = 0, C = 0, rows_per_split = 0;
  bool vec = false;
  ParamPtr alpha;
  const void* dy = nullptr;
  RowIndex dy_idx;
  const void* x = nullptr;
  RowIndex x_idx;
  void* dx = nullptr;
  RowIndex dx_idx;
  ParamPtr weight;
  // Partial sums in compute type; null: not wanted. Channels last: [nsplit][width] each;
  // per row: one [rows][nacc] array (`part`), sums in the order A, G, B.
  void* pa = nullptr;
  void* pg = nullptr;
  void* pb = nullptr;
  void* part = nullptr;
  int nacc = 0;
  bool sa = false, sg = false, sb = false;
};

// Channels last. Assumptions: blockDim = (kColTile, kColRows); gridDim = (ceil(width /
// kColTile), nsplit).
template <typename T>
__global__ void __launch_bounds__(kColTile* kColRows)
    dyt_backward_columns_kernel(const __grid_constant__ BwdArgs a) {
  using C = compute_t<T>;
  __shared__ C red[3][kColRows][kColTile];
  const int tx = int(threadIdx.x), ty = int(threadIdx.y);
  const int64_t col = int64_t(blockIdx.x) * kColTile + tx;
  const int64_t r0 = int64_t(blockIdx.y) * a.rows_per_split;
  const int64_t r1 = min(r0 + a.rows_per_split, a.rows);
  const Lane<C> alpha = Lane<C>::set1(param_at<T, C>(a.alpha, 0));
  C sa = C(0), sg = C(0), sb = C(0);
  if (col < a.width) {
    const Lane<C> w = Lane<C>::set1(param_at<T, C>(a.weight, col));
    for (int64_t r = r0 + ty; r < r1; r += kColRows) {
      const C dy = to_c(static_cast<const T*>(a.dy)[a.dy_idx.offset(r) + col]);
      const C x = to_c(static_cast<const T*>(a.x)[a.x_idx.offset(r) + col]);
      const DytGrad<Lane<C>> g = detail::dyt_backward(Lane<C>::set1(dy), Lane<C>::set1(x), alpha, w);
      static_cast<T*>(a.dx)[a.dx_idx.offset(r) + col] = from_c<T>(g.dx.v);
      sa += g.a.v;
      sg = Lane<C>::fmadd(Lane<C>::set1(dy), g.t, Lane<C>::set1(sg)).v;
      sb += dy;
    }
  }
  red[0][ty][tx] = sa;
  red[1][ty][tx] = sg;
  red[2][ty][tx] = sb;
  __syncthreads();
  if (ty == 0 && col < a.width) {
    C s0 = red[0][0][tx], s1 = red[1][0][tx], s2 = red[2][0][tx];
#pragma unroll
    for (int k = 1; k < kColRows; ++k) {  // fixed order over the row lanes
      s0 += red[0][k][tx];
      s1 += red[1][k][tx];
      s2 += red[2][k][tx];
    }
    const int64_t o = int64_t(blockIdx.y) * a.width + col;
    if (a.pa != nullptr) static_cast<C*>(a.pa)[o] = s0;
    if (a.pg != nullptr) static_cast<C*>(a.pg)[o] = s1;
    if (a.pb != nullptr) static_cast<C*>(a.pb)[o] = s2;
  }
}

// Per row (channels first). Assumptions: blockDim.x = kThreads (8 warps), blockDim.y = 1;
// any grid (grid-stride over rows; the row loop is uniform over the block).
template <typename T>
__global__ void __launch_bounds__(kThreads) dyt_backward_planes_kernel(const __grid_constant__ BwdArgs a) {
  using C = compute_t<T>;
  constexpr int N = VecTraits<T>::kVec;
  __shared__ C red[kThreads / 32][3];
  const Lane<C> alpha = Lane<C>::set1(param_at<T, C>(a.alpha, 0));
  for (int64_t r = blockIdx.x; r < a.rows; r += gridDim.x) {
    const int64_t c = r % a.C;
    const Lane<C> w = Lane<C>::set1(param_at<T, C>(a.weight, c));
    const T* dyr = static_cast<const T*>(a.dy) + a.dy_idx.offset(r);
    const T* xr = static_cast<const T*>(a.x) + a.x_idx.offset(r);
    T* dxr = static_cast<T*>(a.dx) + a.dx_idx.offset(r);
    C s[3] = {C(0), C(0), C(0)};
    for (int64_t j0 = int64_t(threadIdx.x) * N; j0 < a.width; j0 += int64_t(kThreads) * N) {
      C dy[N], x[N], dx[N];
      load_vec(dyr, j0, a.width, a.vec, dy);  // elements past the row read as 0: they add 0
      load_vec(xr, j0, a.width, a.vec, x);
#pragma unroll
      for (int k = 0; k < N; ++k) {
        const DytGrad<Lane<C>> g = detail::dyt_backward(Lane<C>::set1(dy[k]), Lane<C>::set1(x[k]), alpha, w);
        dx[k] = g.dx.v;
        s[0] += g.a.v;
        s[1] = Lane<C>::fmadd(Lane<C>::set1(dy[k]), g.t, Lane<C>::set1(s[1])).v;
        s[2] += dy[k];
      }
      store_vec(dxr, j0, a.width, a.vec, dx);
    }
    group_sum(s, red);
    if (threadIdx.x == 0 && a.nacc > 0) {
      C* out = static_cast<C*>(a.part) + r * a.nacc;
      int k = 0;
      if (a.sa) out[k++] = s[0];
      if (a.sg) out[k++] = s[1];
      if (a.sb) out[k++] = s[2];
    }
  }
}

// Per channel: Σ over planes n in order of part[(n·C + c)·nacc + k]; G -> dweight, B -> dbias
// (stored as their dtypes), A -> A[c] in compute type.
template <typename C>
__global__ void dyt_channel_finalize_kernel(const C* part, int64_t N, int64_t nchan, int nacc,
                                            bool sa, bool sg, bool sb, C* A, void* dweight,
                                            DType dw_dt, void* dbias, DType db_dt) {
  for (int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; c < nchan;
       c += int64_t(gridDim.x) * blockDim.x) {
    // Named accumulators (not an array indexed by k: that would live in local memory).
    const int ig = int(sa), ib = int(sa) + int(sg);
    C s_a = C(0), s_g = C(0), s_b = C(0);
    for (int64_t n = 0; n < N; ++n) {
      const C* q = part + (n * nchan + c) * nacc;
      if (sa) s_a += q[0];
      if (sg) s_g += q[ig];
      if (sb) s_b += q[ib];
    }
    if (sa) A[c] = s_a;
    if (sg) store_as(dweight, dw_dt, c, s_g);
    if (sb) store_as(dbias, db_dt, c, s_b);
  }
}

// dα = Σ_c γ_c·A_c in double: thread t adds channels t, t + kThreads, ... in order, then
// thread 0 adds the threads' sums in order. Assumptions: one block of kThreads.
template <typename T, typename C>
__global__ void __launch_bounds__(kThreads) dyt_dalpha_kernel(const C* A, ParamPtr weight,
                                                              int64_t nchan, void* out,
                                                              DType dt) {
  __shared__ double part[kThreads];
  double s = 0.0;
  for (int64_t c = threadIdx.x; c < nchan; c += kThreads)
    s += double(param_at<T, C>(weight, c)) * double(A[c]);
  part[threadIdx.x] = s;
  __syncthreads();
  if (threadIdx.x == 0) {
    double t = part[0];
    for (int k = 1; k < kThreads; ++k) t += part[k];
    store_as(out, dt, 0, t);
  }
}

struct BwdPlan {
  int64_t nsplit = 1, rows_per_split = 0;
  size_t off_a = 0, off_g = 0, off_b = 0, off_part = 0, off_A = 0, bytes = 0;
};

template <typename T>
BwdPlan plan_backward(const DytBackwardProblem& p) {
  using C = compute_t<T>;
  BwdPlan b;
  const DytSums s = dyt_sums(p);
  if (p.rows == 0 || p.width == 0 || s.count() == 0) return b;
  size_t off = 0;
  if (p.per_row) {
    b.off_part = off;
    off += align_up(size_t(p.rows) * size_t(s.count()) * sizeof(C));
  } else {
    b.nsplit = ceil_div(p.rows, kRowsPerSplitMin);  // depends on rows only
    if (b.nsplit > kMaxSplits) b.nsplit = kMaxSplits;
    b.rows_per_split = ceil_div(p.rows, b.nsplit);
    const size_t bytes = align_up(size_t(b.nsplit) * size_t(p.width) * sizeof(C));
    if (s.a) b.off_a = off, off += bytes;
    if (s.g) b.off_g = off, off += bytes;
    if (s.b) b.off_b = off, off += bytes;
  }
  if (s.a) b.off_A = off, off += align_up(size_t(p.C) * sizeof(C));
  b.bytes = off;
  return b;
}

template <typename T>
void forward_impl(const DytProblem& p, cudaStream_t st) {
  constexpr int N = VecTraits<T>::kVec;
  FwdArgs a;
  a.rows = p.rows;
  a.width = p.width;
  a.C = p.C;
  a.per_row = p.per_row;
  a.alpha = param(p.alpha, p.alpha_dtype);
  a.x = p.x;
  a.x_idx = p.x_idx;
  a.y = p.y;
  a.y_idx = p.y_idx;
  a.weight = param(p.weight, p.weight_dtype);
  a.bias = param(p.bias, p.bias_dtype);
  a.vec = rows_vectorizable(p.x, p.x_idx, p.rows, N) && rows_vectorizable(p.y, p.y_idx, p.rows, N) &&
          p.width % N == 0 && param_vectorizable(p.weight) && param_vectorizable(p.bias);
  const int64_t chunks = p.rows * ceil_div(p.width, N);
  const auto kernel = dyt_forward_kernel<T>;
  const int grid = grid_size(kernel, kThreads, ceil_div(chunks, kThreads), p.device_index);
  launch("dyt_forward_kernel", kernel, grid, kThreads, 0, st, a);
}

template <typename T>
void backward_impl(const DytBackwardProblem& p, cudaStream_t st) {
  using C = compute_t<T>;
  constexpr int N = VecTraits<T>::kVec;
  const BwdPlan plan = plan_backward<T>(p);
  if (p.workspace != nullptr && p.workspace_bytes < plan.bytes)
    throw Error(ErrorKind::Value, "dyt_backward: workspace: expected at least " +
                                      std::to_string(plan.bytes) +
                                      " bytes (dyt_backward_workspace_size), got " +
                                      std::to_string(p.workspace_bytes));
  StreamScratch own(p.workspace != nullptr ? 0 : plan.bytes, st);
  char* ws = static_cast<char*>(p.workspace != nullptr ? p.workspace : own.get());
  const DytSums s = dyt_sums(p);
  BwdArgs a;
  a.rows = p.rows;
  a.width = p.width;
  a.C = p.C;
  a.rows_per_split = plan.rows_per_split;
  a.alpha = param(p.alpha, p.alpha_dtype);
  a.dy = p.dy;
  a.dy_idx = p.dy_idx;
  a.x = p.x;
  a.x_idx = p.x_idx;
  a.dx = p.dx;
  a.dx_idx = p.dx_idx;
  a.weight = param(p.weight, p.weight_dtype);
  a.nacc = s.count();
  a.sa = s.a;
  a.sg = s.g;
  a.sb = s.b;
  C* A = s.a ? reinterpret_cast<C*>(ws + plan.off_A) : nullptr;
  if (p.per_row) {
    a.part = a.nacc > 0 ? ws + plan.off_part : nullptr;
    a.vec = rows_vectorizable(p.dy, p.dy_idx, p.rows, N) && rows_vectorizable(p.x, p.x_idx, p.rows, N) &&
            rows_vectorizable(p.dx, p.dx_idx, p.rows, N) && p.width % N == 0;
    const auto kernel = dyt_backward_planes_kernel<T>;
    const int grid = grid_size(kernel, kThreads, p.rows, p.device_index);
    launch("dyt_backward_planes_kernel", kernel, grid, kThreads, 0, st, a);
    if (a.nacc > 0) {
      const auto fin = dyt_channel_finalize_kernel<C>;
      const int g2 = grid_size(fin, kThreads, ceil_div(p.C, kThreads), p.device_index);
      launch("dyt_channel_finalize_kernel", fin, g2, kThreads, 0, st,
             static_cast<const C*>(a.part), p.rows / p.C, p.C, a.nacc, s.a, s.g, s.b, A,
             p.dweight, p.dweight_dtype, p.dbias, p.dbias_dtype);
    }
  } else {
    a.pa = s.a ? ws + plan.off_a : nullptr;
    a.pg = s.g ? ws + plan.off_g : nullptr;
    a.pb = s.b ? ws + plan.off_b : nullptr;
    const dim3 grid(unsigned(ceil_div(p.width, kColTile)), unsigned(plan.nsplit));
    launch("dyt_backward_columns_kernel", dyt_backward_columns_kernel<T>, grid,
           dim3(kColTile, kColRows), 0, st, a);
    if (s.a) launch_finalize<C>(a.pa, plan.nsplit, p.width, nullptr, p.alpha_dtype, p.device_index, st, A);
    if (s.g) launch_finalize<C>(a.pg, plan.nsplit, p.width, p.dweight, p.dweight_dtype, p.device_index, st);
    if (s.b) launch_finalize<C>(a.pb, plan.nsplit, p.width, p.dbias, p.dbias_dtype, p.device_index, st);
  }
  if (s.a)
    launch("dyt_dalpha_kernel", dyt_dalpha_kernel<T, C>, 1, kThreads, 0, st,
           static_cast<const C*>(A), a.weight, p.C, p.dalpha, p.alpha_dtype);
}

}  // namespace

// ---------------------------------------------------------------------------------------
// Entry points (common/backends.hpp)
// ---------------------------------------------------------------------------------------

void dyt_forward(const DytProblem& p, Stream stream) {
  if (p.rows == 0 || p.width == 0) return;
  DeviceGuard guard(p.device_index);
  const auto st = static_cast<cudaStream_t>(stream);
  dispatch_dtype(p.x_dtype, [&](auto tag) { forward_impl<decltype(tag)>(p, st); });
}

size_t dyt_backward_workspace_size(const DytBackwardProblem& p) {
  size_t bytes = 0;
  dispatch_dtype(p.x_dtype, [&](auto tag) { bytes = plan_backward<decltype(tag)>(p).bytes; });
  return bytes;
}

void dyt_backward(const DytBackwardProblem& p, Stream stream) {
  DeviceGuard guard(p.device_index);
  const auto st = static_cast<cudaStream_t>(stream);
  if (p.rows == 0 || p.width == 0) {  // Σ over no elements: zero (all-zero bytes are +0)
    if (p.dweight != nullptr)
      NK_CUDA_CHECK(cudaMemsetAsync(p.dweight, 0, size_t(p.C * dtype_size(p.dweight_dtype)), st));
    if (p.dbias != nullptr)
      NK_CUDA_CHECK(cudaMemsetAsync(p.dbias, 0, size_t(p.C * dtype_size(p.dbias_dtype)), st));
    if (p.dalpha != nullptr)
      NK_CUDA_CHECK(cudaMemsetAsync(p.dalpha, 0, size_t(dtype_size(p.alpha_dtype)), st));
    return;
  }
  dispatch_dtype(p.x_dtype, [&](auto tag) { backward_impl<decltype(tag)>(p, st); });
}

}  // namespace normkit::detail::cuda
