// Internal: a validated row-norm call, as the CPU and CUDA backends receive it.
//
// cpp/src/row_norm.cpp checks every argument once (shapes, dtypes, devices, writability,
// eps) and resolves the views into this plain struct: element counts, typed-by-tag raw
// pointers and one RowIndex per row-addressed array. Backends trust it completely.
#pragma once

#include <cstddef>
#include <cstdint>

#include "normkit/config.hpp"
#include "normkit/dtype.hpp"
#include "common/row_index.hpp"
#include "normkit/row_norm.hpp"

namespace normkit::detail {

struct RowNormProblem {
  NormKind kind = NormKind::Layer;
  int device_index = 0;            // CUDA device of every array (CPU: unused)
  DType x_dtype = DType::Float32;  // x, residual, y, residual_out
  int64_t rows = 0;                // >= 0
  int64_t H = 0;                   // >= 1 when rows > 0 reach a backend
  double eps = 0, weight_offset = 0, residual_scale = 1;
  double ada_k = 0, ada_scale = 1;  // AdaNorm only

  const void* x = nullptr;
  RowIndex x_idx;
  const void* residual = nullptr;  // null: plain norm
  RowIndex r_idx;
  void* y = nullptr;
  RowIndex y_idx;
  void* residual_out = nullptr;  // null: s is not stored
  RowIndex s_idx;

  // [H] parameters, each with its own dtype (x's, or float32 for 16-bit x); null if absent.
  const void* x_bias = nullptr;
  DType x_bias_dtype = DType::Float32;
  const void* weight = nullptr;
  DType weight_dtype = DType::Float32;
  const void* bias = nullptr;
  DType bias_dtype = DType::Float32;

  // [rows], contiguous, stat_dtype(x_dtype); null if not wanted. mean is null for RMS.
  // AdaNorm: H >= 2, no parameters, no fused add.
  void* mean = nullptr;
  void* rstd = nullptr;
};

struct RowNormBackwardProblem {
  NormKind kind = NormKind::Layer;
  int device_index = 0;
  DType x_dtype = DType::Float32;  // dy, ds, x, dx, dresidual
  int64_t rows = 0;
  int64_t H = 0;
  double weight_offset = 0, residual_scale = 1;
  double ada_k = 0, ada_scale = 1;  // AdaNorm only

  const void* dy = nullptr;
  RowIndex dy_idx;
  const void* ds = nullptr;  // optional
  RowIndex ds_idx;
  const void* x = nullptr;
  RowIndex x_idx;
  const void* mean = nullptr;  // [rows] stat dtype; null for RMS
  const void* rstd = nullptr;  // [rows] stat dtype
  const void* weight = nullptr;
  DType weight_dtype = DType::Float32;

  void* dx = nullptr;
  RowIndex dx_idx;
  void* dresidual = nullptr;  // optional
  RowIndex dr_idx;
  void* dweight = nullptr;  // [H], optional
  DType dweight_dtype = DType::Float32;
  void* dbias = nullptr;  // [H], optional
  DType dbias_dtype = DType::Float32;
  void* dx_bias = nullptr;  // [H], optional
  DType dx_bias_dtype = DType::Float32;

  void* workspace = nullptr;  // may be null: the backend allocates and frees its own
  size_t workspace_bytes = 0;
};

}  // namespace normkit::detail
