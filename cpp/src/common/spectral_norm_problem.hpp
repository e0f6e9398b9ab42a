// Internal: a validated spectral-norm call as the backends receive it (cpp/src/spectral_norm.cpp
// resolves the views; backends trust them). W is a rows × cols matrix whose rows are
// contiguous (row r at w + r·w_ld); u [rows] and v [cols] are contiguous vectors of vec_dtype.
#pragma once

#include <cstdint>

#include "normkit/dtype.hpp"

namespace normkit::detail {

struct SnProblem {
  int device_index = 0;
  DType dtype = DType::Float32;      // W, out, dy, dw
  DType vec_dtype = DType::Float32;  // u, v
  DType sigma_dtype = DType::Float32;
  int64_t rows = 0, cols = 0;        // both >= 1 when a backend runs
  bool backward = false;
  // forward: n_iter power iterations (u = normalize(W v), v = normalize(Wᵀu), torch's order)
  // updating u, v in place; then σ (= ‖Wᵀu‖ after an iteration, uᵀWv without one) into sigma
  // and out = W/σ — each optional.
  int64_t n_iter = 0;
  double eps = 1e-12;
  const void* w = nullptr;
  int64_t w_ld = 0;
  void* u = nullptr;
  void* v = nullptr;
  void* out = nullptr;
  int64_t out_ld = 0;
  void* sigma = nullptr;  // [1] output (forward) / input (backward)
  // backward: dw = dy/σ − (⟨dy, W⟩/σ²)·u vᵀ
  const void* dy = nullptr;
  int64_t dy_ld = 0;
  void* dw = nullptr;
  int64_t dw_ld = 0;
};

}  // namespace normkit::detail
