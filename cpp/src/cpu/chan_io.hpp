// Internal: element access to the channel-wise families' small per-channel / per-group
// arrays (common/batch_norm_problem.hpp's Chan) from the CPU dispatchers, in double.
// Compiled without ISA flags.
#pragma once

#include <cstdint>

#include "common/batch_norm_problem.hpp"
#include "normkit/dtype.hpp"

namespace normkit::cpu {

inline double read(const detail::Chan& a, int64_t i) {
  switch (a.dtype) {
    case DType::Float32: return double(static_cast<const float*>(a.p)[i]);
    case DType::Float64: return static_cast<const double*>(a.p)[i];
    case DType::Float16: return double(half_to_float(static_cast<const half_t*>(a.p)[i]));
    case DType::BFloat16: return double(bf16_to_float(static_cast<const bfloat16_t*>(a.p)[i]));
  }
  return 0.0;
}

// Writes v rounded to a's dtype; nothing for an absent array.
inline void write(const detail::Chan& a, int64_t i, double v) {
  if (a.p == nullptr) return;
  switch (a.dtype) {
    case DType::Float32: static_cast<float*>(a.p)[i] = float(v); break;
    case DType::Float64: static_cast<double*>(a.p)[i] = v; break;
    case DType::Float16: static_cast<half_t*>(a.p)[i] = float_to_half(float(v)); break;
    case DType::BFloat16: static_cast<bfloat16_t*>(a.p)[i] = float_to_bf16(float(v)); break;
  }
}

// n values wanted in C: a float64 array for float C keeps what C cannot hold in `lo`
// (hi + lo, Note [Corrected two-pass]).
template <typename C>
void split(const detail::Chan& a, int64_t n, C* hi, double* lo) {
  for (int64_t i = 0; i < n; ++i) {
    const double v = read(a, i);
    hi[i] = C(v);
    if (lo) lo[i] = v - double(hi[i]);
  }
}

}  // namespace normkit::cpu
