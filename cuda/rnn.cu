// cuda/rnn.cu — the layer-normalized recurrent sequences on the GPU (SPEC §12,
// normkit/rnn.hpp): cpp/src/rnn.cpp's entry points as cuBLAS products and fused step
// kernels, the same algorithm as the CPU's (cpu/rnn_dispatch.cpp, cpu/rnn_kernel.cpp) and the
// same reserve layout (common/rnn_problem.hpp), the gate math of common/rnn_math.hpp.
//
//   forward:  PX = X·W_ihᵀ for all T steps (one product); per step PH = h·W_hhᵀ, then
//             rnn_fwd_kernel, one block per batch row: the LN statistics (block sums, two
//             passes), gates, state update, y and the reserve.
//   backward: per step rnn_bwd_kernel (one block per row) writes dpx, dph and the pre-LN
//             gradients the parameter sums need, then dh += dph·W_hh; after the loop dW_ih,
//             dW_hh and dx as three products and the LN / bias gradients as column sums
//             (colsum_kernel: one thread per column, rows in order — fixed order, no atomics).
//
// cuBLAS is loaded at run time (dlopen of libcublas.so.13 / .12 or the path load_cublas()
// was given: the nvidia-cublas wheel), never linked at build time; the emulation build uses a
// test-only stand-in on the CPU BLAS instead (its device memory is host memory). Untuned:
// scalar loads, one block per row, column sums one thread per column.
#include <cmath>
#include <cstdint>
#include <mutex>
#include <string>

#if !defined(NORMKIT_CUDA_EMULATION)
#include <dlfcn.h>
#endif

#include "common.cuh"
#include "common/backends.hpp"
#include "common/lane.hpp"
#include "common/rnn_math.hpp"
#include "common/rnn_problem.hpp"
#include "normkit/blas.hpp"

#if defined(NORMKIT_CUDA_EMULATION)
#include "cpu/gemm.hpp"
#endif

