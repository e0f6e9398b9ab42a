#include "normkit/runtime.hpp"

#include <atomic>
#include <string>

#if !defined(_WIN32)
#include <pthread.h>
#endif

#include "common/backends.hpp"
#include "common/openmp_state.hpp"
#include "cpu/dispatch.hpp"
#include "normkit/error.hpp"

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace normkit {
namespace detail {
std::atomic<bool> g_openmp_used{false};
}

namespace {
std::atomic<int> g_threads{0};  // 0: not set — g_default_threads
std::atomic<int> g_default_threads{0};  // 0: the OpenMP default
std::atomic<bool> g_single{false};  // a fork()ed child of a process that ran OpenMP regions

// Note [Fork]: GNU OpenMP's thread pool does not survive fork(): in the child only the
// forking thread exists, but libgomp still counts the parent's workers, and the next
// parallel region waits for them forever (a torch DataLoader worker calling normkit after
// the main process did). So a child forked after normkit ran a parallel region computes on
// one thread — no region is opened for one thread (Note [No region for one thread]) — and
// set_num_threads there keeps 1. A child of a process that never ran one keeps its threads.
void on_fork_child() {
  if (detail::g_openmp_used.load(std::memory_order_relaxed)) g_single.store(true);
}

#if !defined(_WIN32)
[[maybe_unused]] const int g_atfork_registered = pthread_atfork(nullptr, nullptr, on_fork_child);
#endif
}  // namespace

void set_num_threads(int n) {
  if (n < 1)
    throw Error(ErrorKind::Value, "set_num_threads: n: expected >= 1, got " + std::to_string(n));
  g_threads.store(n);
}

void set_default_num_threads(int n) {
  if (n < 0)
    throw Error(ErrorKind::Value,
                "set_default_num_threads: n: expected >= 0 (0: the OpenMP default), got " +
                    std::to_string(n));
  g_default_threads.store(n, std::memory_order_relaxed);
}

int get_num_threads() {
  if (g_single.load(std::memory_order_relaxed)) return 1;
  const int n = g_threads.load(std::memory_order_relaxed);
  if (n > 0) return n;
  const int d = g_default_threads.load(std::memory_order_relaxed);
  if (d > 0) return d;
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

std::string cuda_status() {
#if defined(NORMKIT_CUDA_EMULATION)
  return "emulated (test-only build: cuda/emu runs the CUDA kernels on the CPU); " +
         detail::cuda::status();
#elif defined(NORMKIT_WITH_CUDA)
  return detail::cuda::status();
#else
  return "this build of normkit has no CUDA backend (no driver was looked for)";
#endif
}

std::string openmp_info() {
#if defined(_OPENMP)
  return "OpenMP " + std::to_string(_OPENMP);
#else
  return "";
#endif
}

int openmp_team_size(int n) {
  if (n < 1)
    throw Error(ErrorKind::Value, "openmp_team_size: n: expected >= 1, got " + std::to_string(n));
#if defined(_OPENMP)
  if (get_num_threads() == 1) return 1;  // Note [Fork]: no region in a forked child
  detail::note_openmp_region();
  int team = 1;
#pragma omp parallel num_threads(n)
  {
#pragma omp single
    team = omp_get_num_threads();
  }
  return team;
#else
  return 1;
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
