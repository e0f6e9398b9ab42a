// Internal: the layouts of the channel-wise families (DyT, batch / group / instance norm,
// BLN): channels last `(*, C)` or channels first `(N, C, *)`, each walked as rows of
// contiguous elements found by a RowIndex (common/row_index.hpp).
//
//   channels last (or 2-D x): rows = every position, width = C, element j of a row is
//       channel j;
//   channels first, planes: the dims after C compact — row r is the (n, c) plane, channel
//       c = r % C, width = prod(spatial dims);
//   channels first, permuted: C has unit stride (a torch.channels_last tensor: logical NCHW,
//       NHWC memory) — computed as channels last over the same memory, dim 1 moved last.
// Both readings work for some shapes ((N, C, 1, 1), or C == 1): the longer rows win.
#pragma once

#include <cstdint>

#include "normkit/tensor.hpp"
#include "validate.hpp"

namespace normkit::detail {

struct ChannelLayout {
  bool per_row = false;   // channels first, one (n, c) plane per row
  bool permuted = false;  // channels first computed as channels last (dim 1 moved last)
  int lead = 0;           // the row dims are [0, lead) of the (permuted) view
  int64_t rows = 0, width = 0, C = 0;
};

// Moves dim 1 to the end: a logical (N, C, *) view whose channel dim has unit stride is then
// a channels-last (N, *, C) view of the same memory.
TensorView channel_last_view(const TensorView& t);

// The layout of x (ValueError naming x when neither reading fits; channels first needs at
// least 2 dims).
ChannelLayout resolve_channel_layout(const char* op, const TensorView& x, bool channels_last,
                                     const char* name = "x");

// An array shaped like x, walked the same way: checked like x (check_like) and returned as
// the view the kernels index (permuted like x).
TensorView channel_like_x(const char* op, const ChannelLayout& L, const TensorView& t,
                          const TensorView& x, const char* name, Role role);

// A per-channel parameter: [C], x's dtype or float32 for 16-bit x.
void check_channel_param(const char* op, const ChannelLayout& L, const TensorView& t,
                         const char* name, const TensorView& x, Role role);

}  // namespace normkit::detail