namespace normkit {
namespace detail::cuda {
namespace {

// ---------------------------------------------------------------------------------------
// cuBLAS, loaded at run time
// ---------------------------------------------------------------------------------------

constexpr int kOpN = 0, kOpT = 1;  // cublasOperation_t
using CublasHandle = void*;
struct CublasApi {
  int (*create)(CublasHandle*) = nullptr;
  int (*destroy)(CublasHandle) = nullptr;
  int (*set_stream)(CublasHandle, cudaStream_t) = nullptr;
  int (*sgemm)(CublasHandle, int, int, int, int, int, const float*, const float*, int,
               const float*, int, const float*, float*, int) = nullptr;
  int (*dgemm)(CublasHandle, int, int, int, int, int, const double*, const double*, int,
               const double*, int, const double*, double*, int) = nullptr;
  std::string name;
};

std::mutex g_cublas_mutex;
CublasApi* g_cublas = nullptr;  // set once, never freed

#if defined(NORMKIT_CUDA_EMULATION)
// The test-only stand-in: column-major GEMM on emulated device memory (host memory) through
// the CPU BLAS, C_cm = op(A)·op(B) being row-major Cᵀ = op(B)ᵀ·op(A)ᵀ.
int standin_create(CublasHandle* h) {
  static int token;
  *h = &token;
  return 0;
}
int standin_destroy(CublasHandle) { return 0; }
int standin_set_stream(CublasHandle, cudaStream_t) { return 0; }
template <typename T>
int standin_gemm(CublasHandle, int ta, int tb, int m, int n, int k, const T* alpha, const T* A,
                 int lda, const T* B, int ldb, const T* beta, T* Cm, int ldc) {
  using cpu::Trans;
  cpu::gemm<T>("cuBLAS stand-in", tb == kOpT ? Trans::Yes : Trans::No,
               ta == kOpT ? Trans::Yes : Trans::No, n, m, k, *alpha, B, ldb, A, lda, *beta, Cm,
               ldc);
  return 0;
}
#endif

#if !defined(NORMKIT_CUDA_EMULATION)
// The API from a dlopen()ed libcublas, or nullptr (and `why`) when a symbol is missing.
CublasApi* api_from(void* h, const std::string& name, std::string& why) {
  auto* api = new CublasApi;
  const char* missing = nullptr;
  auto sym = [&](const char* s) {
    void* f = dlsym(h, s);
    if (f == nullptr && missing == nullptr) missing = s;
    return f;
  };
  api->create = reinterpret_cast<decltype(api->create)>(sym("cublasCreate_v2"));
  api->destroy = reinterpret_cast<decltype(api->destroy)>(sym("cublasDestroy_v2"));
  api->set_stream = reinterpret_cast<decltype(api->set_stream)>(sym("cublasSetStream_v2"));
  api->sgemm = reinterpret_cast<decltype(api->sgemm)>(sym("cublasSgemm_v2"));
  api->dgemm = reinterpret_cast<decltype(api->dgemm)>(sym("cublasDgemm_v2"));
  api->name = name;
  if (missing != nullptr) {
    why = name + " has no " + missing;
    delete api;
    return nullptr;
  }
  return api;
}
#endif

const CublasApi& cublas_or_fail(const char* op) {
  std::lock_guard<std::mutex> lock(g_cublas_mutex);
  if (g_cublas != nullptr) return *g_cublas;
#if defined(NORMKIT_CUDA_EMULATION)
  (void)op;
  auto* api = new CublasApi;
  api->create = &standin_create;
  api->destroy = &standin_destroy;
  api->set_stream = &standin_set_stream;
  api->sgemm = &standin_gemm<float>;
  api->dgemm = &standin_gemm<double>;
  api->name = "cuBLAS stand-in on the CPU BLAS (emulation build, test-only)";
  g_cublas = api;
  return *api;
#else
  std::string why = "libcublas.so.13 / .so.12 not found on the loader path";
  for (const char* name : {"libcublas.so.13", "libcublas.so.12", "libcublas.so"}) {
    if (void* h = dlopen(name, RTLD_NOW | RTLD_LOCAL)) {
      if ((g_cublas = api_from(h, name, why)) != nullptr) return *g_cublas;
    }
  }
  throw Error(ErrorKind::Runtime,
              std::string(op) + ": cuBLAS is not available (" + why +
                  "): pip install 'normkit[cuda]' (the nvidia-cublas wheel, which normkit "
                  "loads at the first call) or call normkit::load_cublas(path)");
#endif
}

}  // namespace
}  // namespace detail::cuda

#if !defined(NORMKIT_CUDA_EMULATION)
void load_cublas(const std::string& path) {
  using namespace detail::cuda;
  void* h = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (h == nullptr) {
    const char* why = dlerror();
    throw Error(ErrorKind::Runtime,
                "load_cublas: path: cannot load " + path + ": " + (why ? why : "unknown error"));
  }
  std::string why;
  CublasApi* api = api_from(h, path, why);
  if (api == nullptr) throw Error(ErrorKind::Runtime, "load_cublas: " + why);
  std::lock_guard<std::mutex> lock(g_cublas_mutex);
  g_cublas = api;
}
#else
void load_cublas(const std::string&) {}  // the emulation build always uses its stand-in
#endif

bool cublas_available() {
  try {
    (void)detail::cuda::cublas_or_fail("cublas_available");
    return true;
  } catch (const Error&) {
    return false;
  }
}

std::string cublas_info() {
  return cublas_available() ? detail::cuda::g_cublas->name : std::string();
}

namespace detail::cuda {
namespace {

// The calling thread's handle per device (created at first use, kept for the process).
CublasHandle handle_for(const CublasApi& api, int device, cudaStream_t stream) {
  thread_local CublasHandle handles[64] = {};
  if (device < 0 || device >= 64) throw Error(ErrorKind::Runtime, "cuBLAS: device index over 63");
  if (handles[device] == nullptr && api.create(&handles[device]) != 0)
    throw Error(ErrorKind::Runtime, "cuBLAS: cublasCreate failed (out of device memory, or "
                                    "the driver is too old for this cuBLAS)");
  if (api.set_stream(handles[device], stream) != 0)
    throw Error(ErrorKind::Runtime, "cuBLAS: cublasSetStream failed");
  return handles[device];
}

// Row-major C[M, N] = alpha·op(A)·op(B) + beta·C as cuBLAS's column-major Cᵀ = op(B)ᵀ·op(A)ᵀ.
template <typename C>
void gemm_rm(const CublasApi& api, CublasHandle h, bool ta, bool tb, int64_t M, int64_t N,
             int64_t K, C alpha, const C* A, int64_t lda, const C* B, int64_t ldb, C beta, C* Cm,
             int64_t ldc) {
  if (M <= 0 || N <= 0) return;
  for (int64_t v : {M, N, K, lda, ldb, ldc})
    if (v > 2147483647) throw Error(ErrorKind::Value, "rnn: a product dimension over 2^31 - 1");
  int st;
  if constexpr (std::is_same_v<C, float>)
    st = api.sgemm(h, tb ? kOpT : kOpN, ta ? kOpT : kOpN, int(N), int(M), int(K), &alpha, B,
                   int(ldb), A, int(lda), &beta, Cm, int(ldc));
  else
    st = api.dgemm(h, tb ? kOpT : kOpN, ta ? kOpT : kOpN, int(N), int(M), int(K), &alpha, B,
                   int(ldb), A, int(lda), &beta, Cm, int(ldc));
  if (st != 0)
    throw Error(ErrorKind::Runtime, "cuBLAS: gemm failed with status " + std::to_string(st));
}

constexpr int kThreads = 256;

// One step's arrays (device pointers; compute type = data type), cpu/rnn_prep.hpp's fields.
struct Step {
  RnnShape sh;
  RnnReserve lay;  // rnn_reserve_layout(cell, H), computed on the host
  int64_t t = 0;
  const void *lnx_w, *lnx_b, *lnh_w, *lnh_b, *lnc_w, *lnc_b, *bias, *bias_h;
  SeqRows mask_h, mask_c;
  double zo_h = 0, zo_c = 0;
  void* reserve = nullptr;
  void *px = nullptr, *ph = nullptr;
  const void *h_prev = nullptr, *c_prev = nullptr;
  void *h_next = nullptr, *c_next = nullptr;
  SeqRows y, dy;
  const void *dh_in = nullptr, *dc_in = nullptr;
  void *dh_out = nullptr, *dc_out = nullptr, *dpx = nullptr, *dph = nullptr;
  void *g1 = nullptr, *g2 = nullptr, *g3 = nullptr;  // the pre-LN gradients kept for the sums
};

template <typename C>
__device__ __forceinline__ C* resv(const Step& s, RnnReserve::Block k, int64_t b) {
  return static_cast<C*>(s.reserve) + s.lay.offset[k] * s.sh.T * s.sh.B +
         (s.t * s.sh.B + b) * s.lay.width[k];
}
template <typename C>
__device__ __forceinline__ const C* seq_row(const SeqRows& r, int64_t t, int64_t b) {
  return r.p ? static_cast<const C*>(r.p) + t * r.st + b * r.sb : nullptr;
}
template <typename C>
__device__ __forceinline__ C cz(const C* m, int64_t j, double c) {
  return m ? m[j] : C(c);
}
template <typename C>
__device__ __forceinline__ C blend(C m, C prev, C next) {
  return rnn::zoneout(Lane<C>::set1(m), Lane<C>::set1(prev), Lane<C>::set1(next)).v;
}

// Note [Parts in registers]: the per-part statistics (up to 4 gates) live in register arrays
// indexed only by the unrolled part loop's constant k — a runtime index (j / plen) would put
// them in local memory.

// Per-part mean and 1/sqrt(var + eps) of v[0..parts·plen): two block passes.
template <typename C>
__device__ void part_stats(const C* v, int parts, int64_t plen, double eps, C (&mean)[4],
                           C (&rstd)[4], C (*red)[8]) {
  C s[8] = {};
#pragma unroll
  for (int k = 0; k < 4; ++k)
    if (k < parts)
      for (int64_t j = threadIdx.x; j < plen; j += blockDim.x) s[k] += v[k * plen + j];
  group_sum(s, red);
#pragma unroll
  for (int k = 0; k < 4; ++k) mean[k] = s[k] / C(plen);
  C q[8] = {};
#pragma unroll
  for (int k = 0; k < 4; ++k)
    if (k < parts)
      for (int64_t j = threadIdx.x; j < plen; j += blockDim.x) {
        const C d = v[k * plen + j] - mean[k];
        q[k] += d * d;
      }
  group_sum(q, red);
#pragma unroll
  for (int k = 0; k < 4; ++k) rstd[k] = C(1.0 / sqrt(double(q[k]) / double(plen) + eps));
}

// The statistics of two arrays at once (the x and h parts).
template <typename C>
__device__ void part_stats2(const C* v1, const C* v2, int parts, int64_t plen, double eps,
                            C (&m1)[4], C (&r1)[4], C (&m2)[4], C (&r2)[4], C (*red)[8]) {
  C s[8] = {};
#pragma unroll
  for (int k = 0; k < 4; ++k)
    if (k < parts)
      for (int64_t j = threadIdx.x; j < plen; j += blockDim.x) {
        s[k] += v1[k * plen + j];
        s[4 + k] += v2[k * plen + j];
      }
  group_sum(s, red);
#pragma unroll
  for (int k = 0; k < 4; ++k) m1[k] = s[k] / C(plen), m2[k] = s[4 + k] / C(plen);
  C q[8] = {};
#pragma unroll
  for (int k = 0; k < 4; ++k)
    if (k < parts)
      for (int64_t j = threadIdx.x; j < plen; j += blockDim.x) {
        const C d1 = v1[k * plen + j] - m1[k], d2 = v2[k * plen + j] - m2[k];
        q[k] += d1 * d1;
        q[4 + k] += d2 * d2;
      }
  group_sum(q, red);
#pragma unroll
  for (int k = 0; k < 4; ++k) {
    r1[k] = C(1.0 / sqrt(double(q[k]) / double(plen) + eps));
    r2[k] = C(1.0 / sqrt(double(q[4 + k]) / double(plen) + eps));
  }
}

// The cell as a template parameter: one kernel per cell keeps each one's registers to its own
// math (one kernel for all spilled on sm_75).
constexpr int kLstm = 0, kGru = 1, kElman = 2;
inline int cell_kind(RnnCell c) {
  return c == RnnCell::LSTM ? kLstm : c == RnnCell::GRU ? kGru : kElman;
}

// Assumptions (both step kernels): blockDim = (kThreads, 1), any grid (grid-stride over rows,
// uniform over the block).
template <typename C, int kCell>
__global__ void __launch_bounds__(kThreads, 1) rnn_fwd_kernel(const __grid_constant__ Step s) {
  __shared__ C red[kThreads / 32][8];
  const int64_t H = s.sh.H, N = s.sh.N, t = s.t;
  const bool train = s.reserve != nullptr;
  const int G = s.sh.G;
  const int parts = s.sh.per_gate ? G : 1;
  const int64_t plen = N / parts;
  const C *gx = static_cast<const C*>(s.lnx_w), *bx = static_cast<const C*>(s.lnx_b);
  const C *gh = static_cast<const C*>(s.lnh_w), *bh = static_cast<const C*>(s.lnh_b);
  const C *gc = static_cast<const C*>(s.lnc_w), *bc = static_cast<const C*>(s.lnc_b);
  const C *bias = static_cast<const C*>(s.bias), *bias_h = static_cast<const C*>(s.bias_h);
  for (int64_t b = blockIdx.x; b < s.sh.B; b += gridDim.x) {
    C* px = static_cast<C*>(s.px) + b * N;
    C* a = static_cast<C*>(s.ph) + b * N;
    const C* hp = static_cast<const C*>(s.h_prev) + b * H;
    C* hn = static_cast<C*>(s.h_next) + b * H;
    C* y = static_cast<C*>(s.y.p) + t * s.y.st + b * s.y.sb;
    const C* mh = seq_row<C>(s.mask_h, t, b);
    if constexpr (kCell == kElman) {
      for (int64_t j = threadIdx.x; j < H; j += blockDim.x) a[j] = (px[j] + a[j]) + bias[j];
      __syncthreads();
      C m[4], r[4];
      part_stats(a, 1, H, s.sh.eps, m, r, red);
      for (int64_t j = threadIdx.x; j < H; j += blockDim.x) {
        const C xh = (a[j] - m[0]) * r[0];
        const C u = Lane<C>::fmadd(Lane<C>::set1(gx[j]), Lane<C>::set1(xh), Lane<C>::set1(bx[j])).v;
        const C ht = s.sh.cell == RnnCell::RNN_RELU ? (u > C(0) || u != u ? u : C(0))
                                                    : vmath::tanh(Lane<C>::set1(u)).v;
        const C h = blend(cz(mh, j, s.zo_h), hp[j], ht);
        y[j] = h;
        hn[j] = h;
        if (train) {
          resv<C>(s, RnnReserve::XhatX, b)[j] = xh;
          resv<C>(s, RnnReserve::HTil, b)[j] = ht;
          resv<C>(s, RnnReserve::HPrev, b)[j] = hp[j];
        }
      }
      if (train && threadIdx.x == 0) resv<C>(s, RnnReserve::Stats, b)[0] = r[0];
      __syncthreads();
      continue;
    }
    C mx[4], rx[4], mhh[4], rh[4];
    part_stats2(px, a, parts, plen, s.sh.eps, mx, rx, mhh, rh, red);
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      if (k >= parts) continue;
      for (int64_t jj = threadIdx.x; jj < plen; jj += blockDim.x) {
      const int64_t j = k * plen + jj;
      const C xx = (px[j] - mx[k]) * rx[k], xh = (a[j] - mhh[k]) * rh[k];
      if (train) {
        resv<C>(s, RnnReserve::XhatX, b)[j] = xx;
        resv<C>(s, RnnReserve::XhatH, b)[j] = xh;
      }
      const C vx = Lane<C>::fmadd(Lane<C>::set1(gx[j]), Lane<C>::set1(xx), Lane<C>::set1(bx[j])).v;
      const C vh = Lane<C>::fmadd(Lane<C>::set1(gh[j]), Lane<C>::set1(xh), Lane<C>::set1(bh[j])).v;
      if constexpr (kCell == kLstm) {
        a[j] = (vx + vh) + bias[j];
      } else {
        px[j] = vx + bias[j];
        a[j] = vh + bias_h[j];
      }
      }
    }
    __syncthreads();
    if constexpr (kCell == kGru) {
      for (int64_t j = threadIdx.x; j < H; j += blockDim.x) {
        using L = Lane<C>;
        const auto g = rnn::gru_gates(L::set1(px[j]), L::set1(a[j]), L::set1(px[H + j]),
                                      L::set1(a[H + j]), L::set1(px[2 * H + j]),
                                      L::set1(a[2 * H + j]), L::set1(hp[j]));
        const C h = blend(cz(mh, j, s.zo_h), hp[j], g.h.v);
        y[j] = h;
        hn[j] = h;
        if (train) {
          C* rzn = resv<C>(s, RnnReserve::Gates, b);
          rzn[j] = g.r.v, rzn[H + j] = g.z.v, rzn[2 * H + j] = g.n.v;
          resv<C>(s, RnnReserve::GhN, b)[j] = a[2 * H + j];
          resv<C>(s, RnnReserve::HPrev, b)[j] = hp[j];
        }
      }
      if (train && threadIdx.x == 0) {
        C* st = resv<C>(s, RnnReserve::Stats, b);
#pragma unroll
        for (int k = 0; k < 3; ++k) st[k] = k < parts ? rx[k] : rx[0], st[3 + k] = k < parts ? rh[k] : rh[0];
      }
      __syncthreads();
      continue;
    }
    // LSTM
    const C* cp = static_cast<const C*>(s.c_prev) + b * H;
    C* cn = static_cast<C*>(s.c_next) + b * H;
    const C* mc = seq_row<C>(s.mask_c, t, b);
    for (int64_t j = threadIdx.x; j < H; j += blockDim.x) {
      using L = Lane<C>;
      const auto g = rnn::lstm_gates(L::set1(a[j]), L::set1(a[H + j]), L::set1(a[2 * H + j]),
                                     L::set1(a[3 * H + j]), L::set1(cp[j]));
      if (train) {
        C* gt = resv<C>(s, RnnReserve::Gates, b);
        gt[j] = g.i.v, gt[H + j] = g.f.v, gt[2 * H + j] = g.g.v, gt[3 * H + j] = g.o.v;
      }
      a[j] = g.c.v;
      a[3 * H + j] = g.o.v;
    }
    __syncthreads();
    C mcs[4], rcs[4];
    part_stats(a, 1, H, s.sh.eps, mcs, rcs, red);
    for (int64_t j = threadIdx.x; j < H; j += blockDim.x) {
      const C ct = a[j];
      const C ch = (ct - mcs[0]) * rcs[0];
      const C u = Lane<C>::fmadd(Lane<C>::set1(gc[j]), Lane<C>::set1(ch), Lane<C>::set1(bc[j])).v;
      const C ht = a[3 * H + j] * vmath::tanh(Lane<C>::set1(u)).v;
      const C h = blend(cz(mh, j, s.zo_h), hp[j], ht);
      const C c = blend(cz(mc, j, s.zo_c), cp[j], ct);
      y[j] = h;
      hn[j] = h;
      cn[j] = c;
      if (train) {
        resv<C>(s, RnnReserve::CTil, b)[j] = ct;
        resv<C>(s, RnnReserve::HPrev, b)[j] = hp[j];
        resv<C>(s, RnnReserve::CPrev, b)[j] = cp[j];
      }
    }
    if (train && threadIdx.x == 0) {
      C* st = resv<C>(s, RnnReserve::Stats, b);
#pragma unroll
      for (int k = 0; k < 4; ++k) st[k] = k < parts ? rx[k] : rx[0], st[4 + k] = k < parts ? rh[k] : rh[0];
      st[8] = mcs[0];
      st[9] = rcs[0];
    }
    __syncthreads();
  }
}

// The LN backward of one row's parts in place: out = rstd·(g − mean g − x̂·mean(g·x̂)),
// g = d·γ. d and out may be the same array (each element read before it is written by the
// thread that owns it; the sums come first). rstd: the parts' (Note [Parts in registers]).
template <typename C>
__device__ void ln_backward_row(const C* d, const C* gamma, const C* xhat, const C* rstd,
                                int parts, int64_t plen, C* out, C (*red)[8]) {
  C s[8] = {};
#pragma unroll
  for (int k = 0; k < 4; ++k)
    if (k < parts)
      for (int64_t jj = threadIdx.x; jj < plen; jj += blockDim.x) {
        const int64_t j = k * plen + jj;
        const C g = d[j] * gamma[j];
        s[k] += g;
        s[4 + k] += g * xhat[j];
      }
  group_sum(s, red);
#pragma unroll
  for (int k = 0; k < 4; ++k)
    if (k < parts) {
      const C r = rstd[k], m1 = s[k] / C(plen), m2 = s[4 + k] / C(plen);
      for (int64_t jj = threadIdx.x; jj < plen; jj += blockDim.x) {
        const int64_t j = k * plen + jj;
        const C g = d[j] * gamma[j];
        out[j] = r * (g - m1 - xhat[j] * m2);
      }
    }
  __syncthreads();
}

template <typename C, int kCell>
__global__ void __launch_bounds__(kThreads, 1) rnn_bwd_kernel(const __grid_constant__ Step s) {
  __shared__ C red[kThreads / 32][8];
  const int64_t H = s.sh.H, N = s.sh.N, t = s.t;
  const int G = s.sh.G;
  const int parts = s.sh.per_gate ? G : 1;
  const int64_t plen = N / parts;
  const C *gx = static_cast<const C*>(s.lnx_w), *gh = static_cast<const C*>(s.lnh_w);
  const C *gc = static_cast<const C*>(s.lnc_w), *bc = static_cast<const C*>(s.lnc_b);
  const C one = C(1);
  for (int64_t b = blockIdx.x; b < s.sh.B; b += gridDim.x) {
    const int64_t row = t * s.sh.B + b;
    const C* dy = seq_row<C>(s.dy, t, b);
    const C* dhs = static_cast<const C*>(s.dh_in) + b * H;
    C* dho = static_cast<C*>(s.dh_out) + b * H;
    const C* mh = seq_row<C>(s.mask_h, t, b);
    C* dpx = static_cast<C*>(s.dpx) + b * N;
    C* dph = static_cast<C*>(s.dph) + b * N;
    if constexpr (kCell == kElman) {
      C* du = static_cast<C*>(s.g1) + row * H;  // kept: dγ = Σ du·x̂, dβ = Σ du
      const C* xh = resv<C>(s, RnnReserve::XhatX, b);
      const C* ht = resv<C>(s, RnnReserve::HTil, b);
      const C r[1] = {resv<C>(s, RnnReserve::Stats, b)[0]};
      for (int64_t j = threadIdx.x; j < H; j += blockDim.x) {
        const C dh = (dy ? dy[j] : C(0)) + dhs[j];
        const C m = cz(mh, j, s.zo_h);
        const C dht = (one - m) * dh;
        dho[j] = m * dh;
        const C h = ht[j];
        du[j] = s.sh.cell == RnnCell::RNN_RELU ? (h > C(0) ? dht : C(0)) : dht * (one - h * h);
      }
      __syncthreads();
      ln_backward_row(du, gx, xh, r, 1, H, dpx, red);
      continue;
    }
    const C* xhx = resv<C>(s, RnnReserve::XhatX, b);
    const C* xhh = resv<C>(s, RnnReserve::XhatH, b);
    const C* st = resv<C>(s, RnnReserve::Stats, b);
    const C* hprev = resv<C>(s, RnnReserve::HPrev, b);
    if constexpr (kCell == kGru) {
      C* dgx = static_cast<C*>(s.g1) + row * N;  // kept for the sums
      C* dgh = static_cast<C*>(s.g2) + row * N;
      const C* rzn = resv<C>(s, RnnReserve::Gates, b);
      const C* ghn = resv<C>(s, RnnReserve::GhN, b);
      for (int64_t j = threadIdx.x; j < H; j += blockDim.x) {
        using L = Lane<C>;
        const C dh = (dy ? dy[j] : C(0)) + dhs[j];
        const C m = cz(mh, j, s.zo_h);
        const C rr = rzn[j];
        const auto d = rnn::gru_gate_grads(L::set1((one - m) * dh), L::set1(rr), L::set1(rzn[H + j]),
                                           L::set1(rzn[2 * H + j]), L::set1(ghn[j]),
                                           L::set1(hprev[j]));
        dho[j] = Lane<C>::fmadd(L::set1(m), L::set1(dh), d.h_prev).v;
        dgx[j] = d.ar.v, dgx[H + j] = d.az.v, dgx[2 * H + j] = d.an.v;
        dgh[j] = d.ar.v, dgh[H + j] = d.az.v, dgh[2 * H + j] = d.an.v * rr;
      }
      __syncthreads();
      ln_backward_row(dgx, gx, xhx, st, parts, plen, dpx, red);
      ln_backward_row(dgh, gh, xhh, st + 3, parts, plen, dph, red);
      continue;
    }
    // LSTM
    C* da = static_cast<C*>(s.g1) + row * N;   // kept: Σda (biases, β), Σda·x̂ (γ)
    C* du = static_cast<C*>(s.g2) + row * H;   // kept: Σdu·ĉ, Σdu (LN_c)
    C* duc = static_cast<C*>(s.g3) + row * H;  // Σdu·ĉ's terms
    const C* dcs = static_cast<const C*>(s.dc_in) + b * H;
    C* dco = static_cast<C*>(s.dc_out) + b * H;
    const C* mc = seq_row<C>(s.mask_c, t, b);
    const C* gates = resv<C>(s, RnnReserve::Gates, b);
    const C* ctil = resv<C>(s, RnnReserve::CTil, b);
    const C* cprev = resv<C>(s, RnnReserve::CPrev, b);
    const C mean_c = st[8], rstd_c = st[9];
    C sums[8] = {};
    for (int64_t j = threadIdx.x; j < H; j += blockDim.x) {
      const C dh = (dy ? dy[j] : C(0)) + dhs[j];
      const C m = cz(mh, j, s.zo_h);
      const C dht = (one - m) * dh;
      dho[j] = m * dh;
      const C ch = (ctil[j] - mean_c) * rstd_c;
      const C tc = vmath::tanh(Lane<C>::fmadd(Lane<C>::set1(gc[j]), Lane<C>::set1(ch),
                                              Lane<C>::set1(bc[j]))).v;
      const C o = gates[3 * H + j];
      const C dU = dht * o * (one - tc * tc);
      du[j] = dU;
      duc[j] = dU * ch;
      const C dch = dU * gc[j];
      dpx[j] = dch;  // scratch until the LN backward below
      sums[0] += dch;
      sums[1] += dch * ch;
      da[3 * H + j] = rnn::sigmoid_grad(Lane<C>::set1(dht * tc), Lane<C>::set1(o)).v;
    }
    group_sum(sums, red);
    const C m1 = sums[0] / C(H), m2 = sums[1] / C(H);
    for (int64_t j = threadIdx.x; j < H; j += blockDim.x) {
      using L = Lane<C>;
      const C ch = (ctil[j] - mean_c) * rstd_c;
      const C m = cz(mc, j, s.zo_c);
      const C dct = rstd_c * (dpx[j] - m1 - ch * m2) + (one - m) * dcs[j];
      const auto d = rnn::lstm_gate_grads(L::set1(dct), L::set1(gates[j]), L::set1(gates[H + j]),
                                          L::set1(gates[2 * H + j]), L::set1(cprev[j]));
      dco[j] = L::fmadd(L::set1(m), L::set1(dcs[j]), d.c_prev).v;
      da[j] = d.ai.v, da[H + j] = d.af.v, da[2 * H + j] = d.ag.v;
    }
    __syncthreads();
    ln_backward_row(da, gx, xhx, st, parts, plen, dpx, red);
    ln_backward_row(da, gh, xhh, st + 4, parts, plen, dph, red);
  }
}

// out[j] = Σ_r a[r·W + j]·(b ? b[r·W + j] : 1) over rows r = 0, 1, ... in order; one thread per
// column, any grid.
template <typename C>
__global__ void colsum_kernel(const C* a, const C* b, int64_t rows, int64_t W, C* out) {
  for (int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; j < W;
       j += int64_t(gridDim.x) * blockDim.x) {
    C s = C(0);
    for (int64_t r = 0; r < rows; ++r) s += b ? a[r * W + j] * b[r * W + j] : a[r * W + j];
    out[j] = s;
  }
}

// Rows of a [T, B, W] array (strides st, sb) copied to another, elementwise; any grid.
template <typename C>
__global__ void copy_rows_kernel(const C* src, int64_t sst, int64_t ssb, C* dst, int64_t dst_,
                                 int64_t dsb, int64_t T, int64_t B, int64_t W) {
  const int64_t n = T * B * W;
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < n;
       e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t j = e % W, tb = e / W, b = tb % B, t = tb / B;
    dst[t * dst_ + b * dsb + j] = src[t * sst + b * ssb + j];
  }
}

// A fill of n values; any grid.
template <typename C>
__global__ void fill_kernel(C* p, int64_t n, C v) {
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < n;
       e += int64_t(gridDim.x) * blockDim.x)
    p[e] = v;
}

