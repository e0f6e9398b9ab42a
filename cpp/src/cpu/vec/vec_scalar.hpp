// Vec<C> for the scalar ISA: one lane, detail::Lane<C> (common/lane.hpp), the same type the
// CUDA kernels use. This is the executable specification the SIMD layers must agree with
// (to rounding), and the path NORMKIT_CPU_ISA=scalar selects.
#pragma once

#include <cstring>

#include "common/lane.hpp"

namespace normkit::cpu::NK_CPU_ISA {

template <typename C>
using Vec = detail::Lane<C>;

// Streaming stores need this alignment (bytes) for T; 0 = no streaming stores.
template <typename T>
constexpr int stream_alignment() {
  return 0;
}
inline void stream_fence() {}
// Without streaming stores (stream_alignment 0) an ordinary 16-byte copy.
inline void stream16(void* p, const void* src) { std::memcpy(p, src, 16); }

}  // namespace normkit::cpu::NK_CPU_ISA
