#include "validate.hpp"

#include "common/backends.hpp"

#include <cmath>
#include <sstream>

namespace normkit::detail {

void fail(ErrorKind kind, const std::string& msg) { throw Error(kind, msg); }

std::string shape_str(const int64_t* shape, int ndim) {
  std::ostringstream os;
  os << "(";
  for (int i = 0; i < ndim; ++i) {
    os << shape[i];
    if (ndim == 1 || i + 1 < ndim) os << ",";
    if (i + 1 < ndim) os << " ";
  }
  os << ")";
  return os.str();
}

std::string shape_str(const TensorView& t) { return shape_str(t.shape, t.ndim); }

void check_view(const TensorView& t, const char* op, const char* name) {
  if (t.ndim < 0 || t.ndim > kMaxDims)
    fail(ErrorKind::Value, std::string(op) + ": " + name + ": expected at most " +
                               std::to_string(kMaxDims) + " dims, got " + std::to_string(t.ndim));
  for (int i = 0; i < t.ndim; ++i)
    if (t.shape[i] < 0)
      fail(ErrorKind::Value, std::string(op) + ": " + name + ": negative size in shape " +
                                 shape_str(t));
  if (t.data == nullptr && t.numel() != 0)
    fail(ErrorKind::Value, std::string(op) + ": " + name + ": null data pointer");
}

void check_float_dtype(const TensorView& t, const char* op, const char* name) {
  switch (t.dtype) {
    case DType::Float32:
    case DType::Float64:
    case DType::Float16:
    case DType::BFloat16: return;
  }
  fail(ErrorKind::Type, std::string(op) + ": " + name +
                            ": expected dtype float32, float64, float16 or bfloat16");
}

void check_aligned(const TensorView& t, const char* op, const char* name) {
  const int64_t es = dtype_size(t.dtype);
  if (t.numel() != 0 && reinterpret_cast<uintptr_t>(t.data) % uintptr_t(es) != 0)
    fail(ErrorKind::Value, std::string(op) + ": " + name + ": data at address " +
                               std::to_string(reinterpret_cast<uintptr_t>(t.data)) +
                               " is not aligned to its " + std::to_string(es) +
                               "-byte elements (pass an aligned copy)");
}

void check_writable(const TensorView& t, const char* op, const char* name) {
  if (t.readonly)
    fail(ErrorKind::Value, std::string(op) + ": " + name +
                               ": is read-only; an output buffer must be writable");
}

void check_same_device(const TensorView& t, const TensorView& ref, const char* op,
                       const char* name, const char* ref_name) {
  if (t.device != ref.device || (t.device == DeviceType::CUDA && t.device_index != ref.device_index)) {
    auto dev = [](const TensorView& v) {
      return v.device == DeviceType::CPU ? std::string("cpu")
                                         : "cuda:" + std::to_string(v.device_index);
    };
    fail(ErrorKind::Value, std::string(op) + ": " + name + ": expected to be on " + dev(ref) +
                               " like " + ref_name + ", got " + dev(t));
  }
}

void check_finite(double v, const char* op, const char* name, bool nonneg) {
  if (!std::isfinite(v))
    fail(ErrorKind::Value, std::string(op) + ": " + name + ": expected a finite number, got " +
                               std::to_string(v));
  if (nonneg && v < 0)
    fail(ErrorKind::Value, std::string(op) + ": " + name + ": expected >= 0, got " +
                               std::to_string(v));
}

bool extent(const TensorView& t, uintptr_t& lo, uintptr_t& hi) {
  if (t.numel() == 0) return false;
  int64_t min_off = 0, max_off = 0;
  for (int i = 0; i < t.ndim; ++i) {
    const int64_t span = (t.shape[i] - 1) * t.strides[i];
    if (span < 0) min_off += span; else max_off += span;
  }
  const int64_t es = dtype_size(t.dtype);
  lo = reinterpret_cast<uintptr_t>(t.data) + uintptr_t(min_off * es);
  hi = reinterpret_cast<uintptr_t>(t.data) + uintptr_t(max_off * es + es - 1);
  return true;
}

void check_overlap(const char* op, const TensorView& out, const char* out_name,
                   const TensorView* in, const char* in_name) {
  if (in == nullptr) return;
  uintptr_t a0, a1, b0, b1;
  if (!extent(out, a0, a1) || !extent(*in, b0, b1)) return;
  if (a1 < b0 || b1 < a0) return;
  bool same = out.data == in->data && out.ndim == in->ndim && out.dtype == in->dtype;
  for (int i = 0; same && i < out.ndim; ++i)
    same = out.shape[i] == in->shape[i] && (out.shape[i] == 1 || out.strides[i] == in->strides[i]);
  if (!same)
    fail(ErrorKind::Value, std::string(op) + ": " + out_name + ": overlaps " + in_name +
                               " in memory without being the same array (only an exact alias is allowed)");
}

void check_disjoint_outputs(const char* op, const TensorView* const* outs,
                            const char* const* names, int n) {
  for (int i = 0; i < n; ++i)
    for (int k = i + 1; k < n; ++k) {
      if (outs[i] == nullptr || outs[k] == nullptr) continue;
      uintptr_t a0, a1, b0, b1;
      if (extent(*outs[i], a0, a1) && extent(*outs[k], b0, b1) && !(a1 < b0 || b1 < a0))
        fail(ErrorKind::Value, std::string(op) + ": " + names[k] + ": shares memory with the output " +
                                   names[i] + " (every output needs its own memory)");
    }
}

bool dims_compact(const TensorView& t, int first) {
  if (t.numel() == 0) return true;  // nothing to address (torch gives empty grads stride 0)
  int64_t expect = 1;
  for (int i = t.ndim - 1; i >= first; --i) {
    if (t.shape[i] == 1) continue;
    if (t.shape[i] == 0) return true;  // empty: nothing to address
    if (t.strides[i] != expect) return false;
    expect *= t.shape[i];
  }
  return true;
}

RowIndex make_row_index(const TensorView& t, int lead, const char* op, const char* name) {
  // Collect non-trivial leading dims, merging neighbours that are contiguous with each
  // other (stride[i] == stride[i+1]·size[i+1]).
  int64_t size[kMaxDims];
  int64_t stride[kMaxDims];
  int n = 0;
  for (int i = 0; i < lead; ++i) {
    if (t.shape[i] == 1) continue;
    if (n > 0 && stride[n - 1] == t.strides[i] * t.shape[i]) {
      size[n - 1] *= t.shape[i];
      stride[n - 1] = t.strides[i];
      continue;
    }
    size[n] = t.shape[i];
    stride[n] = t.strides[i];
    ++n;
  }
  RowIndex ix;
  if (n == 0) {
    ix.nd = 1;
    ix.size[0] = 1;
    ix.stride[0] = 0;
    return ix;
  }
  if (n > kMaxRowDims)
    fail(ErrorKind::Value, std::string(op) + ": " + name + ": its leading dims " +
                               shape_str(t.shape, lead) + " have " + std::to_string(n) +
                               " independent strides (at most " + std::to_string(kMaxRowDims) +
                               " supported); pass a contiguous copy");
  ix.nd = n;
  for (int i = 0; i < n; ++i) {
    ix.size[i] = size[i];
    ix.stride[i] = stride[i];
  }
  return ix;
}


void check_cuda_device(const TensorView& t, const char* op, const char* name) {
  if (t.device != DeviceType::CUDA) return;
#if defined(NORMKIT_WITH_CUDA)
  const int n = cuda::device_count();
  if (n == 0)
    fail(ErrorKind::Runtime, std::string(op) + ": " + name +
                                 ": is on a CUDA device, but no CUDA device is present");
  if (t.device_index < 0 || t.device_index >= n)
    fail(ErrorKind::Value, std::string(op) + ": " + name + ": is on cuda:" +
                               std::to_string(t.device_index) + ", but " +
                               (n == 1 ? std::string("only 1 CUDA device is present (cuda:0)")
                                       : std::to_string(n) + " CUDA devices are present (cuda:0.." +
                                             std::to_string(n - 1) + ")"));
#else
  fail(ErrorKind::Runtime, std::string(op) + ": " + name +
                               ": is on a CUDA device, but this build of normkit has no CUDA backend");
#endif
}

}  // namespace normkit::detail

