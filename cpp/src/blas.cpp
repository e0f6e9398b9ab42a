// The CPU BLAS table (normkit/blas.hpp) and the blocked products on top of it (cpu/gemm.hpp).
#include <dlfcn.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <mutex>
#include <string>

#include "common/openmp_state.hpp"
#include "cpu/dispatch.hpp"
#include "cpu/gemm.hpp"
#include "normkit/blas.hpp"
#include "normkit/error.hpp"
#include "normkit/runtime.hpp"

#if defined(NORMKIT_LINKED_CBLAS)
extern "C" {
void cblas_sgemm(int, int, int, int, int, int, float, const float*, int, const float*, int,
                 float, float*, int);
void cblas_dgemm(int, int, int, int, int, int, double, const double*, int, const double*, int,
                 double, double*, int);
}
#endif

namespace normkit {
namespace {

// The table is replaced whole under a mutex and read through an atomic pointer: a call
// always sees one consistent set of functions. Old tables are kept (a call in flight may
// still hold one); there are at most a handful per process.
std::mutex g_mutex;
std::atomic<const CpuBlas*> g_blas{nullptr};

const CpuBlas* install(const CpuBlas& b) {
  std::lock_guard<std::mutex> lock(g_mutex);
  const CpuBlas* t = new CpuBlas(b);  // intentionally never freed (see above)
  g_blas.store(t, std::memory_order_release);
  return t;
}

#if defined(NORMKIT_LINKED_CBLAS)
// -DNORMKIT_CBLAS=ON: the CBLAS the build linked is the default.
const CpuBlas* const g_linked = [] {
  CpuBlas b;
  b.sgemm = reinterpret_cast<CblasSgemm>(&cblas_sgemm);
  b.dgemm = reinterpret_cast<CblasDgemm>(&cblas_dgemm);
  b.name = "linked CBLAS (" NORMKIT_CBLAS_NAME ")";
  return install(b);
}();
#endif

}  // namespace

void set_cpu_blas(const CpuBlas& blas) {
  if (blas.sgemm == nullptr || blas.dgemm == nullptr)
    throw Error(ErrorKind::Value, "set_cpu_blas: blas: sgemm and dgemm are both required");
  CpuBlas b = blas;
  if (b.name.empty()) b.name = "user-provided CBLAS";
  install(b);
}

void load_cpu_blas(const std::string& path, const std::string& prefix) {
  void* h = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (h == nullptr) {
    const char* why = dlerror();
    throw Error(ErrorKind::Runtime, "load_cpu_blas: path: cannot load " + path + ": " +
                                        (why ? why : "unknown error"));
  }
  auto sym = [&](const char* name, bool required) -> void* {
    const std::string s = prefix + name;
    void* f = dlsym(h, s.c_str());
    if (f == nullptr && required)
      throw Error(ErrorKind::Runtime, "load_cpu_blas: " + path + " has no symbol " + s +
                                          " (is prefix='" + prefix + "' right?)");
    return f;
  };
  CpuBlas b;
  b.sgemm = reinterpret_cast<CblasSgemm>(sym("cblas_sgemm", true));
  b.dgemm = reinterpret_cast<CblasDgemm>(sym("cblas_dgemm", true));
  b.set_num_threads = reinterpret_cast<void (*)(int)>(sym("openblas_set_num_threads", false));
  auto config = reinterpret_cast<const char* (*)()>(sym("openblas_get_config", false));
  const std::string base = path.substr(path.find_last_of('/') + 1);
  b.name = config ? std::string(config()) + " (" + base + ")" : base;
  // Note [BLAS threads]: the library's pool is not used; normkit's threads call it.
  if (b.set_num_threads) b.set_num_threads(1);
  install(b);
}

#if !defined(NORMKIT_WITH_CUDA)
void load_cublas(const std::string&) {
  throw Error(ErrorKind::Runtime, "load_cublas: normkit was built without CUDA");
}
bool cublas_available() { return false; }
std::string cublas_info() { return std::string(); }
#endif

bool cpu_blas_available() { return g_blas.load(std::memory_order_acquire) != nullptr; }

std::string cpu_blas_info() {
  const CpuBlas* b = g_blas.load(std::memory_order_acquire);
  return b ? b->name : std::string();
}

namespace cpu {
namespace {

constexpr int kRowMajor = 101, kNoTrans = 111, kTrans = 112;

const CpuBlas& blas_or_fail(const char* op) {
  const CpuBlas* b = g_blas.load(std::memory_order_acquire);
  if (b == nullptr)
    throw Error(ErrorKind::Runtime,
                std::string(op) +
                    ": no CPU BLAS is loaded: the Python package loads scipy-openblas32 "
                    "(pip install scipy-openblas32); C++ embedders call "
                    "normkit::load_cpu_blas() or set_cpu_blas(), or build with "
                    "-DNORMKIT_CBLAS=ON");
  return *b;
}

void call(const CpuBlas& b, Trans ta, Trans tb, int m, int n, int k, float alpha,
          const float* a, int lda, const float* bm, int ldb, float beta, float* c, int ldc) {
  b.sgemm(kRowMajor, ta == Trans::Yes ? kTrans : kNoTrans, tb == Trans::Yes ? kTrans : kNoTrans,
          m, n, k, alpha, a, lda, bm, ldb, beta, c, ldc);
}
void call(const CpuBlas& b, Trans ta, Trans tb, int m, int n, int k, double alpha,
          const double* a, int lda, const double* bm, int ldb, double beta, double* c, int ldc) {
  b.dgemm(kRowMajor, ta == Trans::Yes ? kTrans : kNoTrans, tb == Trans::Yes ? kTrans : kNoTrans,
          m, n, k, alpha, a, lda, bm, ldb, beta, c, ldc);
}

int as_int(int64_t v, const char* op) {
  if (v > int64_t(2147483647))
    throw Error(ErrorKind::Value, std::string(op) + ": a matrix product of this size needs a "
                                                    "dimension over 2^31 - 1 (the BLAS is LP64)");
  return int(v);
}

}  // namespace

void require_cpu_blas(const char* op) { (void)blas_or_fail(op); }

// Note [BLAS threads]. OpenBLAS's own pool (pthreads) and normkit's OpenMP pool would each
// want every core, and each spins a while after its work: run in turn they oversubscribe a
// 2-core machine. So the library runs single-threaded (load_cpu_blas sets it) and normkit
// cuts each product into blocks of C, one BLAS call per block on its OpenMP threads.
// Blocks: C's rows or its columns, whichever repacks less of the shared operand (a row
// block repacks op(B), k·n elements; a column block op(A), m·k); as few as keep each block
// at least 2^25 multiply-adds (smaller ones lose a third of the BLAS's speed: measured on
// the LSTM's [64, 512]·[512, 2048], one call 0.80 ms, two column halves 0.40 ms each, 16
// blocks of 128 columns 1.1 ms in all on 2 threads) but two from 2^20 on (a small RNN's
// products would otherwise run on one thread), at most 16, widths multiples of 64. A
// function of (m, n, k) alone: the bits of C do not depend on the thread count. (The cost:
// a recurrent product of B = 64, H = 512 keeps only 2 threads busy on a bigger machine.)
template <typename T>
void gemm(const char* op, Trans ta, Trans tb, int64_t m, int64_t n, int64_t k, T alpha,
          const T* a, int64_t lda, const T* b, int64_t ldb, T beta, T* c, int64_t ldc) {
  const CpuBlas& lib = blas_or_fail(op);
  if (m <= 0 || n <= 0) return;
  if (k == 0) {  // C = beta·C (a BLAS may leave C alone for k = 0)
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) c[i * ldc + j] = beta == T(0) ? T(0) : beta * c[i * ldc + j];
    return;
  }
  const int K = as_int(k, op), LDA = as_int(lda, op), LDB = as_int(ldb, op),
            LDC = as_int(ldc, op);
  as_int(m, op);
  as_int(n, op);
  const bool by_rows = n <= m;  // op(B) (k·n) is the smaller operand to repack
  const int64_t dim = by_rows ? m : n;
  const double macs = double(m) * double(n) * double(k);
  const double floor_blocks = macs >= double(1 << 20) ? 2.0 : 1.0;  // two threads' worth
  const int64_t want =
      int64_t(std::min(16.0, std::max(floor_blocks, std::floor(macs / double(1 << 25)))));
  int64_t block = dim;
  if (want > 1) block = std::min(dim, std::max<int64_t>(64, ((dim + want - 1) / want + 63) / 64 * 64));
  const int64_t nblocks = (dim + block - 1) / block;
  auto run = [&](int64_t i) {
    const int64_t s = i * block, len = std::min(block, dim - s);
    if (by_rows) {
      const T* ai = ta == Trans::No ? a + s * lda : a + s;
      call(lib, ta, tb, int(len), int(n), K, alpha, ai, LDA, b, LDB, beta, c + s * ldc, LDC);
    } else {
      const T* bi = tb == Trans::No ? b + s : b + s * ldb;
      call(lib, ta, tb, int(m), int(len), K, alpha, a, LDA, bi, LDB, beta, c + s, LDC);
    }
  };
  const int threads = int(std::min<int64_t>(get_num_threads(), nblocks));
  if (threads <= 1) {
    for (int64_t i = 0; i < nblocks; ++i) run(i);
    return;
  }
#if defined(_OPENMP)
  detail::note_openmp_region();
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t i = 0; i < nblocks; ++i) run(i);
#else
  for (int64_t i = 0; i < nblocks; ++i) run(i);
#endif
}

template void gemm<float>(const char*, Trans, Trans, int64_t, int64_t, int64_t, float,
                          const float*, int64_t, const float*, int64_t, float, float*, int64_t);
template void gemm<double>(const char*, Trans, Trans, int64_t, int64_t, int64_t, double,
                           const double*, int64_t, const double*, int64_t, double, double*,
                           int64_t);

}  // namespace cpu
}  // namespace normkit
