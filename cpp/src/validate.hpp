// Internal: argument checks shared by every entry point. Each check names the argument in
// its message, the way the Python user spells it.
#pragma once

#include <cstdint>
#include <string>

#include "common/row_index.hpp"
#include "normkit/error.hpp"
#include "normkit/tensor.hpp"

namespace normkit::detail {

[[noreturn]] void fail(ErrorKind kind, const std::string& msg);

std::string shape_str(const TensorView& t);
std::string shape_str(const int64_t* shape, int ndim);

// x.dtype is one of the four float types (TypeError otherwise).
void check_float_dtype(const TensorView& t, const char* op, const char* name);
// data is aligned to the element size (ValueError): a byte-misaligned view (e.g. NumPy's
// frombuffer at an odd offset) is never dereferenced in place. Call after the dtype check.
void check_aligned(const TensorView& t, const char* op, const char* name);
// Not read-only (ValueError).
void check_writable(const TensorView& t, const char* op, const char* name);
// Same device type and index as ref (ValueError).
void check_same_device(const TensorView& t, const TensorView& ref, const char* op,
                       const char* name, const char* ref_name);
// For a CUDA view: its device index names a device that exists (ValueError), or the CUDA
// backend is missing / no device is present (RuntimeError). Call before dispatching to it.
void check_cuda_device(const TensorView& t, const char* op, const char* name);
// A finite double, >= 0 when nonneg (ValueError).
void check_finite(double v, const char* op, const char* name, bool nonneg);
// Validation of the ndim itself (rank within kMaxDims, non-negative sizes).
void check_view(const TensorView& t, const char* op, const char* name);

// [lowest, highest] byte addresses a view touches; false for an empty view (touches nothing).
bool extent(const TensorView& t, uintptr_t& lo, uintptr_t& hi);
// An output may be exactly an input (same data, dtype, shape and strides: each element is
// read, then written, by one thread) but must not partly overlap it (ValueError naming out).
void check_overlap(const char* op, const TensorView& out, const char* out_name,
                   const TensorView* in, const char* in_name);
// No two of the n outputs (null ones skipped) share any byte, exact aliases included: the
// call would write both (ValueError naming the later one).
void check_disjoint_outputs(const char* op, const TensorView* const* outs,
                            const char* const* names, int n);

// ---- The declarative toolkit every entry point is written with --------------------------

enum class Role { In, Out };

// An array shaped like x (input or output): same shape, dtype and device, element-aligned;
// writable when an output.
void check_like(const char* op, const TensorView& t, const char* name, const TensorView& x,
                Role role);
// Dims [first, ndim) of t are C-contiguous among themselves (the rows a kernel walks with
// unit stride); `what` says which dims in the message.
void check_compact_tail(const char* op, const TensorView& t, const char* name, int first,
                        const char* what, Role role);
// A parameter: shape `shape[0..nd)` (or flat with the same element count), dtype x's or
// float32 for 16-bit x, x's device, aligned, C-contiguous; writable when an output.
// `what` describes the expected shape in the message ("the normalized dims of x").
void check_param(const char* op, const TensorView& t, const char* name, const TensorView& x,
                 const int64_t* shape, int nd, const char* what, Role role);
// A per-row statistic: `count` elements in any shape, stat_dtype(x), x's device,
// C-contiguous; writable when an output. `what` names the count ("one per row of x").
// `or_float64`: float64 is accepted for any x too (split-phase statistics).
void check_stat(const char* op, const TensorView& t, const char* name, const TensorView& x,
                int64_t count, const char* what, Role role, bool or_float64 = false);

// Aliasing rules of one call: every output may be exactly an input (same data, dtype, shape
// and strides) but must not partly overlap any input, and no two outputs share any byte.
// Add every array (null ones are skipped), then check().
class Aliasing {
 public:
  explicit Aliasing(const char* op) : op_(op) {}
  Aliasing& in(const TensorView* t, const char* name);
  Aliasing& out(const TensorView* t, const char* name);
  void check() const;

 private:
  static constexpr int kMax = 16;
  const char* op_;
  const TensorView* ins_[kMax] = {};
  const char* in_names_[kMax] = {};
  const TensorView* outs_[kMax] = {};
  const char* out_names_[kMax] = {};
  int nin_ = 0, nout_ = 0;
};

// True when dims [first, ndim) are C-contiguous among themselves (size-1 dims ignored).
bool dims_compact(const TensorView& t, int first);
// Collapses dims [0, lead) into the fewest (size, stride) pairs; throws when more than
// kMaxRowDims remain (a view too irregular to index: the caller must copy it).
RowIndex make_row_index(const TensorView& t, int lead, const char* op, const char* name);

}  // namespace normkit::detail
