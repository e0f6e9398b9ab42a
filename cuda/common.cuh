// cuda/common.cuh — what every normkit CUDA kernel file shares: error checking, the device
// guard, 16-byte vector IO with a scalar fallback, and deterministic reductions.
//
// Conventions (the same as cpp/include/normkit/row_norm.hpp):
//   T  storage type of activations: float, double, half_t, bfloat16_t (normkit/dtype.hpp);
//   C  compute type, compute_t<T>: double for double, float otherwise;
//   a "chunk" is kVec<T> consecutive elements = 16 bytes of T, the unit every thread loads.
// Note [Same bits with or without vectors]: which thread owns which chunk, and the order in
// which it accumulates them, never depends on whether a chunk is loaded with one 16-byte
// instruction or element by element. The vector path is an optimisation only: a misaligned
// view gives the same bits as an aligned copy of it.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <string>
#include <type_traits>
#include <utility>

#include "common/batch_norm_problem.hpp"
#include "common/row_index.hpp"
#include "common/row_norm_math.hpp"
#include "normkit/dtype.hpp"
#include "normkit/error.hpp"

namespace normkit::detail::cuda {

// ---------------------------------------------------------------------------------------
// Errors and devices (defined in device.cu)
// ---------------------------------------------------------------------------------------

// Throws normkit::Error(Runtime) naming the failed call and CUDA's description of `err`.
[[noreturn]] void throw_cuda_error(cudaError_t err, const char* call, const char* file, int line);
// The same for a failed launch of the kernel called `kernel_name`.
[[noreturn]] void throw_launch_error(cudaError_t err, const char* kernel_name);

#define NK_CUDA_CHECK(call)                                                             \
  do {                                                                                  \
    const cudaError_t nk_err_ = (call);                                                 \
    if (nk_err_ != cudaSuccess)                                                         \
      ::normkit::detail::cuda::throw_cuda_error(nk_err_, #call, __FILE__, __LINE__);   \
  } while (0)

// Every kernel launch goes through launch() (below), never <<<...>>> directly: the
// emulation build (cuda/emu/) cannot parse the chevrons and runs the grid on its scheduler.
// Makes `device` current for the guard's lifetime and restores the previous one after.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device);
  ~DeviceGuard();
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = -1;
};

// Number of SMs of `device` (queried once per device, then cached).
int sm_count(int device);

// Blocks for a grid-stride launch: enough to fill every SM once at the kernel's occupancy
// (more only queue behind the first wave), never more than there is work for.
template <typename Kernel>
int grid_size(Kernel kernel, int threads_per_block, int64_t blocks_needed, int device) {
  int per_sm = 0;
  NK_CUDA_CHECK(
      cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, threads_per_block, 0));
  const int64_t resident = int64_t(per_sm < 1 ? 1 : per_sm) * sm_count(device);
  int64_t b = blocks_needed < resident ? blocks_needed : resident;
  return int(b < 1 ? 1 : b);
}

// Stream-ordered scratch that is freed (in stream order) when it goes out of scope, also
// when a later launch throws.
class StreamScratch {
 public:
  StreamScratch(size_t bytes, cudaStream_t stream) : stream_(stream) {
    if (bytes > 0) NK_CUDA_CHECK(cudaMallocAsync(&ptr_, bytes, stream));
  }
  ~StreamScratch() {
    if (ptr_ != nullptr) (void)cudaFreeAsync(ptr_, stream_);
  }
  StreamScratch(const StreamScratch&) = delete;
  StreamScratch& operator=(const StreamScratch&) = delete;
  void* get() const { return ptr_; }

 private:
  void* ptr_ = nullptr;
  cudaStream_t stream_;
};

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Launches kernel<<<grid, block, smem, stream>>>(args...) and throws normkit::Error(Runtime)
// naming the kernel when the launch fails (a configuration error; in the emulation build
// also a broken barrier or warp collective, with its file:line). Kernel parameters are
// converted to the kernel's own parameter types here, as a launch does.
template <typename... P, typename... A>
void launch(const char* name, void (*kernel)(P...), dim3 grid, dim3 block, size_t smem,
            cudaStream_t stream, A&&... args) {
#if defined(NORMKIT_CUDA_EMULATION)
  ::nk_emu::launch(name, kernel, grid, block, smem, stream, std::forward<A>(args)...);
#else
  kernel<<<grid, block, smem, stream>>>(std::forward<A>(args)...);
#endif
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) throw_launch_error(err, name);
}

