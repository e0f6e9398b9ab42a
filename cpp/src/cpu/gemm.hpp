// Internal: the CPU matrix products of the recurrent cells, on the BLAS of normkit/blas.hpp.
// Compiled without ISA flags (the BLAS dispatches on the CPU itself).
#pragma once

#include <cstdint>

namespace normkit::cpu {

enum class Trans { No, Yes };

// C[m, n] = alpha·op(A)·op(B) + beta·C, row-major, op(A) [m, k], op(B) [k, n], leading
// dimensions in elements. Note [BLAS threads]: the product is cut into blocks of C that depend
// on (m, n, k) alone and each block is one single-threaded BLAS call on one of normkit's
// threads, so the bits of C never depend on the thread count. T = float or double. Throws
// a RuntimeError when no CPU BLAS is set (normkit/blas.hpp); `op` names the call.
template <typename T>
void gemm(const char* op, Trans ta, Trans tb, int64_t m, int64_t n, int64_t k, T alpha,
          const T* a, int64_t lda, const T* b, int64_t ldb, T beta, T* c, int64_t ldc);

// RuntimeError naming `op` unless a CPU BLAS is set.
void require_cpu_blas(const char* op);

}  // namespace normkit::cpu
