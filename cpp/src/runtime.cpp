#include "normkit/runtime.hpp"

#include <atomic>
#include <string>

#include "common/backends.hpp"
#include "cpu/dispatch.hpp"
#include "normkit/error.hpp"

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace normkit {
namespace {
std::atomic<int> g_threads{0};  // 0: the OpenMP default
}

void set_num_threads(int n) {
  if (n < 1)
    throw Error(ErrorKind::Value, "set_num_threads: n: expected >= 1, got " + std::to_string(n));
  g_threads.store(n);
}

int get_num_threads() {
  const int n = g_threads.load();
  if (n > 0) return n;
#if defined(_OPENMP)
  return omp_get_max_threads();
#else
  return 1;
#endif
}

std::string cpu_isa() { return cpu::current_isa_name(); }
void set_cpu_isa(const std::string& name) { cpu::set_isa(name); }
std::vector<std::string> available_cpu_isas() { return cpu::isa_names(true); }
std::vector<std::string> compiled_cpu_isas() { return cpu::isa_names(false); }

bool cuda_compiled() {
#if defined(NORMKIT_WITH_CUDA)
  return true;
#else
  return false;
#endif
}

bool cuda_emulated() {
#if defined(NORMKIT_CUDA_EMULATION)
  return true;
#else
  return false;
#endif
}

bool cuda_available() {
#if defined(NORMKIT_WITH_CUDA)
  return detail::cuda::device_count() > 0;
#else
  return false;
#endif
}

std::string cuda_architectures() {
#if defined(NORMKIT_WITH_CUDA)
  return detail::cuda::architectures();
#else
  return "";
#endif
}

void bench_copy(const void* src, void* dst, int64_t bytes, bool nontemporal) {
  cpu::bench_copy(src, dst, bytes, nontemporal);
}

std::string compiler_info() {
  std::string s = NORMKIT_CXX_COMPILER;
#if defined(NORMKIT_CUDA_COMPILER)
  s += "; " NORMKIT_CUDA_COMPILER;
#endif
  return s;
}

}  // namespace normkit