// b_ih + b_hh (absent ones 0).
template <typename C>
__global__ void add_bias_kernel(const C* a, const C* b, C* out, int64_t n) {
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < n;
       e += int64_t(gridDim.x) * blockDim.x)
    out[e] = (a ? a[e] : C(0)) + (b ? b[e] : C(0));
}

int blocks_for(int64_t n) { return int(std::min<int64_t>(4096, std::max<int64_t>(1, ceil_div(n, 256)))); }

template <typename C>
void copy_rows(const void* src, int64_t sst, int64_t ssb, void* dst, int64_t dst_, int64_t dsb,
               int64_t T, int64_t B, int64_t W, cudaStream_t st) {
  if (T * B * W == 0) return;
  launch("rnn copy_rows", copy_rows_kernel<C>, dim3(blocks_for(T * B * W)), dim3(256), 0, st,
         static_cast<const C*>(src), sst, ssb, static_cast<C*>(dst), dst_, dsb, T, B, W);
}
template <typename C>
void fill(void* p, int64_t n, C v, cudaStream_t st) {
  if (n == 0) return;
  launch("rnn fill", fill_kernel<C>, dim3(blocks_for(n)), dim3(256), 0, st, static_cast<C*>(p),
         n, v);
}
template <typename C>
void colsum(const void* a, const void* b, int64_t rows, int64_t W, void* out, cudaStream_t st) {
  if (out == nullptr) return;
  launch("rnn colsum", colsum_kernel<C>, dim3(blocks_for(W)), dim3(256), 0, st,
         static_cast<const C*>(a), static_cast<const C*>(b), rows, W, static_cast<C*>(out));
}

