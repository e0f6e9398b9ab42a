// The channel-wise families' layouts (channel_layout.hpp).
#include "channel_layout.hpp"

#include <string>

namespace normkit::detail {

TensorView channel_last_view(const TensorView& t) {
  TensorView v = t;
  for (int i = 1; i + 1 < t.ndim; ++i) {
    v.shape[i] = t.shape[i + 1];
    v.strides[i] = t.strides[i + 1];
  }
  v.shape[t.ndim - 1] = t.shape[1];
  v.strides[t.ndim - 1] = t.strides[1];
  return v;
}

ChannelLayout resolve_channel_layout(const char* op, const TensorView& x, bool channels_last,
                                     const char* name) {
  ChannelLayout L;
  if (x.ndim < (channels_last ? 1 : 2))
    fail(ErrorKind::Value, std::string(op) + ": " + name + ": expected " +
                               (channels_last ? "at least 1 dim (*, C)"
                                              : "at least 2 dims (N, C, *) for channels first") +
                               ", got shape " + shape_str(x));
  const int nd = x.ndim;
  if (channels_last || nd == 2) {
    L.lead = nd - 1;
    L.C = L.width = x.shape[nd - 1];
  } else {
    L.C = x.shape[1];
    int64_t spatial = 1;
    for (int i = 2; i < nd; ++i) spatial *= x.shape[i];
    const bool planes = dims_compact(x, 2);
    const bool chan_unit = x.shape[1] == 1 || x.strides[1] == 1 || x.numel() == 0;
    if (!planes && !chan_unit)
      fail(ErrorKind::Value, std::string(op) + ": " + name +
                                 ": for channels-first data the dims after C must be "
                                 "contiguous, or C must have unit stride (channels-last memory); "
                                 "got neither (pass a contiguous copy)");
    if (planes && (!chan_unit || spatial >= L.C)) {
      L.per_row = true;
      L.lead = 2;
      L.width = spatial;
    } else {
      L.permuted = true;
      L.lead = nd - 1;
      L.width = L.C;
    }
  }
  L.rows = 1;
  const TensorView v = L.permuted ? channel_last_view(x) : x;
  for (int i = 0; i < L.lead; ++i) L.rows *= v.shape[i];
  return L;
}

TensorView channel_like_x(const char* op, const ChannelLayout& L, const TensorView& t,
                          const TensorView& x, const char* name, Role role) {
  check_like(op, t, name, x, role);
  const TensorView v = L.permuted ? channel_last_view(t) : t;
  check_compact_tail(op, v, name, L.lead, L.per_row ? "the dims after C" : "the channel dim (C)",
                     role);
  return v;
}

void check_channel_param(const char* op, const ChannelLayout& L, const TensorView& t,
                         const char* name, const TensorView& x, Role role) {
  check_param(op, t, name, x, &L.C, 1, "one per channel of x", role);
}

}  // namespace normkit::detail