namespace normkit::detail {

void check_like(const char* op, const TensorView& t, const char* name, const TensorView& x,
                Role role) {
  check_view(t, op, name);
  bool same = t.ndim == x.ndim;
  for (int i = 0; same && i < x.ndim; ++i) same = t.shape[i] == x.shape[i];
  if (!same)
    fail(ErrorKind::Value, std::string(op) + ": " + name + ": expected shape " + shape_str(x) +
                               " (the shape of x), got " + shape_str(t));
  if (t.dtype != x.dtype)
    fail(ErrorKind::Type, std::string(op) + ": " + name + ": expected dtype " +
                              dtype_name(x.dtype) + " (the dtype of x), got " +
                              dtype_name(t.dtype));
  check_aligned(t, op, name);
  check_same_device(t, x, op, name, "x");
  if (role == Role::Out) check_writable(t, op, name);
}

void check_compact_tail(const char* op, const TensorView& t, const char* name, int first,
                        const char* what, Role role) {
  if (!dims_compact(t, first))
    fail(ErrorKind::Value, std::string(op) + ": " + name + ": " + what +
                               " must be contiguous; got strides that are not" +
                               (role == Role::Out ? "" : " (pass a contiguous copy)"));
}

void check_param(const char* op, const TensorView& t, const char* name, const TensorView& x,
                 const int64_t* shape, int nd, const char* what, Role role) {
  check_view(t, op, name);
  bool same = t.ndim == nd;
  for (int i = 0; same && i < nd; ++i) same = t.shape[i] == shape[i];
  if (!same) {
    int64_t n = 1;
    for (int i = 0; i < nd; ++i) n *= shape[i];
    const bool flat = t.ndim == 1 && t.shape[0] == n;  // a flat [H] parameter for a multi-dim row
    if (!flat)
      fail(ErrorKind::Value, std::string(op) + ": " + name + ": expected shape " +
                                 shape_str(shape, nd) + " (" + what + "), got " + shape_str(t));
  }
  const bool half = x.dtype == DType::Float16 || x.dtype == DType::BFloat16;
  if (!(t.dtype == x.dtype || (half && t.dtype == DType::Float32)))
    fail(ErrorKind::Type, std::string(op) + ": " + name + ": expected dtype " +
                              dtype_name(x.dtype) + (half ? " or float32" : "") + " (x is " +
                              dtype_name(x.dtype) + "), got " + dtype_name(t.dtype));
  check_aligned(t, op, name);
  check_same_device(t, x, op, name, "x");
  if (!dims_compact(t, 0))
    fail(ErrorKind::Value, std::string(op) + ": " + name + ": expected a contiguous array");
  if (role == Role::Out) check_writable(t, op, name);
}

void check_stat(const char* op, const TensorView& t, const char* name, const TensorView& x,
                int64_t count, const char* what, Role role, bool or_float64) {
  check_view(t, op, name);
  if (t.numel() != count)
    fail(ErrorKind::Value, std::string(op) + ": " + name + ": expected " +
                               std::to_string(count) + " elements (" + what + " " +
                               shape_str(x) + "), got shape " + shape_str(t));
  const DType want = stat_dtype(x.dtype);
  if (t.dtype != want && !(or_float64 && t.dtype == DType::Float64))
    fail(ErrorKind::Type, std::string(op) + ": " + name + ": expected dtype " +
                              dtype_name(want) +
                              (or_float64 && want != DType::Float64 ? " or float64" : "") +
                              " for " + dtype_name(x.dtype) + " x, got " + dtype_name(t.dtype));
  check_aligned(t, op, name);
  check_same_device(t, x, op, name, "x");
  if (!dims_compact(t, 0))
    fail(ErrorKind::Value, std::string(op) + ": " + name + ": expected a contiguous array");
  if (role == Role::Out) check_writable(t, op, name);
}

Aliasing& Aliasing::in(const TensorView* t, const char* name) {
  if (t != nullptr && nin_ < kMax) ins_[nin_] = t, in_names_[nin_++] = name;
  return *this;
}

Aliasing& Aliasing::out(const TensorView* t, const char* name) {
  if (t != nullptr && nout_ < kMax) outs_[nout_] = t, out_names_[nout_++] = name;
  return *this;
}

void Aliasing::check() const {
  for (int o = 0; o < nout_; ++o)
    for (int i = 0; i < nin_; ++i) check_overlap(op_, *outs_[o], out_names_[o], ins_[i], in_names_[i]);
  check_disjoint_outputs(op_, outs_, out_names_, nout_);
}

}  // namespace normkit::detail