// ---------------------------------------------------------------------------------------
// Element conversions (device side)
// ---------------------------------------------------------------------------------------
// Loads widen exactly. Stores round to nearest even through the hardware conversion, which
// is what normkit::from_compute computes for every finite and infinite value; NaN goes
// through from_compute so that its payload bits match the CPU path too.

__device__ __forceinline__ float to_c(float v) { return v; }
__device__ __forceinline__ double to_c(double v) { return v; }
__device__ __forceinline__ float to_c(half_t v) { return __half2float(__ushort_as_half(v.bits)); }
__device__ __forceinline__ float to_c(bfloat16_t v) {
  return __uint_as_float(uint32_t(v.bits) << 16);
}

// NaN: the same bits as float_to_half / float_to_bf16 (dtype.hpp) — sign, quiet bit, top of
// the payload — written without branches so that every element's store stays small.
__device__ __forceinline__ uint16_t half_bits(float v) {
  const uint32_t u = __float_as_uint(v);
  const uint16_t nan = uint16_t(((u >> 16) & 0x8000u) | 0x7e00u | ((u >> 13) & 0x3ffu));
  return v != v ? nan : __half_as_ushort(__float2half_rn(v));
}
__device__ __forceinline__ uint16_t bf16_bits(float v) {
  const uint32_t u = __float_as_uint(v);
  return v != v ? uint16_t((u >> 16) | 0x40u) : __bfloat16_as_ushort(__float2bfloat16_rn(v));
}

template <typename T, typename C>
__device__ __forceinline__ T from_c(C v) {
  if constexpr (std::is_same_v<T, half_t>) {
    return half_t{half_bits(float(v))};
  } else if constexpr (std::is_same_v<T, bfloat16_t>) {
    return bfloat16_t{bf16_bits(float(v))};
  } else {
    return T(v);
  }
}

// ---------------------------------------------------------------------------------------
// Vector IO
// ---------------------------------------------------------------------------------------

template <typename T>
struct VecTraits {
  static constexpr int kVec = 16 / int(sizeof(T));  // elements per 16-byte chunk
  static_assert(16 % sizeof(T) == 0, "storage types divide 16 bytes");
};

// Unpacks N elements of storage type S from raw 32-bit words (little-endian, as loaded).
template <typename S, typename C, int N>
__device__ __forceinline__ void unpack(const uint32_t* w, C (&v)[N]) {
#pragma unroll
  for (int j = 0; j < N; ++j) {
    if constexpr (std::is_same_v<S, float>) {
      v[j] = C(__uint_as_float(w[j]));
    } else if constexpr (std::is_same_v<S, double>) {
      v[j] = C(__hiloint2double(int(w[2 * j + 1]), int(w[2 * j])));
    } else if constexpr (std::is_same_v<S, half_t>) {
      v[j] = C(to_c(half_t{uint16_t(j % 2 ? w[j / 2] >> 16 : w[j / 2] & 0xffffu)}));
    } else {
      static_assert(std::is_same_v<S, bfloat16_t>, "unsupported storage type");
      v[j] = C(__uint_as_float(j % 2 ? w[j / 2] & 0xffff0000u : w[j / 2] << 16));
    }
  }
}

template <typename S, typename C, int N>
__device__ __forceinline__ void pack(const C (&v)[N], uint32_t* w) {
#pragma unroll
  for (int j = 0; j < N; ++j) {
    if constexpr (std::is_same_v<S, float>) {
      w[j] = __float_as_uint(float(v[j]));
    } else if constexpr (std::is_same_v<S, double>) {
      const double d = double(v[j]);
      w[2 * j] = uint32_t(__double2loint(d));
      w[2 * j + 1] = uint32_t(__double2hiint(d));
    } else {
      const float f = float(v[j]);
      const uint32_t h = std::is_same_v<S, half_t> ? half_bits(f) : bf16_bits(f);
      if (j % 2 == 0) {
        w[j / 2] = h;
      } else {
        w[j / 2] |= h << 16;
      }
    }
  }
}

