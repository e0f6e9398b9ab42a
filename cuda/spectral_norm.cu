// cuda/spectral_norm.cu — spectral norm on the GPU (SPEC §10), the CPU's passes
// (cpu/spectral_norm_dispatch.cpp) as launches, with no host round trip:
//
//   forward, per power iteration: sn_power_kernel (one block per fixed row block: each row's
//   dot a_r = W_r·v by a block sum, then its share a_r·W_r of Wᵀa into the block's partial
//   row — Note [One pass per power iteration], cpu/spectral_norm_kernel.cpp), then
//   sn_vector_kernel (one block: the partials added in block order, the norms, u, v and σ in
//   double); without an iteration sn_rowdot_kernel and σ = uᵀa; then sn_scale_kernel,
//   out = W·(1/σ), reading σ on the device;
//   backward: sn_dot_kernel (per-block ⟨dout, W⟩), sn_finish_kernel (their sum in order,
//   the coefficients), sn_backward_kernel (dW = dout/σ − (⟨dout, W⟩/σ²)·u vᵀ).
//
// Orders depend on the shape only. No atomics.
#include <cstdint>

#include "common.cuh"
#include "common/backends.hpp"
#include "common/spectral_norm_problem.hpp"

namespace normkit::detail::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 256;

struct SnArgs {
  int64_t rows = 0, cols = 0, rows_per_block = 1, nblocks = 1;
  const void* w = nullptr;
  int64_t w_ld = 0;
  void* out = nullptr;
  int64_t out_ld = 0;
  const void* dy = nullptr;
  int64_t dy_ld = 0;
  void* dw = nullptr;
  int64_t dw_ld = 0;
  void* u = nullptr;  // p.u, p.v in vec_dtype
  void* v = nullptr;
  DType vec_dtype = DType::Float32;
  void* sigma_out = nullptr;
  const void* sigma_in = nullptr;
  DType sigma_dtype = DType::Float32;
  double eps = 1e-12;
  bool eval = false;      // sn_vector_kernel: σ = uᵀa (no iteration)
  bool write_uv = false;  // sn_vector_kernel: the last iteration writes u, v back
  // scratch: vectors in compute type, partials, the device scalars
  void* uc = nullptr;     // [rows] C
  void* vc = nullptr;     // [cols] C
  void* a = nullptr;      // [rows] C
  void* part = nullptr;   // [nblocks][cols] C (power) / [nblocks] double (dot)
  double* t = nullptr;     // [cols] double: Wᵀu before its normalization
  double* scal = nullptr; // [0] σ, [1] 1/σ, [2] ⟨dout, W⟩/σ²
};

__device__ __forceinline__ double rd_as(const void* p, DType dt, int64_t i) {
  return rd(Arr{p, dt}, i);
}

// The C vectors from u, v (vec dtype). Any grid.
template <typename C>
__global__ void sn_load_kernel(const __grid_constant__ SnArgs a) {
  const int64_t n = a.rows > a.cols ? a.rows : a.cols;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    if (i < a.rows) static_cast<C*>(a.uc)[i] = C(rd_as(a.u, a.vec_dtype, i));
    if (i < a.cols) static_cast<C*>(a.vc)[i] = C(rd_as(a.v, a.vec_dtype, i));
  }
}

// Assumptions: blockDim.x = kThreads; gridDim.x = nblocks (block b: rows [b·rpb, (b+1)·rpb)).
template <typename T, bool kPower>
__global__ void __launch_bounds__(kThreads) sn_power_kernel(const __grid_constant__ SnArgs a) {
  using C = compute_t<T>;
  __shared__ C red[kThreads / 32][1];
  const int64_t b = blockIdx.x;
  const int64_t r0 = b * a.rows_per_block;
  const int64_t r1 = min(r0 + a.rows_per_block, a.rows);
  const C* v = static_cast<const C*>(a.vc);
  C* t = kPower ? static_cast<C*>(a.part) + b * a.cols : nullptr;
  if constexpr (kPower)
    for (int64_t j = threadIdx.x; j < a.cols; j += kThreads) t[j] = C(0);
  for (int64_t r = r0; r < r1; ++r) {
    const T* wr = static_cast<const T*>(a.w) + r * a.w_ld;
    C s[1] = {C(0)};
    for (int64_t j = threadIdx.x; j < a.cols; j += kThreads) s[0] += to_c(wr[j]) * v[j];
    group_sum(s, red);  // every thread holds the row's dot
    if (threadIdx.x == 0) static_cast<C*>(a.a)[r] = s[0];
    if constexpr (kPower)
      for (int64_t j = threadIdx.x; j < a.cols; j += kThreads) t[j] += s[0] * C(to_c(wr[j]));
  }
}

// A block sum in double, the same bits in every thread. Reached by the whole block.
__device__ __forceinline__ double block_sum(double x, double (*red)[1]) {
  double s[1] = {x};
  group_sum(s, red);
  return s[0];
}

