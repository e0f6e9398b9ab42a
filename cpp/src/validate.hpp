// Internal: argument checks shared by every entry point. Each check names the argument in
// its message, the way the Python user spells it.
#pragma once

#include <cstdint>
#include <string>

#include "common/row_norm_problem.hpp"
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

// True when dims [first, ndim) are C-contiguous among themselves (size-1 dims ignored).
bool dims_compact(const TensorView& t, int first);
// Collapses dims [0, lead) into the fewest (size, stride) pairs; throws when more than
// kMaxRowDims remain (a view too irregular to index: the caller must copy it).
RowIndex make_row_index(const TensorView& t, int lead, const char* op, const char* name);

}  // namespace normkit::detail
