// cuda/emu/tests/broken_kernels.cu — the emulator's self-tests: deliberately broken kernels
// that each detector must catch, plus correct ones that must pass. Compiled only in the
// emulation build (as C++ with nk_emu.hpp force-included, like cuda/*.cu) into
// nk_emu_selftest; a detector that silently stops detecting fails ctest.
//
//   nk_emu_selftest [PREFIX...]     the in-process tests (nk_test harness): scheduler checks
//                                   (file:line in the error), races under each policy,
//                                   poison, launch configuration, occupancy
//   nk_emu_selftest --crash NAME    runs one case that only a sanitizer reports (it aborts);
//                                   ctest matches the sanitizer's report in its output
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "common.cuh"

#include "nk_test.hpp"

namespace {

using normkit::detail::cuda::launch;

// ---- kernels ----------------------------------------------------------------------------

__global__ void ok_kernel(float* out) {
  __shared__ float s[64];
  s[threadIdx.x] = float(threadIdx.x);
  __syncthreads();
  float v = s[63 - threadIdx.x];
  v += __shfl_xor_sync(0xffffffffu, v, 1);
  out[threadIdx.x] = v;
}

constexpr int kLineDivergent = __LINE__ + 3;
__global__ void divergent_barrier(float* out) {
  if (threadIdx.x < 16) {
    __syncthreads();
  } else {
    __syncthreads();
  }
  out[threadIdx.x] = 1.0f;
}

constexpr int kLineBarrierAfterExit = __LINE__ + 3;
__global__ void barrier_after_exit(float* out) {
  if (threadIdx.x >= 32) return;
  __syncthreads();
  out[threadIdx.x] = 1.0f;
}

constexpr int kLineHalfWarp = __LINE__ + 4;
__global__ void half_warp_shuffle(float* out) {
  float v = float(threadIdx.x);
  if ((threadIdx.x & 31) < 16) {
    v = __shfl_xor_sync(0xffffffffu, v, 1);  // lanes 16..31 never arrive
  }
  out[threadIdx.x] = v;
}

constexpr int kLineOutsideMask = __LINE__ + 3;
__global__ void lane_outside_mask(float* out) {
  float v = float(threadIdx.x);
  v = __shfl_xor_sync(0x0000ffffu, v, 1);  // called by all 32 lanes
  out[threadIdx.x] = v;
}

constexpr int kLineReadsOutside = __LINE__ + 4;
__global__ void reads_outside_mask(float* out) {
  float v = float(threadIdx.x);
  if ((threadIdx.x & 31) < 16) {
    v = __shfl_xor_sync(0x0000ffffu, v, 16);  // lane l reads lane l ^ 16: not in the mask
  }
  out[threadIdx.x] = v;
}

constexpr int kLineShuffleVsBarrier = __LINE__ + 4;
__global__ void shuffle_vs_barrier(float* out) {
  float v = float(threadIdx.x);
  if (threadIdx.x % 2 == 0) {
    v = __shfl_xor_sync(0xffffffffu, v, 2);
  } else {
    __syncthreads();
  }
  out[threadIdx.x] = v;
}

// A correct half-warp collective: both halves shuffle within their own mask.
__global__ void half_masks_ok(float* out) {
  float v = float(threadIdx.x);
  const unsigned mask = (threadIdx.x & 31) < 16 ? 0x0000ffffu : 0xffff0000u;
  v += __shfl_xor_sync(mask, v, 1);
  v += __shfl_down_sync(0xffffffffu, v, 4);
  v += float(__ballot_sync(0xffffffffu, threadIdx.x % 3 == 0) & 1u);
  out[threadIdx.x] = v;
}

// Per-lane shuffle operands: a rotate (srcLane differs per lane), a reverse, and a
// per-lane width (the upper half-warp uses segments of 8, the lower of 16).
__global__ void per_lane_shuffles(float* out) {
  const int lane = int(threadIdx.x) & 31;
  float v = float(threadIdx.x);
  const float rot = __shfl_sync(0xffffffffu, v, (lane + 1) & 31);
  const float rev = __shfl_sync(0xffffffffu, v, 31 - lane);
  const float up = __shfl_up_sync(0xffffffffu, v, 3, lane < 16 ? 16 : 8);
  const float bfly = __shfl_xor_sync(0xffffffffu, v, 16, 16);  // may reach the earlier segment
  out[threadIdx.x] = rot + 100.0f * rev + 10000.0f * up + 1000000.0f * bfly;
}

// RAW: thread 0 writes, the others read without the barrier in between.
__global__ void missing_barrier_raw(float* out) {
  __shared__ float s[1];
  if (threadIdx.x == 0) s[0] = 42.0f;
  // __syncthreads();  <- missing
  out[threadIdx.x] = s[0];
}

// WAR: the next round's write by thread 0 may land before the others read this round's.
__global__ void missing_barrier_war(float* out) {
  __shared__ float s[1];
  float acc = 0.0f;
  for (int round = 1; round <= 2; ++round) {
    if (threadIdx.x == 0) s[0] = float(round);
    __syncthreads();
    acc += s[0];
    // __syncthreads();  <- missing: thread 0 may overwrite s[0] while others still read it
  }
  out[threadIdx.x] = acc;  // 1 + 2 = 3 when correct
}

__global__ void read_uninitialized_shared(float* out) {
  __shared__ float s[64];
  out[threadIdx.x] = s[threadIdx.x];
}

__global__ void oob_shared_pointer(float* out) {
  __shared__ float s[32];
  float* p = s;
  p[threadIdx.x] = 1.0f;  // 64 threads: past the end
  out[threadIdx.x] = 0.0f;
}

__global__ void oob_shared_index(float* out, int n) {
  __shared__ float s[32];
  s[n] = 1.0f;  // n = 40
  out[threadIdx.x] = s[0] * 0.0f;
}

__global__ void misaligned_vector_load(const float* in, float* out) {
  const uint4 u = *reinterpret_cast<const uint4*>(in + 1);  // 4 bytes past a 256-byte start
  out[threadIdx.x] = __uint_as_float(u.x);
}

__global__ void oob_device(float* out, int n) { out[n + int(threadIdx.x)] = 1.0f; }

__global__ void grid_stride(int* out, int n) {
  for (int i = int(blockIdx.x * blockDim.x + threadIdx.x); i < n; i += int(gridDim.x * blockDim.x))
    out[i] += 1;
}

// ---- helpers ----------------------------------------------------------------------------

struct DeviceBuffer {
  explicit DeviceBuffer(size_t bytes) { NK_CUDA_CHECK(cudaMalloc(&p, bytes)); }
  ~DeviceBuffer() { (void)cudaFree(p); }
  template <typename T>
  T* as() const {
    return static_cast<T*>(p);
  }
  void* p = nullptr;
};

// Runs f; returns the normkit::Error message ("" when nothing threw).
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const normkit::Error& e) {
    return e.what();
  }
  return "";
}

