// Internal: a validated DyT call, as the CPU and CUDA backends receive it (cpp/src/dyt.cpp
// resolves the views; backends trust it).
//
// Both layouts are rows of `width` contiguous elements found by a RowIndex:
//   per_row == false (channels last): element j of every row belongs to channel j (width = C);
//   per_row == true  (channels first): row r is one (n, c) plane, channel c = r % C, and the
//                    row holds the plane's `width` = prod(spatial dims) elements.
#pragma once

#include <cstddef>
#include <cstdint>

#include "common/row_index.hpp"
#include "normkit/dtype.hpp"

namespace normkit::detail {

struct DytLayout {
  int device_index = 0;
  DType x_dtype = DType::Float32;
  bool per_row = false;
  int64_t rows = 0;   // >= 1 when a backend is called
  int64_t width = 0;  // >= 1 when a backend is called
  int64_t C = 0;      // channels
};

struct DytProblem : DytLayout {
  const void* x = nullptr;
  RowIndex x_idx;
  void* y = nullptr;
  RowIndex y_idx;
  const void* alpha = nullptr;  // one element
  DType alpha_dtype = DType::Float32;
  const void* weight = nullptr;  // [C] or null
  DType weight_dtype = DType::Float32;
  const void* bias = nullptr;  // [C] or null
  DType bias_dtype = DType::Float32;
};

struct DytBackwardProblem : DytLayout {
  const void* dy = nullptr;
  RowIndex dy_idx;
  const void* x = nullptr;
  RowIndex x_idx;
  void* dx = nullptr;
  RowIndex dx_idx;
  const void* alpha = nullptr;
  DType alpha_dtype = DType::Float32;
  const void* weight = nullptr;
  DType weight_dtype = DType::Float32;
  void* dalpha = nullptr;  // one element of alpha_dtype, or null
  void* dweight = nullptr;  // [C] or null
  DType dweight_dtype = DType::Float32;
  void* dbias = nullptr;  // [C] or null
  DType dbias_dtype = DType::Float32;
  void* workspace = nullptr;  // may be null: the backend allocates and frees its own
  size_t workspace_bytes = 0;
};

// Which column sums a backward needs, in this order in every partial buffer:
// kA = Σ dy·x·(1 − t²) per channel (dα = Σ_c γ_c·A_c), kG = Σ dy·t (dγ), kB = Σ dy (dβ).
struct DytSums {
  bool a = false, g = false, b = false;
  int count() const { return int(a) + int(g) + int(b); }
};
inline DytSums dyt_sums(const DytBackwardProblem& p) {
  return {p.dalpha != nullptr, p.dweight != nullptr, p.dbias != nullptr};
}

}  // namespace normkit::detail
