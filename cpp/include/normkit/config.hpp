// normkit/config.hpp — compiler portability macros shared by host and device code.
#pragma once

#define NORMKIT_VERSION_MAJOR 0
#define NORMKIT_VERSION_MINOR 1
#define NORMKIT_VERSION_PATCH 0
#define NORMKIT_VERSION_STRING "0.1.0"

// NK_HD marks the family math headers: the same inline function is compiled for the host
// (scalar and SIMD CPU paths) and for the device (CUDA kernels).
#if defined(__CUDACC__)
#define NK_HD __host__ __device__ __forceinline__
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