std::string site(int line) { return std::string("broken_kernels.cu:") + std::to_string(line); }

class Schedule {
 public:
  explicit Schedule(const char* p) : prev_(nk_emu::set_schedule_for_testing(p)) {}
  ~Schedule() { nk_emu::set_schedule_for_testing(prev_); }

 private:
  const char* prev_;
};

const char* const kPolicies[] = {"lowest", "highest", "roundrobin", "random"};

#define EXPECT_RULE_ERROR(kernel, block, line, needle)                                        \
  do {                                                                                      \
    for (const char* pol : kPolicies) {                                                     \
      Schedule sched(pol);                                                                  \
      DeviceBuffer out(4096);                                                               \
      const std::string msg =                                                               \
          error_of([&] { launch(#kernel, kernel, 1, (block), 0, nullptr, out.as<float>()); }); \
      NK_CHECK(msg.find(site(line)) != std::string::npos && msg.find(needle) != std::string::npos) \
          << #kernel " under " << pol << ": expected an error at " << site(line)           \
          << " containing \"" << (needle) << "\", got: \"" << msg << "\"";                 \
    }                                                                                       \
  } while (0)

}  // namespace

// ---- the scheduler's rules --------------------------------------------------------------

NK_TEST(emu, correct_kernels_pass_under_every_policy) {
  for (const char* pol : kPolicies) {
    Schedule sched(pol);
    DeviceBuffer out(64 * sizeof(float));
    launch("ok_kernel", ok_kernel, 1, 64, 0, nullptr, out.as<float>());
    const float* o = out.as<float>();
    for (int i = 0; i < 64; ++i) {
      const float mine = float(63 - i), partner = float(63 - (i ^ 1));
      NK_CHECK(o[i] == mine + partner) << pol << " thread " << i << ": " << o[i];
    }
    launch("half_masks_ok", half_masks_ok, 1, 64, 0, nullptr, out.as<float>());
    std::vector<float> v(64), w(64);
    for (int i = 0; i < 64; ++i) v[size_t(i)] = float(i) + float(i ^ 1);
    for (int i = 0; i < 64; ++i) {
      const int lane = i & 31;
      w[size_t(i)] = v[size_t(i)] + (lane + 4 < 32 ? v[size_t(i + 4)] : v[size_t(i)]);
    }
    for (int i = 0; i < 64; ++i) {
      const int first = i & ~31;
      const float b = float((first % 3) == 0);  // bit 0 of the ballot: lane 0's predicate
      NK_CHECK(o[i] == w[size_t(i)] + b) << pol << " half_masks_ok thread " << i << ": " << o[i]
                                         << " vs " << w[size_t(i)] + b;
    }
  }
}

NK_TEST(emu, per_lane_shuffle_operands) {
  for (const char* pol : kPolicies) {
    Schedule sched(pol);
    DeviceBuffer out(64 * sizeof(float));
    launch("per_lane_shuffles", per_lane_shuffles, 1, 64, 0, nullptr, out.as<float>());
    for (int i = 0; i < 64; ++i) {
      const int lane = i & 31, w0 = i - lane;
      const float rot = float(w0 + ((lane + 1) & 31));
      const float rev = float(w0 + 31 - lane);
      const int width = lane < 16 ? 16 : 8, seg = lane & ~(width - 1);
      const float up = float(w0 + (lane - 3 >= seg ? lane - 3 : lane));
      // PTX shfl.bfly: j = lane ^ 16, valid while j <= the segment's last lane (seg + 15)
      const int seg16 = lane & ~15, j = lane ^ 16;
      const float bfly = float(w0 + (j <= seg16 + 15 ? j : lane));
      const float want = rot + 100.0f * rev + 10000.0f * up + 1000000.0f * bfly;
      NK_CHECK(out.as<float>()[i] == want) << pol << " thread " << i << ": " << out.as<float>()[i]
                                           << " vs " << want;
    }
  }
}

NK_TEST(emu, barrier_in_divergent_code) {
  EXPECT_RULE_ERROR(divergent_barrier, 64, kLineDivergent, "other threads of the block wait");
}

NK_TEST(emu, barrier_after_threads_exited) {
  EXPECT_RULE_ERROR(barrier_after_exit, 64, kLineBarrierAfterExit, "__syncthreads()");
}

NK_TEST(emu, half_warp_shuffle) {
  // Lanes 16..31 never arrive: they exit (or arrive later at nothing) while 0..15 wait.
  EXPECT_RULE_ERROR(half_warp_shuffle, 32, kLineHalfWarp, "(mask 0xffffffff)");
}

NK_TEST(emu, lane_outside_the_mask) {
  EXPECT_RULE_ERROR(lane_outside_mask, 32, kLineOutsideMask, "not in the mask");
}

NK_TEST(emu, shuffle_reads_a_lane_outside_the_mask) {
  EXPECT_RULE_ERROR(reads_outside_mask, 32, kLineReadsOutside, "not in the mask");
}

NK_TEST(emu, shuffle_while_lanes_wait_at_a_barrier) {
  EXPECT_RULE_ERROR(shuffle_vs_barrier, 64, kLineShuffleVsBarrier, "can never complete");
}

// ---- races: no single order catches every missing barrier; the two CI runs (lowest and
// highest) together catch both kinds, and random catches each with some seed ------------

namespace {
// Launches `kernel` with 64 threads under `policy` and says whether its output is wrong.
template <typename K>
bool race_shows(K kernel, const char* name, const char* policy, float expect) {
  Schedule sched(policy);
  DeviceBuffer out(64 * sizeof(float));
  launch(name, kernel, 1, 64, 0, nullptr, out.as<float>());
  for (int i = 0; i < 64; ++i)
    if (!(out.as<float>()[i] == expect)) return true;
  return false;
}
}  // namespace

NK_TEST(emu, missing_barrier_read_after_write) {
  NK_CHECK(race_shows(missing_barrier_raw, "raw", "highest", 42.0f))
      << "a reader before the writer must read the shared poison (highest first)";
  NK_CHECK(!race_shows(missing_barrier_raw, "raw", "lowest", 42.0f))
      << "lowest first runs the writer first (the order CI's other run covers)";
}

NK_TEST(emu, missing_barrier_write_after_read) {
  NK_CHECK(race_shows(missing_barrier_war, "war", "lowest", 3.0f))
      << "thread 0 runs ahead into the next round and overwrites (lowest first)";
  NK_CHECK(!race_shows(missing_barrier_war, "war", "highest", 3.0f))
      << "highest first lets every reader finish before thread 0 (the order CI's other run covers)";
}

NK_TEST(emu, random_schedule_finds_both_races) {
  bool raw = false, war = false;
  for (int k = 0; k < 8 && !(raw && war); ++k) {
    raw = raw || race_shows(missing_barrier_raw, "raw", "random", 42.0f);
    war = war || race_shows(missing_barrier_war, "war", "random", 3.0f);
  }
  NK_CHECK(raw && war) << "random: raw " << raw << ", war " << war << " within 8 launches";
}

// ---- poison -------------------------------------------------------------------------------

NK_TEST(emu, shared_memory_is_poisoned_for_every_block) {
  for (const char* pol : kPolicies) {
    Schedule sched(pol);
    DeviceBuffer out(64 * sizeof(float));
    launch("ok_kernel", ok_kernel, 1, 64, 0, nullptr, out.as<float>());  // leaves s written
    launch("read_uninitialized_shared", read_uninitialized_shared, 1, 64, 0, nullptr,
           out.as<float>());
    for (int i = 0; i < 64; ++i) NK_CHECK(std::isnan(out.as<float>()[i])) << pol << " " << i;
  }
}

NK_TEST(emu, device_memory_is_poisoned_and_aligned) {
  DeviceBuffer b(1000);
  NK_CHECK(reinterpret_cast<uintptr_t>(b.p) % 256 == 0) << b.p;
  const auto* f32 = static_cast<const float*>(b.p);
  const auto* f64 = static_cast<const double*>(b.p);
  const auto* u16 = static_cast<const uint16_t*>(b.p);
  NK_CHECK(std::isnan(f32[0]) && std::isnan(f32[249]));
  NK_CHECK(std::isnan(f64[0]) && std::isnan(f64[124]));
  // float16 NaN: exponent all ones, mantissa non-zero; bfloat16 likewise.
  NK_CHECK((u16[0] & 0x7c00u) == 0x7c00u && (u16[0] & 0x03ffu) != 0);
  NK_CHECK((u16[499] & 0x7f80u) == 0x7f80u && (u16[499] & 0x007fu) != 0);
}

// ---- launches and the runtime -------------------------------------------------------------

NK_TEST(emu, launch_configurations_a_gpu_rejects) {
  DeviceBuffer out(4096);
  NK_CHECK(error_of([&] { launch("k", ok_kernel, 1, 1025, 0, nullptr, out.as<float>()); })
               .find("invalid configuration") != std::string::npos);
  NK_CHECK(error_of([&] { launch("k", ok_kernel, dim3(1, 65536), 64, 0, nullptr, out.as<float>()); })
               .find("invalid configuration") != std::string::npos);
  NK_CHECK(error_of([&] { launch("k", ok_kernel, 1, dim3(1, 1, 65), 0, nullptr, out.as<float>()); })
               .find("invalid configuration") != std::string::npos);
  NK_CHECK(error_of([&] { launch("k", ok_kernel, 0, 64, 0, nullptr, out.as<float>()); })
               .find("invalid configuration") != std::string::npos);
  NK_CHECK(error_of([&] { launch("k", ok_kernel, 1, 64, 64 * 1024, nullptr, out.as<float>()); })
               .find("dynamic shared memory") != std::string::npos);
  // The error is not sticky: the next good launch works.
  launch("ok_kernel", ok_kernel, 1, 64, 0, nullptr, out.as<float>());
  NK_CHECK(out.as<float>()[0] == 63.0f + 62.0f);
}

NK_TEST(emu, grid_stride_over_every_block) {
  const int n = 10007;
  DeviceBuffer out(n * sizeof(int));
  NK_CUDA_CHECK(cudaMemset(out.p, 0, n * sizeof(int)));
  for (const char* pol : kPolicies) {
    Schedule sched(pol);
    launch("grid_stride", grid_stride, 3, 96, 0, nullptr, out.as<int>(), n);
  }
  int bad = 0;
  for (int i = 0; i < n; ++i) bad += out.as<int>()[i] != 4;
  NK_CHECK(bad == 0) << bad << " elements not visited once per launch";
}

NK_TEST(emu, occupancy_and_devices) {
  int sms = 0, per_sm = 0, count = 0;
  NK_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
  NK_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, ok_kernel, 1024, 0));
  NK_CUDA_CHECK(cudaGetDeviceCount(&count));
  const char* e = std::getenv("NK_EMU_SMS");
  NK_CHECK(sms == (e ? std::atoi(e) : 3)) << sms;
  NK_CHECK(per_sm == 2 || (std::getenv("NK_EMU_BLOCKS_PER_SM") && per_sm >= 1)) << per_sm;
  NK_CHECK(count >= 1);
  NK_CHECK(cudaSetDevice(count) == cudaErrorInvalidDevice);
  (void)cudaGetLastError();
  void* p = nullptr;
  NK_CHECK(cudaFree(reinterpret_cast<void*>(0x1234)) == cudaErrorInvalidDevicePointer);
  (void)cudaGetLastError();
  NK_CUDA_CHECK(cudaMalloc(&p, 0));
  NK_CHECK(p == nullptr);
}

