#include "interop.hpp"

#include <pybind11/numpy.h>

#include <string>
#include <vector>

#include "normkit/error.hpp"

namespace py = pybind11;

namespace normkit::py_interop {
namespace {

// ---- DLPack ABI (declared from the DLPack specification, v1.x) -------------------------
enum DLDeviceTypeCode : int32_t { kDLCPU = 1, kDLCUDA = 2, kDLCUDAHost = 3, kDLCUDAManaged = 13 };
enum DLDataTypeCode : uint8_t { kDLFloat = 2, kDLBfloat = 4 };

struct DLDevice {
  int32_t device_type;
  int32_t device_id;
};
struct DLDataType {
  uint8_t code;
  uint8_t bits;
  uint16_t lanes;
};
struct DLTensor {
  void* data;
  DLDevice device;
  int32_t ndim;
  DLDataType dtype;
  int64_t* shape;
  int64_t* strides;
  uint64_t byte_offset;
};
struct DLManagedTensor {
  DLTensor dl_tensor;
  void* manager_ctx;
  void (*deleter)(DLManagedTensor*);
};
struct DLPackVersion {
  uint32_t major;
  uint32_t minor;
};
constexpr uint64_t kDLFlagReadOnly = 1;
constexpr uint64_t kDLFlagIsCopied = 2;
struct DLManagedTensorVersioned {
  DLPackVersion version;
  void* manager_ctx;
  void (*deleter)(DLManagedTensorVersioned*);
  uint64_t flags;
  DLTensor dl_tensor;
};
struct DLPackExchangeAPIHeader {
  DLPackVersion version;
  DLPackExchangeAPIHeader* prev_api;
};
struct DLPackExchangeAPI {
  DLPackExchangeAPIHeader header;
  int (*managed_tensor_allocator)(DLTensor* prototype, DLManagedTensorVersioned** out,
                                  void* error_ctx,
                                  void (*set_error)(void* error_ctx, const char* kind,
                                                    const char* message));
  void* managed_tensor_from_py_object_no_sync;
  int (*managed_tensor_to_py_object_no_sync)(DLManagedTensorVersioned* tensor, void** out_py_object);
  int (*dltensor_from_py_object_no_sync)(void* py_object, DLTensor* out);
  void* current_work_stream;
};

[[noreturn]] void type_error(const char* name, const std::string& what) {
  throw Error(ErrorKind::Type, std::string(name) + ": " + what);
}

void fill_from_dl(const DLTensor& t, const char* name, bool readonly, TensorView& v) {
  if (t.dtype.lanes != 1) type_error(name, "vector dtypes (lanes > 1) are not supported");
  if (t.dtype.code == kDLFloat && t.dtype.bits == 32)
    v.dtype = DType::Float32;
  else if (t.dtype.code == kDLFloat && t.dtype.bits == 64)
    v.dtype = DType::Float64;
  else if (t.dtype.code == kDLFloat && t.dtype.bits == 16)
    v.dtype = DType::Float16;
  else if (t.dtype.code == kDLBfloat && t.dtype.bits == 16)
    v.dtype = DType::BFloat16;
  else {
    static const char* const kinds[] = {"int", "uint", "float", "opaque", "bfloat", "complex", "bool"};
    const std::string kind = t.dtype.code < 7 ? kinds[t.dtype.code] : "code" + std::to_string(t.dtype.code);
    type_error(name, "expected dtype float32, float64, float16 or bfloat16, got " + kind +
                         std::to_string(t.dtype.bits));
  }
  switch (t.device.device_type) {
    case kDLCPU:
    case kDLCUDAHost: v.device = DeviceType::CPU; break;
    case kDLCUDA:
    case kDLCUDAManaged: v.device = DeviceType::CUDA; break;
    default:
      throw Error(ErrorKind::Value, std::string(name) + ": arrays on DLPack device type " +
                                        std::to_string(t.device.device_type) +
                                        " are not supported (CPU and CUDA are)");
  }
  v.device_index = t.device.device_id;
  if (t.ndim < 0 || t.ndim > kMaxDims)
    throw Error(ErrorKind::Value, std::string(name) + ": at most " + std::to_string(kMaxDims) +
                                      " dims supported, got " + std::to_string(t.ndim));
  v.ndim = t.ndim;
  int64_t s = 1;
  for (int i = t.ndim - 1; i >= 0; --i) {
    v.shape[i] = t.shape[i];
    v.strides[i] = t.strides ? t.strides[i] : s;
    s *= t.shape[i];
  }
  v.data = static_cast<char*>(t.data) + t.byte_offset;
  v.readonly = readonly;
}

// numpy's type number of ml_dtypes.bfloat16, or -1 when ml_dtypes is not installed.
int bf16_type_num() {
  static int num = [] {
    try {
      py::object bf16 = py::module_::import("ml_dtypes").attr("bfloat16");
      return py::dtype::from_args(bf16).num();
    } catch (py::error_already_set&) {
      return -1;
    }
  }();
  return num;
}

void from_numpy(py::handle obj, const char* name, TensorView& v) {
  auto* a = py::detail::array_proxy(obj.ptr());
  const auto* d = py::detail::array_descriptor_proxy(a->descr);
  const int num = d->type_num;
  int64_t itemsize = 0;
  // NPY_FLOAT = 11, NPY_DOUBLE = 12, NPY_HALF = 23 (NumPy's fixed type numbers).
  if (num == 11)
    v.dtype = DType::Float32, itemsize = 4;
  else if (num == 12)
    v.dtype = DType::Float64, itemsize = 8;
  else if (num == 23)
    v.dtype = DType::Float16, itemsize = 2;
  else if (num >= 256 && num == bf16_type_num())
    v.dtype = DType::BFloat16, itemsize = 2;
  else
    type_error(name, "expected dtype float32, float64, float16 or bfloat16, got " +
                         std::string(py::str(py::reinterpret_borrow<py::object>(a->descr))));
  if (d->byteorder == '>')
    type_error(name, "non-native byte order is not supported");
  if (a->nd > kMaxDims)
    throw Error(ErrorKind::Value, std::string(name) + ": at most " + std::to_string(kMaxDims) +
                                      " dims supported, got " + std::to_string(a->nd));
  v.ndim = a->nd;
  for (int i = 0; i < a->nd; ++i) {
    v.shape[i] = a->dimensions[i];
    const int64_t sb = a->strides[i];
    if (sb % itemsize != 0)
      throw Error(ErrorKind::Value, std::string(name) + ": byte strides that are not a multiple of the "
                                                        "item size are not supported (pass a copy)");
    v.strides[i] = sb / itemsize;
  }
  v.data = a->data;
  v.device = DeviceType::CPU;
  v.device_index = 0;
  v.readonly = (a->flags & py::detail::npy_api::NPY_ARRAY_WRITEABLE_) == 0;
}

const DLPackExchangeAPI* exchange_api(PyTypeObject* type) {
  // A small cache (the GIL is held here): a module call passes torch.Tensor and
  // torch.nn.Parameter in turn, so one entry would miss twice per call and repeat the
  // attribute lookup (~0.6 µs per call, measured). Each cached type is kept alive, so its
  // address cannot be reused by another type while it is in the cache.
  struct Entry {
    PyTypeObject* type = nullptr;
    const DLPackExchangeAPI* api = nullptr;
  };
  constexpr int kEntries = 4;
  static Entry cache[kEntries];
  static int next = 0;
  for (const Entry& e : cache)
    if (e.type == type) return e.api;
  const DLPackExchangeAPI* api = nullptr;
  PyObject* cap = PyObject_GetAttrString(reinterpret_cast<PyObject*>(type), "__dlpack_c_exchange_api__");
  if (cap == nullptr) {
    PyErr_Clear();
  } else {
    if (PyCapsule_IsValid(cap, "dlpack_exchange_api")) {
      api = static_cast<const DLPackExchangeAPI*>(PyCapsule_GetPointer(cap, "dlpack_exchange_api"));
      if (api != nullptr && (api->header.version.major != 1 || api->dltensor_from_py_object_no_sync == nullptr))
        api = nullptr;
    }
    Py_DECREF(cap);  // the API table lives as long as the process (DLPack spec)
  }
  Entry& e = cache[next];
  next = (next + 1) % kEntries;
  Py_XDECREF(reinterpret_cast<PyObject*>(e.type));
  Py_INCREF(reinterpret_cast<PyObject*>(type));
  e.type = type;
  e.api = api;
  return api;
}

}  // namespace

ArrayRef::~ArrayRef() {
  if (managed == nullptr) return;
  if (managed_versioned) {
    auto* m = static_cast<DLManagedTensorVersioned*>(managed);
    if (m->deleter) m->deleter(m);
  } else {
    auto* m = static_cast<DLManagedTensor*>(managed);
    if (m->deleter) m->deleter(m);
  }
}

void to_view(py::handle obj, const char* name, uintptr_t stream, ArrayRef& out, bool output) {
  if (obj.is_none()) return;
  out.present = true;
  TensorView& v = out.view;

  // 1. NumPy
  if (py::isinstance<py::array>(obj)) {
    from_numpy(obj, name, v);
    return;
  }

  // 2. DLPack C exchange API
  if (const DLPackExchangeAPI* api = exchange_api(Py_TYPE(obj.ptr()))) {
    DLTensor t{};
    if (api->dltensor_from_py_object_no_sync(obj.ptr(), &t) != 0) throw py::error_already_set();
    fill_from_dl(t, name, false, v);
    return;
  }

  // 3. The __dlpack__ capsule protocol
  if (!py::hasattr(obj, "__dlpack__"))
    type_error(name, std::string("expected an array (NumPy, torch, or any DLPack array), got ") +
                         std::string(py::str(py::type::handle_of(obj).attr("__name__"))));
  py::object capsule;
  {
    py::tuple dev = obj.attr("__dlpack_device__")();
    const int dev_type = dev[0].cast<int>();
    py::object stream_arg = py::none();
    if (dev_type == kDLCUDA || dev_type == kDLCUDAManaged)
      stream_arg = py::int_(stream == 0 ? uintptr_t(1) : stream);  // 1: the legacy default stream
    try {
      capsule = obj.attr("__dlpack__")(py::arg("stream") = stream_arg,
                                       py::arg("max_version") = py::make_tuple(1, 0));
    } catch (py::error_already_set& e) {
      if (!e.matches(PyExc_TypeError)) throw;
      capsule = obj.attr("__dlpack__")(py::arg("stream") = stream_arg);  // pre-1.0 producers
    }
  }
  PyObject* cap = capsule.ptr();
  if (PyCapsule_IsValid(cap, "dltensor_versioned")) {
    auto* m = static_cast<DLManagedTensorVersioned*>(PyCapsule_GetPointer(cap, "dltensor_versioned"));
    PyCapsule_SetName(cap, "used_dltensor_versioned");
    out.managed = m;
    out.managed_versioned = true;
    if (output && (m->flags & kDLFlagIsCopied) != 0)
      throw Error(ErrorKind::Value, std::string(name) +
                                        ": its DLPack export is a copy of the array "
                                        "(DLPACK_FLAG_BITMASK_IS_COPIED): results written there "
                                        "would be lost; pass an array that can be written in place");
    fill_from_dl(m->dl_tensor, name, (m->flags & kDLFlagReadOnly) != 0, v);
  } else if (PyCapsule_IsValid(cap, "dltensor")) {
    auto* m = static_cast<DLManagedTensor*>(PyCapsule_GetPointer(cap, "dltensor"));
    PyCapsule_SetName(cap, "used_dltensor");
    out.managed = m;
    out.managed_versioned = false;
    fill_from_dl(m->dl_tensor, name, false, v);
  } else {
    type_error(name, "__dlpack__ did not return a DLPack capsule");
  }
}

namespace {

void record_error(void* ctx, const char* kind, const char* message) {
  *static_cast<std::string*>(ctx) = std::string(kind ? kind : "Error") + ": " + (message ? message : "");
}

// Note [Outputs allocated by the producer]: a C-contiguous array of `like`'s library and
// device, with `shape` and `dtype`, made by the producer's DLPack exchange API allocator and
// wrapped as its Python object. For a statistic (shape and dtype not x's) this takes ~1.4 µs
// on the test machine against ~2.5 µs for torch.empty(shape, dtype=, device=) from Python
// (argument parsing); a [1, 4096] layer norm's kernel takes ~1.5 µs. (For an output like x,
// torch.empty_like(x) without keyword arguments is as fast: the eager path uses that.)
py::object empty_via_producer(py::handle like, int ndim, const int64_t* shape, DLDataType dtype) {
  const DLPackExchangeAPI* api = exchange_api(Py_TYPE(like.ptr()));
  if (api == nullptr || api->managed_tensor_allocator == nullptr ||
      api->managed_tensor_to_py_object_no_sync == nullptr)
    type_error("x", "its library has no DLPack exchange API allocator (allocate the output "
                    "with the array library instead)");
  DLTensor t{};
  if (api->dltensor_from_py_object_no_sync(like.ptr(), &t) != 0) throw py::error_already_set();
  std::vector<int64_t> dims(shape, shape + ndim);
  DLTensor proto{};
  proto.device = t.device;
  proto.ndim = ndim;
  proto.dtype = dtype;
  proto.shape = dims.data();
  std::string err;
  DLManagedTensorVersioned* m = nullptr;
  if (api->managed_tensor_allocator(&proto, &m, &err, record_error) != 0 || m == nullptr)
    throw Error(ErrorKind::Runtime, "output allocation: " + (err.empty() ? std::string("failed") : err));
  void* obj = nullptr;
  if (api->managed_tensor_to_py_object_no_sync(m, &obj) != 0 || obj == nullptr) {
    if (PyErr_Occurred()) throw py::error_already_set();
    throw Error(ErrorKind::Runtime, "output allocation: the producer could not wrap the array");
  }
  return py::reinterpret_steal<py::object>(static_cast<PyObject*>(obj));
}

DLTensor borrow_dl(py::handle x) {
  const DLPackExchangeAPI* api = exchange_api(Py_TYPE(x.ptr()));
  if (api == nullptr) type_error("x", "expected an array whose library exports the DLPack exchange API (torch)");
  DLTensor t{};
  if (api->dltensor_from_py_object_no_sync(x.ptr(), &t) != 0) throw py::error_already_set();
  return t;
}

}  // namespace

py::object empty_stat(py::handle x, int nd) {
  const DLTensor t = borrow_dl(x);
  if (nd < 0 || nd > t.ndim)
    throw Error(ErrorKind::Value, "normalized_ndim: expected 0.." + std::to_string(t.ndim) + ", got " + std::to_string(nd));
  const bool f64 = t.dtype.code == kDLFloat && t.dtype.bits == 64;
  return empty_via_producer(x, t.ndim - nd, t.shape, DLDataType{kDLFloat, uint8_t(f64 ? 64 : 32), 1});
}

// ---------------------------------------------------------------------------------------
// Fast entry points (Note [Fast entry points] in interop.hpp)
// ---------------------------------------------------------------------------------------

FastArgs::FastArgs(const char* fn, const char* const* names, int count, int required,
                   PyObject* const* args, Py_ssize_t n)
    : fn_(fn), names_(names), count_(count), args_(args), n_(n) {
  if (n < required || n > count_) {
    std::string sig;
    for (int i = 0; i < count_; ++i) sig += std::string(i ? ", " : "") + names_[i];
    throw Error(ErrorKind::Type, std::string(fn) + "(" + sig + "): expected " +
                                     std::to_string(required) +
                                     (required == count_ ? "" : " to " + std::to_string(count_)) +
                                     " positional arguments, got " + std::to_string(n));
  }
}

void FastArgs::fail(int i, const char* expected) const {
  PyObject* o = i < n_ ? args_[i] : Py_None;
  throw Error(ErrorKind::Type, std::string(fn_) + ": " + names_[i] + ": expected " + expected +
                                   ", got " + Py_TYPE(o)->tp_name);
}

// Python floats, ints and anything with __float__ (NumPy scalars), as pybind11's caster.
double FastArgs::f64(int i) const {
  PyObject* o = i < n_ ? args_[i] : Py_None;
  if (PyFloat_CheckExact(o)) return PyFloat_AS_DOUBLE(o);
  if (o == Py_None || PyUnicode_Check(o) || PyBytes_Check(o)) fail(i, "a float");
  const double v = PyFloat_AsDouble(o);
  if (v == -1.0 && PyErr_Occurred()) {
    PyErr_Clear();
    fail(i, "a float");
  }
  return v;
}

// Python ints and anything with __index__ (NumPy integers); not bool.
int64_t FastArgs::i64(int i) const {
  PyObject* o = i < n_ ? args_[i] : Py_None;
  if (PyBool_Check(o)) fail(i, "an int");
  py::object index;
  if (!PyLong_Check(o)) {
    index = py::reinterpret_steal<py::object>(PyNumber_Index(o));
    if (!index) {
      PyErr_Clear();
      fail(i, "an int");
    }
    o = index.ptr();
  }
  int overflow = 0;
  const long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
  if (overflow != 0) fail(i, "an int in the range of int64");
  return int64_t(v);
}

int FastArgs::i32(int i) const {
  const int64_t v = i64(i);
  if (v < INT32_MIN || v > INT32_MAX) fail(i, "an int in the range of int32");
  return int(v);
}

// True / False, NumPy's bool scalar and integers (0 is false), as pybind11's caster took
// them; `fallback` when the argument is absent.
bool FastArgs::flag(int i, bool fallback) const {
  if (i >= n_) return fallback;
  PyObject* o = args_[i];
  if (o == Py_True) return true;
  if (o == Py_False) return false;
  const std::string type = Py_TYPE(o)->tp_name;
  if (PyLong_Check(o) || type == "numpy.bool" || type == "numpy.bool_" ||
      PyIndex_Check(o)) {
    const int v = PyObject_IsTrue(o);
    if (v < 0) throw py::error_already_set();
    return v != 0;
  }
  fail(i, "a bool");
}

uintptr_t FastArgs::stream(int i) const {
  if (i >= n_) return 0;
  PyObject* o = args_[i];
  if (PyBool_Check(o)) fail(i, "an int (a CUDA stream handle, 0 on the CPU)");
  py::object index;
  if (!PyLong_Check(o)) {  // NumPy integers and anything with __index__
    index = py::reinterpret_steal<py::object>(PyNumber_Index(o));
    if (!index) {
      PyErr_Clear();
      fail(i, "an int (a CUDA stream handle, 0 on the CPU)");
    }
    o = index.ptr();
  }
  const unsigned long long v = PyLong_AsUnsignedLongLong(o);
  if (v == static_cast<unsigned long long>(-1) && PyErr_Occurred()) {
    PyErr_Clear();
    fail(i, "an int >= 0 (a CUDA stream handle)");
  }
  return uintptr_t(v);
}

void FastArgs::view(int i, uintptr_t stream, ArrayRef& out, bool output, const char* name) const {
  to_view(obj(i), name ? name : names_[i], stream, out, output);
}

int FastArgs::member(int i, const py::handle* members, int count, py::handle type,
                     const char* type_name) const {
  PyObject* o = i < n_ ? args_[i] : Py_None;
  for (int k = 0; k < count; ++k)
    if (members[k].ptr() == o) return k;
  // Another instance of the enum (NormKind(1), a copy, an unpickled one): by value.
  if (PyObject_IsInstance(o, type.ptr()) == 1) {
    const long value = py::int_(py::reinterpret_borrow<py::object>(o)).cast<long>();
    for (int k = 0; k < count; ++k)
      if (py::int_(py::reinterpret_borrow<py::object>(members[k])).cast<long>() == value) return k;
  }
  PyErr_Clear();
  fail(i, type_name);
}

void set_python_error(std::exception_ptr p) {
  try {
    std::rethrow_exception(p);
  } catch (const Error& e) {
    switch (e.kind()) {
      case ErrorKind::Type: PyErr_SetString(PyExc_TypeError, e.what()); return;
      case ErrorKind::Value: PyErr_SetString(PyExc_ValueError, e.what()); return;
      case ErrorKind::Runtime: PyErr_SetString(PyExc_RuntimeError, e.what()); return;
    }
    PyErr_SetString(PyExc_RuntimeError, e.what());
  } catch (py::error_already_set& e) {
    e.restore();
  } catch (const py::builtin_exception& e) {
    e.set_error();
  } catch (const std::bad_alloc&) {
    PyErr_NoMemory();
  } catch (const std::exception& e) {
    PyErr_SetString(PyExc_RuntimeError, e.what());
  } catch (...) {
    PyErr_SetString(PyExc_RuntimeError, "normkit: unknown C++ exception");
  }
}

void def_fast(py::module_& m, const char* name, FastFn fn, const char* signature) {
  // `signature` is "name(a, b, c=0)": as __text_signature__ (the "--" line) with the
  // positional-only marker, so inspect.signature() reads it. The method table entry and
  // the docstring live as long as the function object (the process).
  std::string sig = signature;
  const size_t close = sig.rfind(')');
  if (close != std::string::npos) sig.insert(close, ", /");
  auto* doc = new std::string(sig + "\n--\n\nA normkit kernel entry point (internal): positional "
                                    "arguments only (Note [Fast entry points]).");
  auto* def = new PyMethodDef{name, reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(fn)),
                              METH_FASTCALL, doc->c_str()};
  py::object f = py::reinterpret_steal<py::object>(PyCFunction_NewEx(def, nullptr, m.attr("__name__").ptr()));
  if (!f) throw py::error_already_set();
  m.add_object(name, f);
}

namespace {
std::vector<BindFn>& binders() {
  static std::vector<BindFn> v;
  return v;
}
}  // namespace

Binder::Binder(BindFn fn) { binders().push_back(fn); }

void bind_all(py::module_& m) {
  for (BindFn fn : binders()) fn(m);
}

}  // namespace normkit::py_interop
