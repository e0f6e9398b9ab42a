// The one place where Python array objects become normkit::TensorView, zero copy.
//
// Fast paths, fastest first:
//   1. numpy.ndarray: read straight from the array struct (no DLPack capsule at all);
//   2. a type exporting the DLPack C exchange API (__dlpack_c_exchange_api__, torch >= 2.9):
//      one C call fills a borrowed DLTensor, no Python-level call, no allocation;
//   3. anything with __dlpack__ (CuPy, JAX, ...): the capsule protocol, deleter called when
//      the view is dropped.
#pragma once

#include <pybind11/pybind11.h>

#include <cstdint>

#include "normkit/tensor.hpp"

namespace normkit::py_interop {

// A TensorView plus whatever keeps its memory valid while the view is in use.
class ArrayRef {
 public:
  ArrayRef() = default;
  ArrayRef(const ArrayRef&) = delete;
  ArrayRef& operator=(const ArrayRef&) = delete;
  ~ArrayRef();

  TensorView view;
  bool present = false;
  // Owned DLPack tensor from a capsule (path 3); released in the destructor.
  void* managed = nullptr;
  bool managed_versioned = false;
};

// Fills `out` from a Python array object. `name` is the argument's Python name (used in
// error messages). `stream` is the consumer's CUDA stream for the capsule protocol.
// None leaves `out.present == false`.
// `output`: the array will be written; a DLPack export flagged as a copy
// (DLPACK_FLAG_BITMASK_IS_COPIED) is then refused — what is written to it would be lost.
void to_view(pybind11::handle obj, const char* name, uintptr_t stream, ArrayRef& out,
             bool output = false);

// A statistic made by x's own library (Note [Outputs allocated by the producer] in
// interop.cpp): one value per row of x's leading x.ndim - nd dims, float32 (float64 for
// float64 x), C-contiguous, on x's device. Needs the DLPack exchange API with an allocator
// (torch); TypeError otherwise.
pybind11::object empty_stat(pybind11::handle x, int nd);

// The view of an argument, or null when it was None (the core's "absent").
inline const TensorView* ptr(const ArrayRef& a) { return a.present ? &a.view : nullptr; }

// Each family's binding file registers its functions with NK_PY_BINDINGS(name) { m.def(...); }
// (a static registrar); the module calls them all once (bind_all), so adding a family adds a
// file, not a line in module.cpp.
using BindFn = void (*)(pybind11::module_&);
struct Binder {
  explicit Binder(BindFn fn);
};
void bind_all(pybind11::module_& m);

}  // namespace normkit::py_interop

#define NK_PY_BINDINGS(name)                                          \
  static void name(pybind11::module_& m);                             \
  static const ::normkit::py_interop::Binder name##_binder_{name};    \
  static void name(pybind11::module_& m)
