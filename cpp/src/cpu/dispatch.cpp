// CPU dispatch: the ISA chosen once from CPUID (overridable), and the decisions every
// family's dispatcher shares (threads, streaming stores, parameter conversion, the fixed
// block layout of parameter gradients). Compiled without ISA flags, so nothing here
// executes an instruction the CPU may lack.
#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#if defined(__x86_64__) || defined(_M_X64)
#include <cpuid.h>
#endif

#include "cpu/dispatch.hpp"
#include "cpu/kernels.hpp"
#include "normkit/error.hpp"
#include "normkit/runtime.hpp"

namespace normkit::cpu {
namespace {

bool always() { return true; }

#if defined(__x86_64__) || defined(_M_X64)
// F16C from CPUID leaf 1 (ECX bit 29) directly: gcc 10, which builds the release wheels,
// does not know __builtin_cpu_supports("f16c"). The OS saving the YMM state is implied by
// __builtin_cpu_supports("avx2"), which checks XCR0.
bool has_f16c() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return false;
  return (c & (1u << 29)) != 0;
}
bool has_avx2() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && has_f16c();
}
bool has_avx512() {
  __builtin_cpu_init();
  return has_avx2() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
}
// AVX512_BF16: CPUID leaf 7, subleaf 1, EAX bit 5 (read directly, as F16C above).
bool has_avx512bf16() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!has_avx512() || !__get_cpuid_count(7, 1, &a, &b, &c, &d)) return false;
  return (a & (1u << 5)) != 0;
}
#endif

// Lowest first. The table lists what this build compiled; each row holds every kernel of
// the list in cpu/kernels.hpp for that ISA.
constexpr IsaTable kIsas[] = {
    scalar::table(always),
#if defined(__x86_64__) || defined(_M_X64)
    avx2::table(has_avx2),
    avx512::table(has_avx512),
#if defined(NORMKIT_HAVE_AVX512BF16)
    avx512bf16::table(has_avx512bf16),
#endif
#elif defined(__aarch64__)
    neon::table(always),
#endif
};
constexpr int kNumIsas = int(sizeof(kIsas) / sizeof(kIsas[0]));

int best_isa() {
  int best = 0;
  for (int i = 0; i < kNumIsas; ++i)
    if (kIsas[i].runnable()) best = i;
  return best;
}

int find_isa(const std::string& name) {
  for (int i = 0; i < kNumIsas; ++i)
    if (name == kIsas[i].name) return i;
  return -1;
}

std::string isa_list() {
  std::string s;
  for (int i = 0; i < kNumIsas; ++i) s += std::string(i ? ", " : "") + kIsas[i].name;
  return s;
}

std::atomic<int> g_isa{-1};
std::once_flag g_isa_once;

// NORMKIT_CPU_ISA forces a lower ISA; a name this CPU cannot run gets the best it can.
void init_isa() {
  int isa = best_isa();
  if (const char* env = std::getenv("NORMKIT_CPU_ISA"); env != nullptr && *env != '\0') {
    const int want = find_isa(env);
    if (want < 0)
      throw Error(ErrorKind::Value, std::string("NORMKIT_CPU_ISA=") + env +
                                        ": unknown ISA (compiled: " + isa_list() + ")");
    isa = std::min(isa, want);
  }
  g_isa.store(isa);
}

}  // namespace

const IsaTable& current() {
  if (g_isa.load(std::memory_order_acquire) < 0) std::call_once(g_isa_once, init_isa);
  return kIsas[g_isa.load(std::memory_order_relaxed)];
}

// Note [Streaming stores]: an output larger than this is written with non-temporal stores:
// it cannot stay in the last-level cache anyway, and regular stores would first read every
// line (write-allocate), costing a third of the bandwidth. 16 MiB sits below the 32 MiB L3
// of the machines we measure on, and is overridable for experiments.
int64_t nontemporal_threshold() {
  static const int64_t v = [] {
    if (const char* env = std::getenv("NORMKIT_NT_BYTES")) return int64_t(std::atoll(env));
    return int64_t(16) << 20;
  }();
  return v;
}

// Note [Threads for small work]: below ~64K elements the fork/join of a parallel region
// (a few microseconds) costs more than it saves; otherwise one thread per 32K elements, up
// to the configured count.
int threads_for(int64_t elements, int64_t max_tasks) {
  const int64_t want = elements < (int64_t(1) << 16) ? 1 : elements / (int64_t(1) << 15);
  return int(std::max<int64_t>(1, std::min<int64_t>({int64_t(get_num_threads()), want, max_tasks})));
}

DType compute_dtype(DType x) { return x == DType::Float64 ? DType::Float64 : DType::Float32; }

namespace {
template <typename C, typename S>
void convert_add(const S* src, C* dst, int64_t H, C offset) {
  for (int64_t j = 0; j < H; ++j) dst[j] = C(to_compute(src[j])) + offset;
}

template <typename C>
void convert_to(const void* p, DType dt, C* out, int64_t H, C offset) {
  switch (dt) {  // one switch per call, not per element
    case DType::Float32: return convert_add(static_cast<const float*>(p), out, H, offset);
    case DType::Float64: return convert_add(static_cast<const double*>(p), out, H, offset);
    case DType::Float16: return convert_add(static_cast<const half_t*>(p), out, H, offset);
    case DType::BFloat16: return convert_add(static_cast<const bfloat16_t*>(p), out, H, offset);
  }
}

}  // namespace

