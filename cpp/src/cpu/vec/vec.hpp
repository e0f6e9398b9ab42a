// The SIMD layer: one Vec<C> interface (C = float or double, the compute type), one header
// per ISA. A kernel file includes this and is compiled once per ISA with NK_CPU_ISA set to
// the ISA's name (its namespace) and NK_CPU_ISA_<name> defined; see CMakeLists.txt.
//
// Vec<C>:  value_type (= C), size (lanes), Mask (a comparison's result), zero(), set1(c),
//          load(const T*) for T = C or, for C = float, the 16-bit storage types (widened),
//          store(T*) (rounded to nearest even), stream(T*) (non-temporal; p aligned to
//          stream_alignment<T>()), + - * / and unary -, fmadd(a, b, c) = a·b + c,
//          sum() (horizontal, in a fixed order), min max abs, lt le gt ge eq signbit, select,
//          round, pow2i. Every ISA gives these the same meaning, special values included
//          (NaN rule of min/max, signed zeros): common/lane.hpp states it once, and the
//          scalar ISA's Vec is that Lane. The math on top of them: common/vec_math.hpp.
//          Optional: load_n / store_n (masked partial vectors), store2 / stream2 (two
//          vectors as 2L consecutive 16-bit values, Note [Paired stores] in loops.hpp).
// Free functions where stream_alignment<T>() > 0: stream_fence(), stream16(p, src).
#pragma once

#if !defined(NK_CPU_ISA)
#error "NK_CPU_ISA must name the ISA this file is compiled for"
#endif

#if defined(NK_CPU_ISA_avx512) || defined(NK_CPU_ISA_avx512bf16)
#include "cpu/vec/vec_avx512.hpp"
#elif defined(NK_CPU_ISA_avx2)
#include "cpu/vec/vec_avx2.hpp"
#elif defined(NK_CPU_ISA_neon)
#include "cpu/vec/vec_neon.hpp"
#elif defined(NK_CPU_ISA_scalar)
#include "cpu/vec/vec_scalar.hpp"
#else
#error "unknown NK_CPU_ISA"
#endif
