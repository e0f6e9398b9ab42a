// Internal: whether this process has run an OpenMP parallel region (Note [Fork], runtime.cpp).
// Every region normkit opens marks it first (cpu/vec/loops.hpp's parallel_ranges, the blocked
// BLAS products of blas.cpp).
#pragma once

#include <atomic>

namespace normkit::detail {

extern std::atomic<bool> g_openmp_used;

inline void note_openmp_region() {
  if (!g_openmp_used.load(std::memory_order_relaxed))
    g_openmp_used.store(true, std::memory_order_relaxed);
}

}  // namespace normkit::detail
