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
#include <exception>

#include "normkit/error.hpp"
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

// Note [Fast entry points]: the kernel entry points (the functions the op declarations'
// kernels call on every op call) are METH_FASTCALL functions, positional arguments only,
// parsed by FastArgs: pybind11's argument loader costs ~0.5 us for the row norms' 15
// arguments on the test machine, this ~0.05 us, and a [1, 4096] layer norm's kernel ~1.5 us.
// Errors name the function and the argument; normkit::Error and Python errors are
// translated as the module's translator does (set_python_error). Conversions follow
// pybind11's: floats from anything with __float__, ints and streams from anything with
// __index__ (not bool), flags from bools and integers; no keyword arguments.
class FastArgs {
 public:
  // `names`: the parameters in order (a static array); the first `required` are required,
  // the rest default to None (stream: 0).
  template <int N>
  FastArgs(const char* fn, const char* const (&names)[N], int required, PyObject* const* args,
           Py_ssize_t n)
      : FastArgs(fn, names, N, required, args, n) {}
  FastArgs(const char* fn, const char* const* names, int count, int required,
           PyObject* const* args, Py_ssize_t n);
  pybind11::handle obj(int i) const { return i < n_ ? pybind11::handle(args_[i]) : pybind11::none(); }
  double f64(int i) const;      // a Python float or int
  int i32(int i) const;         // a Python int
  int64_t i64(int i) const;     // a Python int (or __index__)
  bool flag(int i, bool fallback = false) const;  // a bool (or an integer); fallback if absent
  uintptr_t stream(int i) const;  // an int >= 0; 0 when absent
  // The array argument i as a view (None: absent), named as the parameter unless `name`.
  void view(int i, uintptr_t stream, ArrayRef& out, bool output = false,
            const char* name = nullptr) const;
  // The enum argument i: the index of one of `members` (the enum's Python objects), by
  // identity, or by value for another instance of `type`.
  int member(int i, const pybind11::handle* members, int count, pybind11::handle type,
             const char* type_name) const;
  [[noreturn]] void fail(int i, const char* expected) const;

 private:
  const char* fn_;
  const char* const* names_;
  int count_;
  PyObject* const* args_;
  Py_ssize_t n_;
};

// Sets the Python error for the exception being handled (normkit::Error by kind, Python
// errors as they are, bad_alloc as MemoryError, anything else as RuntimeError).
void set_python_error(std::exception_ptr e);

// Runs body(args) for a fast entry point: None on success, the translated error otherwise.
template <typename Body>
PyObject* fast_call(Body&& body) noexcept {
  try {
    body();
  } catch (...) {
    set_python_error(std::current_exception());
    return nullptr;
  }
  Py_RETURN_NONE;
}

// The array arguments of one call, each converted (FastArgs::view) and stored in its field
// of the core's argument struct `Args`; the ArrayRefs live as long as this object.
template <typename Args>
struct Field {
  int index;                          // the argument's position
  const TensorView* Args::*member;    // where its view goes
  bool output = false;                // written by the call
  const char* name = nullptr;         // the name in errors (default: the parameter's)
};

template <typename Args, size_t N>
class Views {
 public:
  Views(const FastArgs& p, uintptr_t stream, Args& a, const Field<Args> (&fields)[N]) {
    for (size_t k = 0; k < N; ++k) {
      p.view(fields[k].index, stream, refs_[k], fields[k].output, fields[k].name);
      a.*(fields[k].member) = ptr(refs_[k]);
    }
  }

 private:
  ArrayRef refs_[N];
};

using FastFn = PyObject* (*)(PyObject*, PyObject* const*, Py_ssize_t);
// Adds fn to the module as `name` (a builtin function with METH_FASTCALL); `signature` is
// "name(params)", shown by help() and inspect.signature().
void def_fast(pybind11::module_& m, const char* name, FastFn fn, const char* signature);

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
