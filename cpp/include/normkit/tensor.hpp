// normkit/tensor.hpp — the non-owning array view every entry point takes.
#pragma once

#include <cstdint>

#include "normkit/dtype.hpp"

namespace normkit {

enum class DeviceType : int8_t { CPU = 0, CUDA = 1 };

constexpr int kMaxDims = 16;

// A view of someone else's memory: pointer, dtype, device, shape and strides.
//   - strides are in elements (not bytes), may be zero or negative;
//   - the last dim is the fastest-varying one in a C-contiguous array;
//   - `readonly` views are rejected where the core would write.
// The core never frees or reallocates `data`.
struct TensorView {
  void* data = nullptr;
  DType dtype = DType::Float32;
  DeviceType device = DeviceType::CPU;
  int device_index = 0;
  int ndim = 0;
  int64_t shape[kMaxDims] = {};
  int64_t strides[kMaxDims] = {};
  bool readonly = false;

  int64_t numel() const {
    int64_t n = 1;
    for (int i = 0; i < ndim; ++i) n *= shape[i];
    return n;
  }

  // A C-contiguous view of `data` with the given shape.
  static TensorView contiguous(void* data, DType dtype, const int64_t* shape, int ndim,
                               DeviceType device = DeviceType::CPU, int device_index = 0) {
    TensorView v;
    v.data = data;
    v.dtype = dtype;
    v.device = device;
    v.device_index = device_index;
    v.ndim = ndim;
    int64_t s = 1;
    for (int i = ndim - 1; i >= 0; --i) {
      v.shape[i] = shape[i];
      v.strides[i] = s;
      s *= shape[i];
    }
    return v;
  }
};

// A CUDA stream handle (cudaStream_t) as an opaque pointer, so that core headers do not
// include the CUDA runtime. nullptr is the legacy default stream. Ignored for CPU calls.
using Stream = void*;

}  // namespace normkit