// Raw bits of one element, and the scalar fallback that moves them.
template <typename S>
using BitsOf = std::conditional_t<sizeof(S) == 2, uint16_t,
                                  std::conditional_t<sizeof(S) == 4, uint32_t, uint64_t>>;

// Loads elements [e0, e0 + N) of `base` (storage S) widened to C; elements at or past `len`
// read as 0. `vec` (decided by the launcher) promises that `base` is 16-byte aligned and e0
// is a multiple of N, so the N·sizeof(S) bytes are naturally aligned (8, 16 or 32 bytes).
// Both paths fill the same words and share one unpack, which keeps the unrolled kernels
// (and their compile time) small.
template <typename S, typename C, int N>
__device__ __forceinline__ void load_vec(const S* base, int64_t e0, int64_t len, bool vec,
                                         C (&v)[N]) {
  constexpr int kBytes = N * int(sizeof(S));
  constexpr int kWords = kBytes / 4;
  static_assert(kBytes == 8 || kBytes == 16 || kBytes == 32, "chunks are 8, 16 or 32 bytes");
  uint32_t w[kWords];
  const S* p = base + e0;
  if (vec && e0 + N <= len) {
    if constexpr (kBytes == 8) {
      const uint2 u = *reinterpret_cast<const uint2*>(p);
      w[0] = u.x;
      w[1] = u.y;
    } else {
#pragma unroll
      for (int k = 0; k < kBytes / 16; ++k) {
        const uint4 u = reinterpret_cast<const uint4*>(p)[k];
        w[4 * k + 0] = u.x;
        w[4 * k + 1] = u.y;
        w[4 * k + 2] = u.z;
        w[4 * k + 3] = u.w;
      }
    }
  } else {
    using B = BitsOf<S>;
    const B* q = reinterpret_cast<const B*>(p);
#pragma unroll
    for (int j = 0; j < N; ++j) {
      const B bits = e0 + j < len ? q[j] : B(0);  // all-zero bits are +0 in every dtype
      if constexpr (sizeof(S) == 8) {
        w[2 * j] = uint32_t(bits);
        w[2 * j + 1] = uint32_t(uint64_t(bits) >> 32);
      } else if constexpr (sizeof(S) == 4) {
        w[j] = bits;
      } else if (j % 2 == 0) {
        w[j / 2] = bits;
      } else {
        w[j / 2] |= uint32_t(bits) << 16;
      }
    }
  }
  unpack<S>(w, v);
}

// Stores elements [e0, e0 + N) ∩ [0, len) of `base`; same alignment contract as load_vec.
template <typename S, typename C, int N>
__device__ __forceinline__ void store_vec(S* base, int64_t e0, int64_t len, bool vec,
                                          const C (&v)[N]) {
  static_assert(N * sizeof(S) == 16, "row-addressed stores are whole 16-byte chunks");
  uint32_t w[4];
  pack<S>(v, w);
  S* p = base + e0;
  if (vec && e0 + N <= len) {
    *reinterpret_cast<uint4*>(p) = make_uint4(w[0], w[1], w[2], w[3]);
  } else {
    using B = BitsOf<S>;
    B* q = reinterpret_cast<B*>(p);
#pragma unroll
    for (int j = 0; j < N; ++j) {
      if (e0 + j >= len) continue;
      if constexpr (sizeof(S) == 8) {
        q[j] = B(w[2 * j]) | (B(w[2 * j + 1]) << 32);
      } else if constexpr (sizeof(S) == 4) {
        q[j] = w[j];
      } else {
        q[j] = B(j % 2 ? w[j / 2] >> 16 : w[j / 2] & 0xffffu);
      }
    }
  }
}

// A [H] parameter (weight, bias, x_bias) stored either as T or as float32 (mixed precision).
// Which one is a warp-uniform run-time branch rather than a template parameter: it saves a
// factor 8 in instantiations (three independent parameters) for one predicate per chunk.
struct ParamPtr {
  const void* ptr = nullptr;  // null: absent
  bool f32 = false;           // stored as float32 (else as the activations' type T)
};

