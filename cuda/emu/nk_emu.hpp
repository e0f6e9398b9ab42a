// cuda/emu/nk_emu.hpp — normkit's test-only SIMT emulator: the device side of CUDA as host
// C++. The emulation build (CMake option NORMKIT_CUDA_EMULATION) compiles every cuda/*.cu
// file with g++ as C++ with this header force-included (-include), against the CUDA
// toolkit's own host headers; cuda/emu/emu.cpp runs the kernels. Never part of a release.
//
// What a kernel sees:
//   threadIdx, blockIdx, blockDim, gridDim, warpSize   this fiber's values (read-only)
//   __shared__                                         one copy per block, NaN-poisoned
//   __syncthreads, __syncwarp, __shfl_*_sync,          exact collectives: they complete only
//   __ballot_sync, __any_sync, __all_sync               when every thread they name arrives
//                                                       at the same call site (file:line)
//   __float_as_uint & co., integer min/max             bit casts and helpers
//   __launch_bounds__, __grid_constant__, ...          compiled away
// and the host side launches through normkit::detail::cuda::launch (cuda/common.cuh), which
// calls nk_emu::launch here. See cuda/NOTES.md, "The emulator", for what is and is not checked.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cstring>
#include <tuple>
#include <type_traits>
#include <utility>

// ---------------------------------------------------------------------------------------
// Qualifiers. Without __CUDACC__ the toolkit's host_defines.h already maps __global__,
// __device__, __host__, __grid_constant__ to nothing; these are the ones it leaves out.
// ---------------------------------------------------------------------------------------
#ifndef __launch_bounds__
#define __launch_bounds__(...)
#endif
// All __shared__ variables of all kernels live in one ELF section that the scheduler fills
// with the poison pattern before every block (emu.cpp, poison_shared). Blocks run one at a
// time, so a static is one block's shared memory. The section is sanitized by ASan
// (-fsanitize-sections=nk_emu_shared in the CMake emulation target), so an out-of-bounds
// access of a shared array is an ASan report.
#undef __shared__
#define __shared__ __attribute__((section("nk_emu_shared"))) static

namespace nk_emu {

// ---------------------------------------------------------------------------------------
// The running thread's coordinates (set by the scheduler on every switch).
// ---------------------------------------------------------------------------------------
struct Coords {
  uint3 thread_idx;
  uint3 block_idx;
  dim3 block_dim;
  dim3 grid_dim;
};
extern Coords g_coords;

// ---------------------------------------------------------------------------------------
// Collectives (defined in emu.cpp). `file`/`line` name the call site.
// ---------------------------------------------------------------------------------------
enum class WarpOp : int { Sync, ShflIdx, ShflUp, ShflDown, ShflXor, Ballot, Any, All };

void syncthreads(const char* file, int line);
// Every collective of one warp: the lane's `value` (raw bits) goes in, the lane's result
// comes out. For shuffles `param` is srcLane / delta / laneMask and `width` the segment.
uint64_t warp_collective(WarpOp op, const char* file, int line, unsigned mask, uint64_t value,
                         int param, int width);

template <typename T>
inline uint64_t to_bits(const T& v) {
  static_assert(std::is_trivially_copyable_v<T> && sizeof(T) <= 8,
                "nk_emu: shuffled values are at most 8 bytes");
  uint64_t u = 0;
  std::memcpy(&u, &v, sizeof(T));
  return u;
}
template <typename T>
inline T from_bits(uint64_t u) {
  T v;
  std::memcpy(&v, &u, sizeof(T));
  return v;
}

template <typename T>
inline T shfl(WarpOp op, const char* file, int line, unsigned mask, T var, int param,
              int width = 32) {
  return from_bits<T>(warp_collective(op, file, line, mask, to_bits(var), param, width));
}

inline void syncwarp(const char* file, int line, unsigned mask = 0xffffffffu) {
  (void)warp_collective(WarpOp::Sync, file, line, mask, 0, 0, 32);
}

inline unsigned ballot(const char* file, int line, unsigned mask, int pred) {
  return unsigned(warp_collective(WarpOp::Ballot, file, line, mask, pred != 0, 0, 32));
}
inline int vote(WarpOp op, const char* file, int line, unsigned mask, int pred) {
  return int(warp_collective(op, file, line, mask, pred != 0, 0, 32));
}

// For the emulator's own self-tests (cuda/emu/tests): switch the scheduling policy at run
// time ("lowest", "highest", "roundrobin", "random"); returns the previous one. Everything
// else reads NK_EMU_SCHEDULE once.
const char* set_schedule_for_testing(const char* policy);

// ---------------------------------------------------------------------------------------
// Launch (host side)
// ---------------------------------------------------------------------------------------
// Runs the grid now (streams execute eagerly) and returns what a launch would leave for
// cudaGetLastError: cudaSuccess, a configuration error, or cudaErrorLaunchFailure when a
// thread broke a rule (the message: cudaGetErrorString, and stderr).
using ThreadBody = void (*)(void* ctx);
cudaError_t run_grid(const char* kernel_name, dim3 grid, dim3 block, size_t dynamic_smem,
                     cudaStream_t stream, ThreadBody body, void* ctx);

template <typename... P, typename... A>
cudaError_t launch(const char* name, void (*kernel)(P...), dim3 grid, dim3 block, size_t smem,
                   cudaStream_t stream, A&&... args) {
  // The kernel's parameters, converted once as a real launch copies them into parameter
  // space; every thread then gets its own by-value copy.
  struct Ctx {
    void (*kernel)(P...);
    std::tuple<std::decay_t<P>...> params;
  } ctx{kernel, std::tuple<std::decay_t<P>...>(std::forward<A>(args)...)};
  const ThreadBody body = [](void* c) {
    Ctx& x = *static_cast<Ctx*>(c);
    std::apply(x.kernel, x.params);
  };
  return run_grid(name, grid, block, smem, stream, body, &ctx);
}

}  // namespace nk_emu