// One block of kThreads: u, v, σ from the products (power) or σ = uᵀa (eval).
template <typename C>
__global__ void __launch_bounds__(kThreads) sn_vector_kernel(const __grid_constant__ SnArgs a) {
  __shared__ double red[kThreads / 32][1];
  const C* av = static_cast<const C*>(a.a);
  C* uc = static_cast<C*>(a.uc);
  C* vc = static_cast<C*>(a.vc);
  double sigma;
  if (a.eval) {
    double s = 0.0;
    for (int64_t i = threadIdx.x; i < a.rows; i += kThreads) s += double(uc[i]) * double(av[i]);
    sigma = block_sum(s, red);
  } else {
    double s = 0.0;
    for (int64_t i = threadIdx.x; i < a.rows; i += kThreads) s += double(av[i]) * double(av[i]);
    const double da = fmax(sqrt(block_sum(s, red)), a.eps);
    for (int64_t i = threadIdx.x; i < a.rows; i += kThreads) {
      uc[i] = C(double(av[i]) / da);
      if (a.write_uv) store_as(a.u, a.vec_dtype, i, double(uc[i]));
    }
    // s_j = (Σ_b partials[b][j]) / da, blocks in order.
    const C* part = static_cast<const C*>(a.part);
    double q = 0.0;
    for (int64_t j = threadIdx.x; j < a.cols; j += kThreads) {
      double t = 0.0;
      for (int64_t b = 0; b < a.nblocks; ++b) t += double(part[b * a.cols + j]);
      t /= da;
      q += t * t;
      a.t[j] = t;  // thread j's own column until ‖s‖ is known
    }
    const double ns = sqrt(block_sum(q, red)), ds = fmax(ns, a.eps);
    for (int64_t j = threadIdx.x; j < a.cols; j += kThreads) {
      vc[j] = C(a.t[j] / ds);
      if (a.write_uv) store_as(a.v, a.vec_dtype, j, double(vc[j]));
    }
    sigma = ns * ns / ds;
  }
  if (threadIdx.x == 0) {
    a.scal[0] = sigma;
    a.scal[1] = 1.0 / sigma;
    if (a.sigma_out != nullptr) store_as(a.sigma_out, a.sigma_dtype, 0, sigma);
  }
}

// out = W·(1/σ); grid-stride over the elements.
template <typename T>
__global__ void __launch_bounds__(kThreads) sn_scale_kernel(const __grid_constant__ SnArgs a) {
  using C = compute_t<T>;
  const C k = C(a.scal[1]);
  const int64_t total = a.rows * a.cols;
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = e / a.cols, j = e - r * a.cols;
    const C x = to_c(static_cast<const T*>(a.w)[r * a.w_ld + j]);
    static_cast<T*>(a.out)[r * a.out_ld + j] = from_c<T>(x * k);
  }
}

// Block b's ⟨dout, W⟩ over its rows, in double. Assumptions as sn_power_kernel.
template <typename T>
__global__ void __launch_bounds__(kThreads) sn_dot_kernel(const __grid_constant__ SnArgs a) {
  using C = compute_t<T>;
  __shared__ double red[kThreads / 32][1];
  const int64_t b = blockIdx.x;
  const int64_t r0 = b * a.rows_per_block;
  const int64_t r1 = min(r0 + a.rows_per_block, a.rows);
  double acc = 0.0;
  for (int64_t r = r0; r < r1; ++r) {
    const T* wr = static_cast<const T*>(a.w) + r * a.w_ld;
    const T* dyr = static_cast<const T*>(a.dy) + r * a.dy_ld;
    C s = C(0);
    for (int64_t j = threadIdx.x; j < a.cols; j += kThreads) s += C(to_c(dyr[j])) * C(to_c(wr[j]));
    acc += double(s);
  }
  const double tot = block_sum(acc, red);
  if (threadIdx.x == 0) static_cast<double*>(a.part)[b] = tot;
}

// One thread: σ from the input, the coefficients.
__global__ void sn_finish_kernel(const __grid_constant__ SnArgs a) {
  if (blockIdx.x != 0 || threadIdx.x != 0) return;
  const double sigma = rd_as(a.sigma_in, a.sigma_dtype, 0);
  double c = 0.0;
  for (int64_t b = 0; b < a.nblocks; ++b) c += static_cast<const double*>(a.part)[b];
  a.scal[1] = 1.0 / sigma;
  a.scal[2] = c / (sigma * sigma);
}

