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

#if defined(__GNUC__) || defined(__clang__)
#define NK_RESTRICT __restrict__
#define NK_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define NK_RESTRICT
#define NK_ALWAYS_INLINE inline
#endif

// Symbols of the core library that embedders may call.
#if defined(_WIN32)
#define NORMKIT_API
#else
#define NORMKIT_API __attribute__((visibility("default")))
#endif
