// normkit/runtime.hpp — threads, CPU ISA selection, CUDA availability, build facts.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "normkit/config.hpp"

namespace normkit {

// CPU threads used by the kernels (OpenMP). Defaults to the OpenMP default (usually the
// number of cores). Results never depend on it (SPEC §0, determinism). In a fork()ed child of
// a process that had run a multi-threaded normkit call, the kernels run on one thread and
// get_num_threads() is 1 whatever was set: GNU OpenMP's pool does not survive fork (the
// child's next parallel region would wait forever for the parent's threads).
NORMKIT_API void set_num_threads(int n);
NORMKIT_API int get_num_threads();
// The count used while set_num_threads has not been called (n >= 1; 0 restores the OpenMP
// default). normkit.torch sets it to torch.get_num_threads() before each CPU kernel, so
// torch.set_num_threads governs normkit's team too unless normkit's was set explicitly.
NORMKIT_API void set_default_num_threads(int n);

// The SIMD instruction set in use: "scalar", "avx2", "avx512", "avx512bf16" (AVX-512 plus AVX512_BF16's conversions) or "neon". Chosen once from
// CPUID; the environment variable NORMKIT_CPU_ISA (read at first use) or set_cpu_isa() can
// force a lower one. set_cpu_isa throws normkit::Error for a name that is not compiled in or
// that this CPU cannot run.
NORMKIT_API std::string cpu_isa();
NORMKIT_API void set_cpu_isa(const std::string& name);
// Compiled-in ISAs that this CPU can run, lowest first.
NORMKIT_API std::vector<std::string> available_cpu_isas();
// Compiled-in ISAs, whether or not this CPU can run them.
NORMKIT_API std::vector<std::string> compiled_cpu_isas();

// True when the CUDA backend is compiled in and a device is present.
NORMKIT_API bool cuda_available();
NORMKIT_API bool cuda_compiled();
// True in the test-only emulation build (CMake NORMKIT_CUDA_EMULATION): the CUDA backend runs
// on the CPU under cuda/emu's SIMT emulator. Never true in a release build.
NORMKIT_API bool cuda_emulated();
// Why CUDA is or is not usable here, in words: "available: ...", no driver, a driver older
// than this build's CUDA runtime (CUDA 13 needs driver >= 580), no device. Never throws.
NORMKIT_API std::string cuda_status();
// "OpenMP <yyyymm>" when the kernels are threaded with OpenMP, "" otherwise.
NORMKIT_API std::string openmp_info();
// Diagnostic: the team size an n-thread normkit parallel region gets here (1 in a fork()ed
// child, Note [Fork]).
NORMKIT_API int openmp_team_size(int n);
NORMKIT_API std::string cuda_architectures();  // e.g. "75;80;86;89;90", "" without CUDA
NORMKIT_API std::string compiler_info();

// Benchmark support (python -m normkit.bench): copies `bytes` bytes of CPU memory from src
// to dst with the kernels' threads and vector width — with streaming stores when
// `nontemporal` — the memory-copy roof that benchmark figures are fractions of.
NORMKIT_API void bench_copy(const void* src, void* dst, int64_t bytes, bool nontemporal);

}  // namespace normkit
