// Internal: the one list of per-ISA CPU kernels. Each kernel file (cpu/*_kernel.cpp) is
// compiled once per ISA into namespace normkit::cpu::<isa> (see vec/vec.hpp); from the list
// below come both the declarations in every ISA namespace and the dispatcher's table
// (cpu/dispatch.cpp). A new kernel is one NK_CPU_KERNEL line here plus its kernel file; its
// argument structs live in the family's own header (cpu/<family>_prep.hpp).
#pragma once

#include <cstdint>

#include "cpu/batch_layer_norm_prep.hpp"
#include "cpu/batch_norm_prep.hpp"
#include "cpu/dyt_prep.hpp"
#include "cpu/group_norm_prep.hpp"
#include "cpu/rnn_prep.hpp"
#include "cpu/spectral_norm_prep.hpp"
#include "cpu/row_norm_prep.hpp"
#include "cpu/vec_math_prep.hpp"

// X(name, (parameter list)) — every kernel returns void.
#define NK_CPU_KERNELS(X)                                                                  \
  X(row_norm_forward, (const detail::RowNormProblem& p, const ForwardPrep& prep))          \
  X(row_norm_backward, (const detail::RowNormBackwardProblem& p, const BackwardPrep& prep)) \
  X(dyt_forward, (const detail::DytProblem& p, const DytPrep& prep))                        \
  X(dyt_backward, (const detail::DytBackwardProblem& p, const DytPrep& prep))               \
  X(batch_norm, (const detail::BnProblem& p, const BnPrep& prep))                          \
  X(group_norm, (const detail::GnProblem& p, const GnPrep& prep))                          \
  X(batch_layer_norm, (const detail::BlnProblem& p, const BlnPrep& prep))                  \
  X(rnn_step_forward, (const RnnStepPrep& s))                                               \
  X(rnn_step_backward, (const RnnStepPrep& s))                                              \
  X(spectral_norm_pass, (const detail::SnProblem& p, const SnPass& s))                      \
  X(vec_math_eval, (const VecMathEval& e))                                                  \
  X(vec_prim_eval, (const VecPrimEval& e))                                                  \
  X(vec_conv_eval, (const VecConvEval& e))                                                  \
  X(copy, (const void* src, void* dst, int64_t bytes, int threads, bool nontemporal))

namespace normkit::cpu {

#define NK_DECLARE_KERNEL(name, params) void name params;
#define NK_DECLARE_CPU_ISA(isa) \
  namespace isa {               \
  NK_CPU_KERNELS(NK_DECLARE_KERNEL) \
  }

NK_DECLARE_CPU_ISA(scalar)
NK_DECLARE_CPU_ISA(avx2)
NK_DECLARE_CPU_ISA(avx512)
NK_DECLARE_CPU_ISA(avx512bf16)
NK_DECLARE_CPU_ISA(neon)

#undef NK_DECLARE_CPU_ISA
#undef NK_DECLARE_KERNEL

// One ISA's kernels, as the dispatcher holds them.
struct IsaTable {
  const char* name;
  bool (*runnable)();
#define NK_TABLE_FIELD(name, params) void(*name) params;
  NK_CPU_KERNELS(NK_TABLE_FIELD)
#undef NK_TABLE_FIELD
};

// isa::table(runnable): that ISA's row of the dispatcher's table.
#define NK_TABLE_ENTRY(name, params) &name,
#define NK_DEFINE_TABLE(isa)                                            \
  namespace isa {                                                       \
  constexpr IsaTable table(bool (*runnable)()) {                        \
    return {#isa, runnable, NK_CPU_KERNELS(NK_TABLE_ENTRY)};            \
  }                                                                     \
  }
NK_DEFINE_TABLE(scalar)
NK_DEFINE_TABLE(avx2)
NK_DEFINE_TABLE(avx512)
NK_DEFINE_TABLE(avx512bf16)
NK_DEFINE_TABLE(neon)
#undef NK_DEFINE_TABLE
#undef NK_TABLE_ENTRY

}  // namespace normkit::cpu
