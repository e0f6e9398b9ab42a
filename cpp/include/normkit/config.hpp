// normkit/config.hpp — compiler portability macros shared by host and device code.
#pragma once

#define NORMKIT_VERSION_MAJOR 0
#define NORMKIT_VERSION_MINOR 1
#define NORMKIT_VERSION_PATCH 0
#define NORMKIT_VERSION_STRING "0.1.0"

// NK_HD marks the family math headers: the same inline function is compiled for the host
// (scalar and SIMD CPU paths) and for the device (CUDA kernels).
// On the host they are always inlined, as __forceinline__ makes them on the device: with
// plain `inline`, each per-ISA CPU object (built with -mavx2 or -mavx512f) emits its own weak
// copy of every call it does not inline (-O0, Debug), and the linker keeps one of them for
// every caller — possibly an AVX-512 one for the scalar path on a CPU without AVX-512.
#if defined(__CUDACC__)
#define NK_HD __host__ __device__ __forceinline__
#elif defined(__GNUC__) || defined(__clang__)
#define NK_HD inline __attribute__((always_inline))
#else
#define NK_HD inline
#endif

// Note [Inlined vector bodies]: the CPU kernels hand their per-vector work to loop helpers
// (map_vectors, vec_loop) as lambdas, called once per vector. The helpers are
// always_inline, but the lambdas are not unless marked: GCC outlined the larger ones (the
// 16-bit row-norm backward's pass 2, batch norm's apply, the RNN gates) — a call per 16
// elements with every captured value reloaded through the closure, which made the bf16
// backward slower than float32's with half the bytes. NK_INLINE_LAMBDA goes after a
// lambda's parameter list: `[&](int64_t j, int64_t n) NK_INLINE_LAMBDA { ... }`.
#if defined(__GNUC__) || defined(__clang__)
#define NK_RESTRICT __restrict__
#define NK_ALWAYS_INLINE inline __attribute__((always_inline))
#define NK_INLINE_LAMBDA __attribute__((always_inline))
#else
#define NK_RESTRICT
#define NK_ALWAYS_INLINE inline
#define NK_INLINE_LAMBDA
#endif

// Symbols of the core library that embedders may call.
#if defined(_WIN32)
#define NORMKIT_API
#else
#define NORMKIT_API __attribute__((visibility("default")))
#endif
