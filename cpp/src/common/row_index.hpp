// Internal: finding the rows of a strided array, shared by every family whose kernels walk
// contiguous rows (row norms, DyT, AdaNorm, ...): leading dims of any strides, collapsed at
// validation (validate.hpp: make_row_index) into at most kMaxRowDims (size, stride) pairs.
#pragma once

#include <cstdint>

#include "normkit/config.hpp"

namespace normkit::detail {

constexpr int kMaxRowDims = 6;

// Element offset of row r in an array whose leading (row) dims have arbitrary strides.
// Leading dims are collapsed at validation, so the common case is nd == 1 (one row stride).
struct RowIndex {
  int nd = 1;
  int64_t size[kMaxRowDims] = {};
  int64_t stride[kMaxRowDims] = {};

  NK_HD int64_t offset(int64_t r) const {
    if (nd == 1) return r * stride[0];
    int64_t off = 0;
    for (int d = nd - 1; d > 0; --d) {
      const int64_t q = r / size[d];
      off += (r - q * size[d]) * stride[d];
      r = q;
    }
    return off + r * stride[0];
  }
  // True when every row follows the previous one at distance `h` (rows are one block).
  NK_HD bool dense(int64_t h) const { return nd == 1 && stride[0] == h; }
};

}  // namespace normkit::detail