// ---------------------------------------------------------------------------------------
// Built-in variables
// ---------------------------------------------------------------------------------------
#define threadIdx (static_cast<const uint3&>(::nk_emu::g_coords.thread_idx))
#define blockIdx (static_cast<const uint3&>(::nk_emu::g_coords.block_idx))
#define blockDim (static_cast<const dim3&>(::nk_emu::g_coords.block_dim))
#define gridDim (static_cast<const dim3&>(::nk_emu::g_coords.grid_dim))
#define warpSize 32

// ---------------------------------------------------------------------------------------
// Barriers and warp intrinsics: macros so that each call names its site.
// ---------------------------------------------------------------------------------------
#define __syncthreads() ::nk_emu::syncthreads(__FILE__, __LINE__)
#define __syncwarp(...) ::nk_emu::syncwarp(__FILE__, __LINE__, ##__VA_ARGS__)
#define __shfl_sync(...) ::nk_emu::shfl(::nk_emu::WarpOp::ShflIdx, __FILE__, __LINE__, __VA_ARGS__)
#define __shfl_up_sync(...) ::nk_emu::shfl(::nk_emu::WarpOp::ShflUp, __FILE__, __LINE__, __VA_ARGS__)
#define __shfl_down_sync(...) \
  ::nk_emu::shfl(::nk_emu::WarpOp::ShflDown, __FILE__, __LINE__, __VA_ARGS__)
#define __shfl_xor_sync(...) ::nk_emu::shfl(::nk_emu::WarpOp::ShflXor, __FILE__, __LINE__, __VA_ARGS__)
#define __ballot_sync(mask, pred) ::nk_emu::ballot(__FILE__, __LINE__, (mask), (pred))
#define __any_sync(mask, pred) ::nk_emu::vote(::nk_emu::WarpOp::Any, __FILE__, __LINE__, (mask), (pred))
#define __all_sync(mask, pred) ::nk_emu::vote(::nk_emu::WarpOp::All, __FILE__, __LINE__, (mask), (pred))

// ---------------------------------------------------------------------------------------
// Device intrinsics the host headers do not define
// ---------------------------------------------------------------------------------------
inline unsigned int __float_as_uint(float x) { return nk_emu::from_bits<unsigned int>(nk_emu::to_bits(x)); }
inline float __uint_as_float(unsigned int x) { return nk_emu::from_bits<float>(x); }
inline int __float_as_int(float x) { return nk_emu::from_bits<int>(nk_emu::to_bits(x)); }
inline float __int_as_float(int x) { return nk_emu::from_bits<float>(uint32_t(x)); }
inline long long __double_as_longlong(double x) { return nk_emu::from_bits<long long>(nk_emu::to_bits(x)); }
inline double __longlong_as_double(long long x) { return nk_emu::from_bits<double>(uint64_t(x)); }
inline int __double2hiint(double x) { return int(uint32_t(nk_emu::to_bits(x) >> 32)); }
inline int __double2loint(double x) { return int(uint32_t(nk_emu::to_bits(x))); }
inline double __hiloint2double(int hi, int lo) {
  return nk_emu::from_bits<double>((uint64_t(uint32_t(hi)) << 32) | uint32_t(lo));
}

// Integer min/max as CUDA's device math declares them (same-type overloads).
#define NK_EMU_MINMAX(T)                              \
  inline T min(T a, T b) { return b < a ? b : a; } \
  inline T max(T a, T b) { return a < b ? b : a; }
NK_EMU_MINMAX(int)
NK_EMU_MINMAX(unsigned int)
NK_EMU_MINMAX(long)
NK_EMU_MINMAX(unsigned long)
NK_EMU_MINMAX(long long)
NK_EMU_MINMAX(unsigned long long)
#undef NK_EMU_MINMAX
