// Internal: the CPU ISA selection and the decisions every family's CPU dispatcher
// (cpu/<family>_dispatch.cpp) shares. Compiled without ISA flags.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "cpu/kernels.hpp"
#include "normkit/dtype.hpp"

namespace normkit::cpu {

// The kernels of the ISA in use (chosen once from CPUID; NORMKIT_CPU_ISA / set_isa lower it).
const IsaTable& current();
// A compiled ISA's kernels by name (nullptr when not compiled); tests run each in turn.
const IsaTable* find_isa_table(const std::string& name);
const char* current_isa_name();
void set_isa(const std::string& name);
std::vector<std::string> isa_names(bool runnable_only);
// Memory copy with the kernels' threads and (optionally) streaming stores: the benchmark's
// bandwidth roof.
void bench_copy(const void* src, void* dst, int64_t bytes, bool nontemporal);

// Outputs of at least this many bytes are written with streaming stores (Note [Streaming
// stores] in dispatch.cpp; NORMKIT_NT_BYTES overrides).
int64_t nontemporal_threshold();
// Threads for `elements` of work split into at most `max_tasks` tasks (Note [Threads for
// small work]).
int threads_for(int64_t elements, int64_t max_tasks);
// float, or double for float64 data.
DType compute_dtype(DType x);
// Storage for a converted parameter: uninitialized (a std::vector<char> would zero it first,
// ~0.2 us of a [1, 4096] call), 64-byte aligned, and taken from (and given back to) a small
// per-thread pool, so that a loop of calls with 16-bit parameters does not allocate.
class ParamBuf {
 public:
  ParamBuf() = default;
  ParamBuf(const ParamBuf&) = delete;
  ParamBuf& operator=(const ParamBuf&) = delete;
  ~ParamBuf();
  void* get(size_t bytes);

 private:
  void* p_ = nullptr;
  size_t cap_ = 0;
};
// A parameter array as `n` values of compute_dtype(x_dtype) with `offset` added: p itself
// when it already is one (offset 0), else converted into `buf` (16-bit parameters by the
// current ISA's vector conversion). Null stays null.
const void* as_compute(const void* p, DType dt, DType x_dtype, int64_t n, double offset,
                       ParamBuf& buf);
// n zeros of dtype dt at p (the Σ over no rows); nothing when p is null.
void zero_fill(void* p, DType dt, int64_t n);

// Note [Fixed-order parameter gradients]: rows cut into blocks by (rows, width) alone.
struct Blocks {
  int64_t nblocks, rows_per_block;
};
Blocks block_layout(int64_t rows, int64_t width);

// A backward's scratch for its partial sums: the caller's workspace (checked to hold `need`
// bytes; `op` names the call in the error) or one allocation of our own, freed with this
// object. Made by the dispatcher, before any parallel region (a bad_alloc inside one would
// terminate the process).
class Scratch {
 public:
  Scratch(void* given, size_t given_bytes, size_t need, const char* op);
  void* get() const { return ptr_; }

 private:
  std::unique_ptr<char[]> own_;
  void* ptr_ = nullptr;
};

}  // namespace normkit::cpu
