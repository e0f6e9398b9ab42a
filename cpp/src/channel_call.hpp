// Internal: what every entry point of a channel-wise family with statistics (batch norm,
// group / instance norm) starts with — x checked and its layout resolved into the family's
// problem (any struct deriving from BnLayout with x / dy / out fields and row indices), the
// arrays shaped like x, per-channel parameters and statistics checked by the shared toolkit,
// and the device dispatch.
#pragma once

#include <string>

#include "channel_layout.hpp"
#include "common/batch_norm_problem.hpp"
#include "validate.hpp"

namespace normkit::detail {

inline void require_arg(const char* op, const TensorView* t, const char* name) {
  if (t == nullptr) fail(ErrorKind::Value, std::string(op) + ": " + name + ": is required");
}

// Two arrays that come together (running mean and variance): both or neither.
inline void require_pair(const char* op, const TensorView* a, const char* an,
                         const TensorView* b, const char* bn) {
  if ((a == nullptr) != (b == nullptr))
    fail(ErrorKind::Value, std::string(op) + ": " + (a ? bn : an) + ": needed with " +
                               (a ? an : bn) + " (pass both or neither)");
}

inline Chan chan_of(const TensorView* t) {
  Chan c;
  if (t) c.p = t->data, c.dtype = t->dtype;
  return c;
}

template <typename Problem>
struct ChannelCall {
  const char* op;
  const TensorView& x;
  const char* x_name;  // what the op calls x (weight norm: "v")
  ChannelLayout L;
  Problem p;

  ChannelCall(const char* op_, const TensorView* xp, bool channels_last, const char* xn = "x")
      : op(op_), x(*xp), x_name(xn) {
    check_view(x, op, x_name);
    check_float_dtype(x, op, x_name);
    check_aligned(x, op, x_name);
    L = resolve_channel_layout(op, x, channels_last, x_name);
    p.device_index = x.device_index;
    p.x_dtype = x.dtype;
    p.per_row = L.per_row;
    p.rows = L.rows;
    p.width = L.width;
    p.C = L.C;
  }
  bool empty() const { return L.rows == 0 || L.width == 0; }

  // An array shaped like x: its data and row index (none for an empty call).
  void like_x(const TensorView* t, const char* name, Role role, const void** data, RowIndex* idx) {
    const TensorView v = channel_like_x(op, L, *t, x, name, role);
    if (!empty()) {
      *data = t->data;
      *idx = make_row_index(v, L.lead, op, name);
    }
  }
  void x_in() { like_x(&x, x_name, Role::In, &p.x, &p.x_idx); }
  void dy_in(const TensorView* dy) { like_x(dy, "dy", Role::In, &p.dy, &p.dy_idx); }
  void out(const TensorView* t, const char* name) {
    const void* d = nullptr;
    like_x(t, name, Role::Out, &d, &p.out_idx);
    p.out = const_cast<void*>(d);
  }
  Chan param(const TensorView* t, const char* name, Role role) {
    if (t) check_channel_param(op, L, *t, name, x, role);
    return chan_of(t);
  }
  // A statistic of `count` values (`what` names them).
  Chan stat(const TensorView* t, const char* name, Role role, bool or_float64,
            int64_t count = -1, const char* what = "one per channel of x") {
    if (t) check_stat(op, *t, name, x, count < 0 ? L.C : count, what, role, or_float64);
    return chan_of(t);
  }
  // Runs the problem on x's device: cpu(p) or cuda(p, stream).
  template <typename Cpu, typename Cuda>
  void dispatch(Stream stream, Cpu cpu, Cuda cuda) const {
    if (x.device == DeviceType::CUDA) {
      check_cuda_device(x, op, x_name);
#if defined(NORMKIT_WITH_CUDA)
      cuda(p, stream);
#else
      (void)stream;
      (void)cuda;
#endif
    } else {
      cpu(p);
    }
  }
};

}  // namespace normkit::detail