// ---- cases only a sanitizer sees (run one per process) ------------------------------------

namespace {
int crash(const std::string& name) {
  DeviceBuffer out(64 * sizeof(float));
  if (name == "oob_shared_pointer") {
    launch("oob_shared_pointer", oob_shared_pointer, 1, 64, 0, nullptr, out.as<float>());
  } else if (name == "oob_shared_index") {
    launch("oob_shared_index", oob_shared_index, 1, 32, 0, nullptr, out.as<float>(), 40);
  } else if (name == "misaligned_vector_load") {
    DeviceBuffer in(256);
    launch("misaligned_vector_load", misaligned_vector_load, 1, 32, 0, nullptr,
           static_cast<const float*>(in.p), out.as<float>());
  } else if (name == "oob_device") {
    launch("oob_device", oob_device, 1, 32, 0, nullptr, out.as<float>(), 60);
  } else {
    std::fprintf(stderr, "unknown crash case %s\n", name.c_str());
    return 2;
  }
  std::printf("NOT DETECTED: %s ran to the end\n", name.c_str());
  return 1;
}
}  // namespace

int main(int argc, char** argv) {
  if (argc == 3 && std::strcmp(argv[1], "--crash") == 0) return crash(argv[2]);
  return nk_test::run_main(argc, argv);
}