template <typename T, typename C, int N>
__device__ __forceinline__ void load_param(ParamPtr prm, int64_t e0, int64_t len, bool vec,
                                           C (&v)[N]) {
  if (prm.f32) {
    load_vec(static_cast<const float*>(prm.ptr), e0, len, vec, v);
  } else {
    load_vec(static_cast<const T*>(prm.ptr), e0, len, vec, v);
  }
}

// ---------------------------------------------------------------------------------------
// Launch planning shared by the families
// ---------------------------------------------------------------------------------------

// Vector IO is used only when every row-addressed array starts 16-byte aligned and every row
// stride is a whole number of chunks (so every chunk of every row is aligned), and every [H]
// array is 16-byte aligned. One flag for all arrays keeps the per-chunk test to one branch;
// views that break it are rare and still give the same bits (Note [Same bits with or
// without vectors] above).
inline bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

inline bool rows_vectorizable(const void* p, const RowIndex& idx, int64_t rows, int vec) {
  if (p == nullptr) return true;
  if (!aligned16(p)) return false;
  if (rows <= 1) return true;  // row 0 is at offset 0 whatever the strides say
  for (int d = 0; d < idx.nd; ++d) {
    // An inner dim of size 1 never multiplies its stride (RowIndex::offset); the outermost
    // stride is always used.
    const bool used = d == 0 || idx.size[d] > 1;
    if (used && idx.stride[d] % vec != 0) return false;
  }
  return true;
}

inline bool param_vectorizable(const void* p) { return p == nullptr || aligned16(p); }

inline ParamPtr param(const void* p, DType dt) { return ParamPtr{p, dt == DType::Float32}; }

// Calls f(T{}) with the storage type of `dt`.
template <typename F>
void dispatch_dtype(DType dt, F&& f) {
  switch (dt) {
    case DType::Float32: f(float{}); return;
    case DType::Float64: f(double{}); return;
    case DType::Float16: f(half_t{}); return;
    case DType::BFloat16: f(bfloat16_t{}); return;
  }
  throw Error(ErrorKind::Type, std::string("normkit CUDA: unsupported dtype ") + dtype_name(dt));
}

inline size_t align_up(size_t n) { return (n + 255) / 256 * 256; }  // 256: cudaMalloc's alignment

// One element of a [H] parameter in compute type (1 when absent).
template <typename T, typename C>
__device__ __forceinline__ C param_at(ParamPtr p, int64_t j) {
  if (p.ptr == nullptr) return C(1);
  return p.f32 ? C(static_cast<const float*>(p.ptr)[j]) : C(to_c(static_cast<const T*>(p.ptr)[j]));
}

// ---------------------------------------------------------------------------------------
// Deterministic reductions
// ---------------------------------------------------------------------------------------
// Note [Butterfly sums are bit-identical on every lane]: with xor shuffles lane i computes
// a_i + a_j while lane j computes a_j + a_i; IEEE addition is commutative, so after the
// butterfly every lane holds the same bits, and the tree depends only on the warp width.

template <typename C>
__device__ __forceinline__ C warp_sum(C v) {
#pragma unroll
  for (int m = 16; m >= 1; m /= 2) v += __shfl_xor_sync(0xffffffffu, v, m);
  return v;
}

// Chan merge across a warp. merge_moments(a, b) is not symmetric in rounding, so each pair
// is merged with the lower lane's set as `a`: both partners compute the same bits, and by
// induction every lane ends with the same result.
template <typename C>
__device__ __forceinline__ Moments<C> warp_merge(Moments<C> m) {
  const int lane = int(threadIdx.x) & 31;
#pragma unroll
  for (int o = 1; o < 32; o *= 2) {
    Moments<C> other;
    other.count = __shfl_xor_sync(0xffffffffu, m.count, o);
    other.mean = __shfl_xor_sync(0xffffffffu, m.mean, o);
    other.m2 = __shfl_xor_sync(0xffffffffu, m.m2, o);
    m = (lane & o) ? merge_moments(other, m) : merge_moments(m, other);
  }
  return m;
}