namespace {
// The per-thread pool behind ParamBuf: a few blocks that calls on this thread reuse.
struct ParamPool {
  struct Block {
    void* p;
    size_t cap;
  };
  static constexpr int kMax = 8;
  Block blocks[kMax] = {};
  int n = 0;
  ~ParamPool() {
    for (int i = 0; i < n; ++i) std::free(blocks[i].p);
  }
};
thread_local ParamPool param_pool;
}  // namespace

void* ParamBuf::get(size_t bytes) {
  if (bytes <= cap_) return p_;
  ParamPool& pool = param_pool;
  for (int i = 0; i < pool.n; ++i) {
    if (pool.blocks[i].cap >= bytes) {
      std::swap(p_, pool.blocks[i].p);
      std::swap(cap_, pool.blocks[i].cap);
      if (pool.blocks[i].p == nullptr) pool.blocks[i] = pool.blocks[--pool.n];  // had none
      return p_;
    }
  }
  void* q = std::aligned_alloc(64, (bytes + 63) / 64 * 64);
  if (q == nullptr) throw std::bad_alloc();
  std::free(p_);
  p_ = q;
  cap_ = (bytes + 63) / 64 * 64;
  return p_;
}

ParamBuf::~ParamBuf() {
  if (p_ == nullptr) return;
  ParamPool& pool = param_pool;
  if (pool.n < ParamPool::kMax) {
    pool.blocks[pool.n++] = {p_, cap_};
  } else {
    std::free(p_);
  }
}

// Returns p itself when it already is a compute-type array with nothing to add; otherwise
// converts (and adds `offset`) into `buf`: 16-bit parameters with the ISA's conversions
// (the same bits as dtype.hpp's, tests/test_vec_math.cpp), then the offset.
const void* as_compute(const void* p, DType dt, DType x_dtype, int64_t H, double offset,
                       ParamBuf& buf) {
  if (p == nullptr) return nullptr;
  const DType cd = compute_dtype(x_dtype);
  if (dt == cd && offset == 0.0) return p;
  void* out = buf.get(size_t(std::max<int64_t>(H, 1)) * size_t(dtype_size(cd)));
  if (cd == DType::Float32 && (dt == DType::BFloat16 || dt == DType::Float16)) {
    VecConvEval e;
    e.op = dt == DType::BFloat16 ? VecConvEval::FromBf16 : VecConvEval::FromHalf;
    e.in = p;
    e.out = out;
    e.n = H;
    current().vec_conv_eval(e);
    float* f = static_cast<float*>(out);
    const float o = float(offset);
    if (o != 0.0f)
      for (int64_t j = 0; j < H; ++j) f[j] += o;
  } else if (cd == DType::Float64) {
    convert_to<double>(p, dt, static_cast<double*>(out), H, offset);
  } else {
    convert_to<float>(p, dt, static_cast<float*>(out), H, float(offset));
  }
  return out;
}

void zero_fill(void* p, DType dt, int64_t n) {
  if (p != nullptr && n > 0) std::memset(p, 0, size_t(n) * size_t(dtype_size(dt)));
}

// Note [Fixed-order parameter gradients]: the block layout depends on (rows, H) only,
// never on the thread count, so dweight/dbias are bit-identical for any number of threads.
// At most 64 blocks (enough to balance 2–32 threads), each at least 8 rows, and the
// partials limited to ~2^21 values per sum so their traffic stays small next to the data.
Blocks block_layout(int64_t rows, int64_t H) {
  int64_t nb = std::min<int64_t>(64, std::max<int64_t>(1, rows / 8));
  nb = std::min<int64_t>(nb, std::max<int64_t>(1, (int64_t(1) << 21) / std::max<int64_t>(H, 1)));
  const int64_t rpb = (rows + nb - 1) / nb;
  nb = rpb > 0 ? (rows + rpb - 1) / rpb : 1;
  return {nb, rpb};
}


const IsaTable* find_isa_table(const std::string& name) {
  const int i = find_isa(name);
  return i < 0 ? nullptr : &kIsas[i];
}

const char* current_isa_name() { return current().name; }

void set_isa(const std::string& name) {
  current();  // make sure the environment was read first
  const int want = find_isa(name);
  if (want < 0)
    throw Error(ErrorKind::Value, "set_cpu_isa: name: unknown ISA '" + name +
                                      "' (compiled: " + isa_list() + ")");
  if (!kIsas[want].runnable())
    throw Error(ErrorKind::Value, "set_cpu_isa: name: '" + name + "' is compiled in but this CPU cannot run it");
  g_isa.store(want, std::memory_order_release);
}

std::vector<std::string> isa_names(bool runnable_only) {
  std::vector<std::string> v;
  for (int i = 0; i < kNumIsas; ++i)
    if (!runnable_only || kIsas[i].runnable()) v.emplace_back(kIsas[i].name);
  return v;
}

void bench_copy(const void* src, void* dst, int64_t bytes, bool nontemporal) {
  current().copy(src, dst, bytes, threads_for(bytes / 4, bytes / (int64_t(1) << 18) + 1),
                 nontemporal);
}

Scratch::Scratch(void* given, size_t given_bytes, size_t need, const char* op) {
  if (need == 0) return;
  if (given != nullptr) {
    if (given_bytes < need)
      throw Error(ErrorKind::Value, std::string(op) + ": workspace: expected at least " +
                                        std::to_string(need) + " bytes, got " +
                                        std::to_string(given_bytes));
    ptr_ = given;
  } else {
    own_.reset(new char[need]);
    ptr_ = own_.get();
  }
}

}  // namespace normkit::cpu
