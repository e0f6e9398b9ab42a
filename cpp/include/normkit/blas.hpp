// normkit/blas.hpp — the BLAS behind the recurrent cells' matrix products (rnn.hpp).
//
// normkit never ships a GEMM of its own. On the CPU it calls a CBLAS through a table of
// function pointers, filled in one of three ways:
//   - the Python package loads OpenBLAS from the `scipy-openblas32` wheel at first use
//     (load_cpu_blas(path, "scipy_"): its symbols are prefixed, so it cannot clash with the
//     BLAS inside NumPy or torch);
//   - a C++ embedder built with -DNORMKIT_CBLAS=ON links the CBLAS that CMake's FindBLAS finds
//     (cblas_sgemm / cblas_dgemm), registered before main();
//   - or hands its own functions to set_cpu_blas().
// Without one, an RNN call on the CPU fails with a RuntimeError saying what to do.
//
// Threads (Note [BLAS threads]): normkit calls the BLAS single-threaded from its own OpenMP
// threads, each on a fixed block of a product, so at most get_num_threads() threads ever run;
// load_cpu_blas() sets the loaded library's own pool to one thread (set_num_threads below).
#pragma once

#include <string>

#include "normkit/config.hpp"

namespace normkit {

// CBLAS row-major GEMM: C = alpha·op(A)·op(B) + beta·C. `order` = 101 (CblasRowMajor),
// `transa` / `transb` = 111 (CblasNoTrans) or 112 (CblasTrans), as in every cblas.h; 32-bit
// integers (an LP64 BLAS: normkit checks each size fits).
using CblasSgemm = void (*)(int order, int transa, int transb, int m, int n, int k, float alpha,
                            const float* a, int lda, const float* b, int ldb, float beta,
                            float* c, int ldc);
using CblasDgemm = void (*)(int order, int transa, int transb, int m, int n, int k,
                            double alpha, const double* a, int lda, const double* b, int ldb,
                            double beta, double* c, int ldc);

struct CpuBlas {
  CblasSgemm sgemm = nullptr;
  CblasDgemm dgemm = nullptr;
  void (*set_num_threads)(int) = nullptr;  // optional: the library's own thread pool
  std::string name;                         // shown by cpu_blas_info()
};

// Replaces the table (thread-safe with respect to later calls; not to calls in flight).
NORMKIT_API void set_cpu_blas(const CpuBlas& blas);
// dlopen()s `path` and resolves <prefix>cblas_sgemm, <prefix>cblas_dgemm and (if present)
// <prefix>openblas_set_num_threads, which is called with 1. RuntimeError naming the path and
// the missing symbol on failure. The library stays loaded for the life of the process.
NORMKIT_API void load_cpu_blas(const std::string& path, const std::string& prefix = "");
NORMKIT_API bool cpu_blas_available();
// "OpenBLAS 0.3.x ... (libscipy_openblas.so)" or "" when none is set.
NORMKIT_API std::string cpu_blas_info();

// cuBLAS for the recurrent cells on CUDA, loaded at run time, never linked: at the first GPU
// call normkit dlopen()s libcublas.so.13 (then .so.12) from the loader path; the Python
// package first points it at the nvidia-cublas wheel (pip install 'normkit[cuda]') with
// load_cublas(path). Without one, a GPU RNN call fails with a RuntimeError saying so. The
// emulation build uses a test-only stand-in on the CPU BLAS. Builds without CUDA: load_cublas
// throws, cublas_available() is false.
NORMKIT_API void load_cublas(const std::string& path);
NORMKIT_API bool cublas_available();  // may try the loader path's libcublas
NORMKIT_API std::string cublas_info();

}  // namespace normkit