// Device scratch carved into 256-byte aligned pieces.
struct Carve {
  size_t bytes = 0;
  size_t take(int64_t elems, size_t es) {
    const size_t at = bytes;
    bytes += align_up(size_t(elems) * es);
    return at;
  }
};

// A [T, B, W] view as a matrix of T·B rows: its leading dimension, or 0 (pack it first).
int64_t matrix_ld(const SeqRows& r, int64_t T, int64_t B, int64_t W) {
  int64_t ld = -1;
  if (B == 1) ld = r.st;
  else if (T == 1 || r.st == B * r.sb) ld = r.sb;
  return ld >= W && ld > 0 ? ld : 0;
}

template <typename C>
void set_params(Step& s, const RnnShape& sh, const RnnParams& p, char* w, size_t at, cudaStream_t st) {
  C* ones = reinterpret_cast<C*>(w + at);
  C* zeros = ones + sh.N;
  C* bsum = zeros + sh.N;
  fill<C>(ones, sh.N, C(1), st);
  fill<C>(zeros, sh.N, C(0), st);
  auto or_ = [](const void* a, const C* d) -> const void* { return a ? a : d; };
  s.lnx_w = or_(p.lnx_w, ones), s.lnx_b = or_(p.lnx_b, zeros);
  s.lnh_w = or_(p.lnh_w, ones), s.lnh_b = or_(p.lnh_b, zeros);
  s.lnc_w = or_(p.lnc_w, ones), s.lnc_b = or_(p.lnc_b, zeros);
  if (sh.gru()) {
    s.bias = or_(p.b_ih, zeros), s.bias_h = or_(p.b_hh, zeros);
  } else {
    const int64_t n = sh.elman() ? sh.H : sh.N;
    launch("rnn add_bias", add_bias_kernel<C>, dim3(blocks_for(n)), dim3(256), 0, st,
           static_cast<const C*>(p.b_ih), static_cast<const C*>(p.b_hh), bsum, n);
    s.bias = bsum, s.bias_h = zeros;
  }
  s.mask_h = p.mask_h, s.mask_c = p.mask_c, s.zo_h = p.zo_h, s.zo_c = p.zo_c;
}