// dW = dout·(1/σ) − (c/σ²)·u_r·v_j; grid-stride over the elements.
template <typename T>
__global__ void __launch_bounds__(kThreads) sn_backward_kernel(const __grid_constant__ SnArgs a) {
  using C = compute_t<T>;
  const C k = C(a.scal[1]), k2 = C(a.scal[2]);
  const C* uc = static_cast<const C*>(a.uc);
  const C* vc = static_cast<const C*>(a.vc);
  const int64_t total = a.rows * a.cols;
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = e / a.cols, j = e - r * a.cols;
    const C g = to_c(static_cast<const T*>(a.dy)[r * a.dy_ld + j]);
    static_cast<T*>(a.dw)[r * a.dw_ld + j] = from_c<T>(g * k - (k2 * uc[r]) * vc[j]);
  }
}

template <typename T>
void run(const SnProblem& p, cudaStream_t st) {
  using C = compute_t<T>;
  SnArgs a;
  a.rows = p.rows, a.cols = p.cols;
  a.nblocks = p.rows < kMaxBlocks ? p.rows : kMaxBlocks;  // the shape alone decides
  a.rows_per_block = ceil_div(p.rows, a.nblocks);
  a.nblocks = ceil_div(p.rows, a.rows_per_block);
  a.w = p.w, a.w_ld = p.w_ld, a.out = p.out, a.out_ld = p.out_ld;
  a.dy = p.dy, a.dy_ld = p.dy_ld, a.dw = p.dw, a.dw_ld = p.dw_ld;
  a.u = p.u, a.v = p.v, a.vec_dtype = p.vec_dtype, a.eps = p.eps;
  a.sigma_dtype = p.sigma_dtype;
  if (p.backward)
    a.sigma_in = p.sigma;
  else
    a.sigma_out = p.sigma;
  const size_t vec_bytes = align_up(size_t(p.rows) * sizeof(C)) * 2 + align_up(size_t(p.cols) * sizeof(C));
  const size_t part_bytes = align_up(size_t(a.nblocks) * size_t(p.cols) * sizeof(C)) +
                            align_up(size_t(a.nblocks) * sizeof(double));
  const size_t t_bytes = align_up(size_t(p.cols) * sizeof(double));
  StreamScratch scratch(vec_bytes + part_bytes + t_bytes + align_up(8 * sizeof(double)), st);
  char* ws = static_cast<char*>(scratch.get());
  a.uc = ws;
  a.a = ws + align_up(size_t(p.rows) * sizeof(C));
  a.vc = ws + 2 * align_up(size_t(p.rows) * sizeof(C));
  a.part = ws + vec_bytes;
  a.t = reinterpret_cast<double*>(ws + vec_bytes + part_bytes);
  a.scal = reinterpret_cast<double*>(ws + vec_bytes + part_bytes + t_bytes);
  {
    const auto k = sn_load_kernel<C>;
    const int64_t n = p.rows > p.cols ? p.rows : p.cols;
    launch("sn_load_kernel", k, grid_size(k, kThreads, ceil_div(n, kThreads), p.device_index),
           kThreads, 0, st, a);
  }
  const int64_t total = p.rows * p.cols;
  if (p.backward) {
    launch("sn_dot_kernel", sn_dot_kernel<T>, dim3(unsigned(a.nblocks)), kThreads, 0, st, a);
    launch("sn_finish_kernel", sn_finish_kernel, 1, 32, 0, st, a);
    const auto k = sn_backward_kernel<T>;
    launch("sn_backward_kernel", k, grid_size(k, kThreads, ceil_div(total, kThreads), p.device_index),
           kThreads, 0, st, a);
    return;
  }
  if (p.n_iter > 0) {
    for (int64_t it = 0; it < p.n_iter; ++it) {
      launch("sn_power_kernel", sn_power_kernel<T, true>, dim3(unsigned(a.nblocks)), kThreads, 0, st, a);
      SnArgs b = a;
      b.write_uv = it + 1 == p.n_iter;
      if (!b.write_uv) b.sigma_out = nullptr;
      launch("sn_vector_kernel", sn_vector_kernel<C>, 1, kThreads, 0, st, b);
    }
  } else if (p.sigma != nullptr || p.out != nullptr) {
    launch("sn_power_kernel", sn_power_kernel<T, false>, dim3(unsigned(a.nblocks)), kThreads, 0, st, a);
    SnArgs b = a;
    b.eval = true;
    launch("sn_vector_kernel", sn_vector_kernel<C>, 1, kThreads, 0, st, b);
  }
  if (p.out != nullptr) {
    const auto k = sn_scale_kernel<T>;
    launch("sn_scale_kernel", k, grid_size(k, kThreads, ceil_div(total, kThreads), p.device_index),
           kThreads, 0, st, a);
  }
}

}  // namespace

void spectral_norm(const SnProblem& p, Stream stream) {
  DeviceGuard guard(p.device_index);
  const auto st = static_cast<cudaStream_t>(stream);
  dispatch_dtype(p.dtype, [&](auto tag) { run<decltype(tag)>(p, st); });
}

}  // namespace normkit::detail::cuda