// Sums N values over a "row group": the blockDim.x threads with the same threadIdx.y.
// blockDim.x is a multiple of 32 (≤ 32 warps per block in total). The warps' partial sums
// are added in warp order, so every thread of the group returns the same bits.
// Must be reached by every thread of the block (it synchronizes when a group spans warps).
template <typename C, int N, int M>
__device__ __forceinline__ void group_sum(C (&v)[N], C (*smem)[M]) {
  static_assert(N <= M, "smem holds N values per warp");
#pragma unroll
  for (int n = 0; n < N; ++n) v[n] = warp_sum(v[n]);
  const int wpr = int(blockDim.x) / 32;  // warps per row group, uniform over the block
  if (wpr == 1) return;
  const int warp = int(threadIdx.x) / 32;
  const int first = int(threadIdx.y) * wpr;
  if ((threadIdx.x & 31) == 0) {
#pragma unroll
    for (int n = 0; n < N; ++n) smem[first + warp][n] = v[n];
  }
  __syncthreads();
#pragma unroll
  for (int n = 0; n < N; ++n) {
    C s = smem[first][n];
    for (int k = 1; k < wpr; ++k) s += smem[first + k][n];
    v[n] = s;
  }
  __syncthreads();  // smem is reused by the next reduction
}

// ---------------------------------------------------------------------------------------
// Column sums (Note [Deterministic parameter gradients] in row_norm.cu): per-split partials
// [nsplit][H] in compute type, then one pass adding the splits in order.
// ---------------------------------------------------------------------------------------

__device__ __forceinline__ void store_as(void* out, DType dt, int64_t j, double v) {
  switch (dt) {
    case DType::Float32: static_cast<float*>(out)[j] = float(v); break;
    case DType::Float64: static_cast<double*>(out)[j] = v; break;
    case DType::Float16: static_cast<half_t*>(out)[j] = from_c<half_t>(float(v)); break;
    case DType::BFloat16: static_cast<bfloat16_t*>(out)[j] = from_c<bfloat16_t>(float(v)); break;
  }
}
__device__ __forceinline__ void store_as(void* out, DType dt, int64_t j, float v) {
  switch (dt) {
    case DType::Float32: static_cast<float*>(out)[j] = v; break;
    case DType::Float64: static_cast<double*>(out)[j] = double(v); break;
    case DType::Float16: static_cast<half_t*>(out)[j] = from_c<half_t>(v); break;
    case DType::BFloat16: static_cast<bfloat16_t*>(out)[j] = from_c<bfloat16_t>(v); break;
  }
}

// out[j] = Σ_split part[split][j], splits added in order; stored as `dt` (when out is not
// null) and kept in compute type in raw[j] (when raw is not null).
template <typename C>
__global__ void column_finalize_kernel(const C* part, int64_t nsplit, int64_t H, void* out,
                                       DType dt, C* raw) {
  for (int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; j < H;
       j += int64_t(gridDim.x) * blockDim.x) {
    C s = part[j];
    for (int64_t k = 1; k < nsplit; ++k) s += part[k * H + j];
    if (out != nullptr) store_as(out, dt, j, s);
    if (raw != nullptr) raw[j] = s;
  }
}

template <typename C>
void launch_finalize(const void* part, int64_t nsplit, int64_t H, void* out, DType dt,
                     int device, cudaStream_t st, C* raw = nullptr) {
  const auto kernel = column_finalize_kernel<C>;
  constexpr int kThreads = 256;
  const int grid = grid_size(kernel, kThreads, ceil_div(H, kThreads), device);
  launch("column_finalize_kernel", kernel, grid, kThreads, 0, st, static_cast<const C*>(part),
         nsplit, H, out, dt, raw);
}

// ---------------------------------------------------------------------------------------
// The channel-wise families' small arrays (per channel, group or position: Chan of
// common/batch_norm_problem.hpp), of any float dtype, read as double.
// ---------------------------------------------------------------------------------------

struct Arr {
  const void* p = nullptr;
  DType dt = DType::Float32;
};
NK_HD Arr arr(const Chan& c) { return Arr{c.p, c.dtype}; }

__device__ __forceinline__ double rd(const Arr& a, int64_t i) {
  switch (a.dt) {
    case DType::Float32: return double(static_cast<const float*>(a.p)[i]);
    case DType::Float64: return static_cast<const double*>(a.p)[i];
    case DType::Float16: return double(to_c(static_cast<const half_t*>(a.p)[i]));
    case DType::BFloat16: return double(to_c(static_cast<const bfloat16_t*>(a.p)[i]));
  }
  return 0.0;
}

}  // namespace normkit::detail::cuda