template <typename C>
void forward_typed(const RnnProblem& p, cudaStream_t st) {
  const char* op = "rnn_forward";
  const CublasApi& api = cublas_or_fail(op);
  CublasHandle h = handle_for(api, p.device_index, st);
  const int64_t T = p.T, B = p.B, H = p.H, N = p.N, I = p.I;
  const size_t es = sizeof(C);
  const bool pack = matrix_ld(p.x, T, B, I) == 0 && I > 0 && T * B > 0;
  Carve cv;
  const size_t o_px = cv.take(T * B * N, es), o_ph = cv.take(B * N, es), o_h = cv.take(2 * B * H, es),
               o_c = cv.take(2 * B * H, es), o_x = cv.take(pack ? T * B * I : 0, es),
               o_p = cv.take(3 * N, es);
  const StreamScratch scratch(cv.bytes, st);
  char* w = static_cast<char*>(scratch.get());
  C *PX = reinterpret_cast<C*>(w + o_px), *PH = reinterpret_cast<C*>(w + o_ph),
    *Hs = reinterpret_cast<C*>(w + o_h), *Cs = reinterpret_cast<C*>(w + o_c);
  Step s;
  s.sh = p;
  s.lay = rnn_reserve_layout(p.cell, H);
  set_params<C>(s, p, p, w, o_p, st);
  s.reserve = p.reserve;
  s.y = p.y;
  if (p.h0.p) copy_rows<C>(p.h0.p, 0, p.h0.sb, Hs, 0, H, 1, B, H, st); else fill<C>(Hs, B * H, C(0), st);
  if (p.c0.p) copy_rows<C>(p.c0.p, 0, p.c0.sb, Cs, 0, H, 1, B, H, st); else fill<C>(Cs, B * H, C(0), st);
  if (T > 0) {
    const C* X = static_cast<const C*>(p.x.p);
    int64_t ldx = matrix_ld(p.x, T, B, I);
    if (pack) {
      C* Xp = reinterpret_cast<C*>(w + o_x);
      copy_rows<C>(p.x.p, p.x.st, p.x.sb, Xp, B * I, I, T, B, I, st);
      X = Xp, ldx = I;
    }
    if (I == 0) fill<C>(PX, T * B * N, C(0), st);
    else gemm_rm<C>(api, h, false, true, T * B, N, I, C(1), X, ldx,
                    static_cast<const C*>(p.w_ih), p.w_ih_ld, C(0), PX, N);
  }
  int cur = 0;
  const int grid = int(std::min<int64_t>(B, 65535));
  for (int64_t step = 0; step < T; ++step) {
    const int64_t t = p.reverse ? T - 1 - step : step;
    C* hp = Hs + cur * B * H;
    gemm_rm<C>(api, h, false, true, B, N, H, C(1), hp, H, static_cast<const C*>(p.w_hh),
               p.w_hh_ld, C(0), PH, N);
    s.t = t;
    s.px = PX + t * B * N, s.ph = PH, s.h_prev = hp, s.c_prev = Cs + cur * B * H;
    s.h_next = Hs + (1 - cur) * B * H, s.c_next = Cs + (1 - cur) * B * H;
    const int k = cell_kind(p.cell);
    launch("rnn_fwd_kernel", k == kLstm ? rnn_fwd_kernel<C, kLstm> : k == kGru ? rnn_fwd_kernel<C, kGru>
                                                                             : rnn_fwd_kernel<C, kElman>,
           dim3(grid), dim3(kThreads), 0, st, s);
    cur = 1 - cur;
  }
  if (p.h_n.p) copy_rows<C>(Hs + cur * B * H, 0, H, p.h_n.p, 0, p.h_n.sb, 1, B, H, st);
  if (p.c_n.p) copy_rows<C>(Cs + cur * B * H, 0, H, p.c_n.p, 0, p.c_n.sb, 1, B, H, st);
}

template <typename C>
void backward_typed(const RnnBackwardProblem& p, cudaStream_t st) {
  const char* op = "rnn_backward";
  const CublasApi& api = cublas_or_fail(op);
  CublasHandle h = handle_for(api, p.device_index, st);
  const int64_t T = p.T, B = p.B, H = p.H, N = p.N, I = p.I, M = T * B;
  const size_t es = sizeof(C);
  const bool pack_x = p.dw_ih && I > 0 && M > 0 && matrix_ld(p.x, T, B, I) == 0;
  const bool pack_dx = p.dx.p && I > 0 && M > 0 && matrix_ld(p.dx, T, B, I) == 0;
  const int64_t g1 = p.elman() ? M * H : M * N, g2 = p.lstm() ? M * H : p.gru() ? M * N : 0,
                g3 = p.lstm() ? M * H : 0;
  Carve cv;
  const size_t o_dpx = cv.take(M * N, es), o_dph = cv.take(p.elman() ? 0 : M * N, es),
               o_dh = cv.take(2 * B * H, es), o_dc = cv.take(2 * B * H, es),
               o_g1 = cv.take(g1, es), o_g2 = cv.take(g2, es), o_g3 = cv.take(g3, es),
               o_x = cv.take(pack_x ? M * I : 0, es), o_dx = cv.take(pack_dx ? M * I : 0, es),
               o_p = cv.take(3 * N, es);
  const StreamScratch scratch(cv.bytes, st);
  char* w = static_cast<char*>(scratch.get());
  C* dPX = reinterpret_cast<C*>(w + o_dpx);
  C* dPH = p.elman() ? dPX : reinterpret_cast<C*>(w + o_dph);
  C *dHs = reinterpret_cast<C*>(w + o_dh), *dCs = reinterpret_cast<C*>(w + o_dc);
  Step s;
  s.sh = p;
  s.lay = rnn_reserve_layout(p.cell, H);
  set_params<C>(s, p, p, w, o_p, st);
  s.reserve = const_cast<void*>(p.reserve);
  s.dy = p.dy;
  s.g1 = w + o_g1, s.g2 = w + o_g2, s.g3 = w + o_g3;
  if (p.dh_n.p) copy_rows<C>(p.dh_n.p, 0, p.dh_n.sb, dHs, 0, H, 1, B, H, st); else fill<C>(dHs, B * H, C(0), st);
  if (p.dc_n.p) copy_rows<C>(p.dc_n.p, 0, p.dc_n.sb, dCs, 0, H, 1, B, H, st); else fill<C>(dCs, B * H, C(0), st);
  int cur = 0;
  const int grid = int(std::min<int64_t>(std::max<int64_t>(B, 1), 65535));
  for (int64_t step = T - 1; step >= 0 && B > 0; --step) {
    const int64_t t = p.reverse ? T - 1 - step : step;
    s.t = t;
    s.dh_in = dHs + cur * B * H, s.dc_in = dCs + cur * B * H;
    C* dh_out = dHs + (1 - cur) * B * H;
    s.dh_out = dh_out, s.dc_out = dCs + (1 - cur) * B * H;
    s.dpx = dPX + t * B * N, s.dph = dPH + t * B * N;
    const int k = cell_kind(p.cell);
    launch("rnn_bwd_kernel", k == kLstm ? rnn_bwd_kernel<C, kLstm> : k == kGru ? rnn_bwd_kernel<C, kGru>
                                                                             : rnn_bwd_kernel<C, kElman>,
           dim3(grid), dim3(kThreads), 0, st, s);
    gemm_rm<C>(api, h, false, false, B, H, N, C(1), dPH + t * B * N, N,
               static_cast<const C*>(p.w_hh), p.w_hh_ld, C(1), dh_out, H);
    cur = 1 - cur;
  }
  if (p.dh0.p) copy_rows<C>(dHs + cur * B * H, 0, H, p.dh0.p, 0, p.dh0.sb, 1, B, H, st);
  if (p.dc0.p) copy_rows<C>(dCs + cur * B * H, 0, H, p.dc0.p, 0, p.dc0.sb, 1, B, H, st);
  if (p.dw_ih) {
    if (M == 0 || I == 0) {
      fill<C>(p.dw_ih, N * I, C(0), st);
    } else {
      const C* X = static_cast<const C*>(p.x.p);
      int64_t ldx = matrix_ld(p.x, T, B, I);
      if (pack_x) {
        C* Xp = reinterpret_cast<C*>(w + o_x);
        copy_rows<C>(p.x.p, p.x.st, p.x.sb, Xp, B * I, I, T, B, I, st);
        X = Xp, ldx = I;
      }
      gemm_rm<C>(api, h, true, false, N, I, M, C(1), dPX, N, X, ldx, C(0),
                 static_cast<C*>(p.dw_ih), I);
    }
  }
  const RnnReserve R = rnn_reserve_layout(p.cell, H);
  const C* res = static_cast<const C*>(p.reserve);
  if (p.dw_hh) {
    if (M == 0) fill<C>(p.dw_hh, N * H, C(0), st);
    else gemm_rm<C>(api, h, true, false, N, H, M, C(1), dPH, N, res + R.offset[RnnReserve::HPrev] * M,
                    H, C(0), static_cast<C*>(p.dw_hh), H);
  }
  if (p.dx.p && M > 0 && I > 0) {
    C* DX = pack_dx ? reinterpret_cast<C*>(w + o_dx) : static_cast<C*>(p.dx.p);
    const int64_t lddx = pack_dx ? I : matrix_ld(p.dx, T, B, I);
    gemm_rm<C>(api, h, false, false, M, I, N, C(1), dPX, N, static_cast<const C*>(p.w_ih),
               p.w_ih_ld, C(0), DX, lddx);
    if (pack_dx) copy_rows<C>(DX, B * I, I, p.dx.p, p.dx.st, p.dx.sb, T, B, I, st);
  }
  // Parameter gradients: column sums over the T·B rows in order.
  const C* xhx = res + R.offset[RnnReserve::XhatX] * M;
  const C* xhh = res + R.offset[RnnReserve::XhatH] * M;
  auto sum = [&](const void* a, const void* b, int64_t W, void* out) {
    if (out == nullptr) return;
    if (M == 0) fill<C>(out, W, C(0), st);
    else colsum<C>(a, b, M, W, out, st);
  };
  if (p.lstm()) {
    for (void* o : {p.db_ih, p.db_hh, p.dlnx_b, p.dlnh_b}) sum(s.g1, nullptr, N, o);
    sum(s.g1, xhx, N, p.dlnx_w);
    sum(s.g1, xhh, N, p.dlnh_w);
    sum(s.g3, nullptr, H, p.dlnc_w);
    sum(s.g2, nullptr, H, p.dlnc_b);
  } else if (p.gru()) {
    for (void* o : {p.db_ih, p.dlnx_b}) sum(s.g1, nullptr, N, o);
    for (void* o : {p.db_hh, p.dlnh_b}) sum(s.g2, nullptr, N, o);
    sum(s.g1, xhx, N, p.dlnx_w);
    sum(s.g2, xhh, N, p.dlnh_w);
  } else {
    for (void* o : {p.db_ih, p.db_hh}) sum(dPX, nullptr, H, o);
    sum(s.g1, xhx, H, p.dlnx_w);
    sum(s.g1, nullptr, H, p.dlnx_b);
  }
}

}  // namespace

void rnn_forward(const RnnProblem& p, Stream stream) {
  const DeviceGuard guard(p.device_index);
  if (p.B == 0) return;
  auto st = static_cast<cudaStream_t>(stream);
  if (p.dtype == DType::Float64) forward_typed<double>(p, st);
  else forward_typed<float>(p, st);
}

void rnn_backward(const RnnBackwardProblem& p, Stream stream) {
  const DeviceGuard guard(p.device_index);
  auto st = static_cast<cudaStream_t>(stream);
  if (p.dtype == DType::Float64) backward_typed<double>(p, st);
  else backward_typed<float>(p, st);
}

}  // namespace detail::cuda
}  // namespace normkit
