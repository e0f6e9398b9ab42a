// Bad arguments (SPEC §0): each throws normkit::Error whose message names the argument as
// the Python user spells it (y is "out", normalized_ndim is "normalized_shape", RMS norm's
// rstd is "rrms"), with the kind a binding maps to TypeError (dtype) or ValueError (everything else), and
// nothing is written before the arguments are known to be good.
#include <cmath>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "nk_test.hpp"
#include "normkit/normkit.hpp"
#include "reference.hpp"

namespace {

using namespace nk_ref;
using normkit::DType;
using normkit::ErrorKind;
using normkit::NormKind;
using normkit::RowNormBackwardArgs;
using normkit::RowNormForwardArgs;
using normkit::TensorView;

constexpr int64_t N = 4, H = 8;

// The running test's arrays live on the CUDA device (the errors_cuda group): every check
// must then fail for the reason it names, not for a device mismatch with a host array.
bool g_cuda = false;

// `a` moved to the device when the running test is a CUDA one.
HostArray dev(HostArray a) {
  if (g_cuda) a.to_device();
  return a;
}

struct CudaScope {
  explicit CudaScope(bool on) { g_cuda = on; }
  ~CudaScope() { g_cuda = false; }
};

// Each test runs with host arrays (group errors) and with device arrays (errors_cuda; skipped
// where no CUDA device is present).
#define ERRORS_TEST(name)                                                              \
  void errors_##name();                                                                \
  NK_TEST(errors, name) { errors_##name(); }                                           \
  NK_TEST(errors_cuda, name) {                                                         \
    if (!normkit::cuda_available()) NK_SKIP("no CUDA device (and not the emulation build)"); \
    CudaScope scope(true);                                                             \
    errors_##name();                                                                   \
  }                                                                                    \
  void errors_##name()

Layout rows_layout() {
  Layout L;
  L.lead = {N};
  L.row = {H};
  return L;
}

// A valid layer-norm call (fused add, every optional array present), to be broken one
// argument at a time.
struct Fixture {
  DType dt, pdt;
  HostArray x, r, xb, w, b, y, s, mean, rstd;
  HostArray dy, ds, dx, dr, dw, db, dxb;

  explicit Fixture(DType dtype = DType::Float32)
      : dt(dtype), pdt(dtype == DType::Float64 ? dtype : DType::Float32) {
    Rng rng(5);
    const Layout L = rows_layout();
    x = HostArray(dt, L);
    r = HostArray(dt, L);
    y = HostArray(dt, L);
    s = HostArray(dt, L);
    dy = HostArray(dt, L);
    ds = HostArray(dt, L);
    dx = HostArray(dt, L);
    dr = HostArray(dt, L);
    for (HostArray* a : {&x, &r, &dy, &ds}) a->fill_normal(rng);
    w = HostArray::compact(pdt, {H});
    b = HostArray::compact(pdt, {H});
    xb = HostArray::compact(pdt, {H});
    dw = HostArray::compact(pdt, {H});
    db = HostArray::compact(pdt, {H});
    dxb = HostArray::compact(pdt, {H});
    for (HostArray* a : {&w, &b, &xb}) a->fill_normal(rng);
    mean = HostArray::compact(normkit::stat_dtype(dt), {N});
    rstd = HostArray::compact(normkit::stat_dtype(dt), {N});
    if (g_cuda) {
      for (HostArray* a : {&x, &r, &xb, &w, &b, &y, &s, &mean, &rstd, &dy, &ds, &dx, &dr, &dw,
                           &db, &dxb})
        a->to_device();
    }
  }

  RowNormForwardArgs fwd() {
    RowNormForwardArgs a;
    a.kind = NormKind::Layer;
    a.eps = 1e-5;
    a.x = x.ptr();
    a.residual = r.ptr();
    a.x_bias = xb.ptr();
    a.weight = w.ptr();
    a.bias = b.ptr();
    a.y = y.ptr();
    a.residual_out = s.ptr();
    a.mean = mean.ptr();
    a.rstd = rstd.ptr();
    return a;
  }
  // A valid backward: runs the forward first so that mean/rstd/s hold real values.
  RowNormBackwardArgs bwd() {
    normkit::row_norm_forward(fwd());
    RowNormBackwardArgs a;
    a.kind = NormKind::Layer;
    a.dy = dy.ptr();
    a.ds = ds.ptr();
    a.x = s.ptr();
    a.mean = mean.ptr();
    a.rstd = rstd.ptr();
    a.weight = w.ptr();
    a.dx = dx.ptr();
    a.dresidual = dr.ptr();
    a.dweight = dw.ptr();
    a.dbias = db.ptr();
    a.dx_bias = dxb.ptr();
    return a;
  }
};

TensorView with_shape(TensorView v, std::vector<int64_t> shape) {
  TensorView t = TensorView::contiguous(v.data, v.dtype, shape.data(), int(shape.size()));
  t.readonly = v.readonly;
  t.device = v.device;
  t.device_index = v.device_index;
  return t;
}

TensorView with_dtype(TensorView v, DType t) {
  v.dtype = t;
  return v;
}

TensorView readonly(TensorView v) {
  v.readonly = true;
  return v;
}

// Points every array of `a` at a modified copy (kept in `views`) of its view.
template <typename F>
void every_view(RowNormForwardArgs& a, std::vector<TensorView>& views, F change) {
  const TensorView* RowNormForwardArgs::*members[] = {
      &RowNormForwardArgs::x,      &RowNormForwardArgs::residual,
      &RowNormForwardArgs::x_bias, &RowNormForwardArgs::weight,
      &RowNormForwardArgs::bias,   &RowNormForwardArgs::y,
      &RowNormForwardArgs::residual_out, &RowNormForwardArgs::mean,
      &RowNormForwardArgs::rstd};
  views.clear();
  views.reserve(9);  // the pointers taken below stay valid
  for (auto m : members) {
    TensorView v = *(a.*m);
    change(v);
    views.push_back(v);
    a.*m = &views.back();
  }
}

ErrorKind kind_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const normkit::Error& e) {
    return e.kind();
  }
  return ErrorKind::Runtime;  // "no error" shows up as a wrong kind
}

}  // namespace

ERRORS_TEST(fixture_is_valid) {
  Fixture fx;
  const RowNormForwardArgs f = fx.fwd();
  normkit::row_norm_forward(f);
  RowNormBackwardArgs b = fx.bwd();
  normkit::row_norm_backward(b);
  NK_CHECK(true);
}

ERRORS_TEST(forward_shapes) {
  Fixture fx;
  {
    const TensorView w = with_shape(*fx.w.ptr(), {H - 1});  // mismatched weight shape
    RowNormForwardArgs a = fx.fwd();
    a.weight = &w;
    NK_CHECK_THROWS(normkit::row_norm_forward(a), "weight");
  }
  {
    const TensorView w = with_shape(*fx.w.ptr(), {1, H});  // extra dim
    RowNormForwardArgs a = fx.fwd();
    a.weight = &w;
    NK_CHECK_THROWS(normkit::row_norm_forward(a), "weight");
  }
  {
    const TensorView bias = with_shape(*fx.b.ptr(), {H / 2});
    RowNormForwardArgs a = fx.fwd();
    a.bias = &bias;
    NK_CHECK_THROWS(normkit::row_norm_forward(a), "bias");
  }
  {
    const TensorView y = with_shape(*fx.y.ptr(), {N - 1, H});
    RowNormForwardArgs a = fx.fwd();
    a.y = &y;
    NK_CHECK_THROWS(normkit::row_norm_forward(a), "out");
  }
  {
    const TensorView r = with_shape(*fx.r.ptr(), {N, H / 2});
    RowNormForwardArgs a = fx.fwd();
    a.residual = &r;
    NK_CHECK_THROWS(normkit::row_norm_forward(a), "residual");
  }
  {
    const TensorView s = with_shape(*fx.s.ptr(), {N / 2, H});
    RowNormForwardArgs a = fx.fwd();
    a.residual_out = &s;
    NK_CHECK_THROWS(normkit::row_norm_forward(a), "residual_out");
  }
  {
    const TensorView xb = with_shape(*fx.xb.ptr(), {H + 1});
    RowNormForwardArgs a = fx.fwd();
    a.x_bias = &xb;
    NK_CHECK_THROWS(normkit::row_norm_forward(a), "x_bias");
  }
  {
    const TensorView m = with_shape(*fx.mean.ptr(), {N + 1});  // one per row, no more
    RowNormForwardArgs a = fx.fwd();
    a.mean = &m;
    NK_CHECK_THROWS(normkit::row_norm_forward(a), "mean");
  }
  {
    const TensorView rs = with_shape(*fx.rstd.ptr(), {N - 1});
    RowNormForwardArgs a = fx.fwd();
    a.rstd = &rs;
    NK_CHECK_THROWS(normkit::row_norm_forward(a), "rstd");
  }
  {
    TensorView x = *fx.x.ptr();  // a row that is not compact (every other element)
    x.shape[1] = H / 2;
    x.strides[1] = 2;
    TensorView y = *fx.y.ptr();
    y.shape[1] = H / 2;
    const TensorView w = with_shape(*fx.w.ptr(), {H / 2});
    RowNormForwardArgs a;
    a.x = &x;
    a.y = &y;
    a.weight = &w;
    NK_CHECK_THROWS(normkit::row_norm_forward(a), " x");
  }
  {
    TensorView x = *fx.x.ptr();
    x.shape[0] = -1;
    RowNormForwardArgs a = fx.fwd();
    a.x = &x;
    NK_CHECK_THROWS(normkit::row_norm_forward(a), " x");
  }
  for (int nd : {0, 3, -1}) {
    RowNormForwardArgs a = fx.fwd();
    a.normalized_ndim = nd;
    NK_CHECK_THROWS(normkit::row_norm_forward(a), "normalized_shape") << "normalized_ndim=" << nd;
  }
}

ERRORS_TEST(forward_dtypes) {
  {
    Fixture fx;  // statistics are float32 for float32 x
    const TensorView m = with_dtype(*fx.mean.ptr(), DType::Float64);
    RowNormForwardArgs a = fx.fwd();
    a.mean = &m;
    NK_CHECK_THROWS(normkit::row_norm_forward(a), "mean");
    NK_CHECK(kind_of([&] { normkit::row_norm_forward(a); }) == ErrorKind::Type);
  }
  {
    Fixture fx(DType::Float64);  // ... and float64 for float64 x
    HostArray r32 = dev(HostArray::compact(DType::Float32, {N}));
    RowNormForwardArgs a = fx.fwd();
    a.rstd = r32.ptr();
    NK_CHECK_THROWS(normkit::row_norm_forward(a), "rstd");
  }
  {
    Fixture fx;  // y must have x's dtype
    HostArray y16 = dev(HostArray(DType::Float16, rows_layout()));
    RowNormForwardArgs a = fx.fwd();
    a.y = y16.ptr();
    NK_CHECK_THROWS(normkit::row_norm_forward(a), "out");
    NK_CHECK(kind_of([&] { normkit::row_norm_forward(a); }) == ErrorKind::Type);
  }
  {
    Fixture fx;  // residual must have x's dtype
    HostArray r64 = dev(HostArray(DType::Float64, rows_layout()));
    RowNormForwardArgs a = fx.fwd();
    a.residual = r64.ptr();
    NK_CHECK_THROWS(normkit::row_norm_forward(a), "residual");
  }
  {
    Fixture fx;  // float32 x: parameters float32, not float64
    HostArray w64 = dev(HostArray::compact(DType::Float64, {H}));
    RowNormForwardArgs a = fx.fwd();
    a.weight = w64.ptr();
    NK_CHECK_THROWS(normkit::row_norm_forward(a), "weight");
  }
  {
    Fixture fx(DType::Float16);  // float16 x: weight float16 or float32, not bfloat16
    HostArray wbf = dev(HostArray::compact(DType::BFloat16, {H}));
    RowNormForwardArgs a = fx.fwd();
    a.weight = wbf.ptr();
    NK_CHECK_THROWS(normkit::row_norm_forward(a), "weight");
  }
  {
    Fixture fx;  // an invalid dtype code
    TensorView x = *fx.x.ptr();
    x.dtype = static_cast<DType>(42);
    RowNormForwardArgs a = fx.fwd();
    a.x = &x;
    NK_CHECK_THROWS(normkit::row_norm_forward(a), " x");
    NK_CHECK(kind_of([&] { normkit::row_norm_forward(a); }) == ErrorKind::Type);
  }
}

ERRORS_TEST(forward_values) {
  Fixture fx;
  for (double eps : {-1e-5, std::nan(""), HUGE_VAL}) {
    RowNormForwardArgs a = fx.fwd();
    a.eps = eps;
    NK_CHECK_THROWS(normkit::row_norm_forward(a), "eps") << "eps=" << eps;
    NK_CHECK(kind_of([&] { normkit::row_norm_forward(a); }) == ErrorKind::Value);
  }
  {
    RowNormForwardArgs a = fx.fwd();
    a.eps = 0.0;  // allowed (the caller's business if a row is constant)
    normkit::row_norm_forward(a);
  }
  {
    RowNormForwardArgs a = fx.fwd();
    a.residual_scale = std::nan("");
    NK_CHECK_THROWS(normkit::row_norm_forward(a), "residual_scale");
  }
  {
    RowNormForwardArgs a = fx.fwd();  // the zero-centred weight is RMS norm's
    a.weight_offset = 1.0;
    NK_CHECK_THROWS(normkit::row_norm_forward(a), "weight_offset");
  }
  {
    RowNormForwardArgs a = fx.fwd();  // RMS norm has no mean
    a.kind = NormKind::RMS;
    NK_CHECK_THROWS(normkit::row_norm_forward(a), "mean");
  }
  {
    RowNormForwardArgs a = fx.fwd();  // an enum value outside NormKind
    a.kind = static_cast<NormKind>(7);
    NK_CHECK_THROWS(normkit::row_norm_forward(a), "kind: expected NormKind::Layer, NormKind::RMS or NormKind::Ada");
  }
}

ERRORS_TEST(forward_missing_and_misused) {
  Fixture fx;
  {
    RowNormForwardArgs a = fx.fwd();
    a.x = nullptr;
    NK_CHECK_THROWS(normkit::row_norm_forward(a), " x");
  }
  {
    RowNormForwardArgs a = fx.fwd();
    a.y = nullptr;
    NK_CHECK_THROWS(normkit::row_norm_forward(a), "out");
  }
  {
    RowNormForwardArgs a = fx.fwd();  // x_bias belongs to the fused add
    a.residual = nullptr;
    a.residual_out = nullptr;
    NK_CHECK_THROWS(normkit::row_norm_forward(a), "x_bias");
  }
  {
    RowNormForwardArgs a = fx.fwd();  // so does residual_out
    a.residual = nullptr;
    a.x_bias = nullptr;
    NK_CHECK_THROWS(normkit::row_norm_forward(a), "residual_out");
  }
  {
    TensorView x = *fx.x.ptr();  // null data with elements
    x.data = nullptr;
    RowNormForwardArgs a = fx.fwd();
    a.x = &x;
    NK_CHECK_THROWS(normkit::row_norm_forward(a), " x");
  }
}

// AdaNorm (SPEC §8): no parameters, no fused add, k and scale finite, two elements per row.
ERRORS_TEST(ada_norm) {
  Fixture fx;
  auto ada_fwd = [&]() {
    RowNormForwardArgs a;
    a.kind = NormKind::Ada;
    a.x = fx.x.ptr();
    a.y = fx.y.ptr();
    a.mean = fx.mean.ptr();
    a.rstd = fx.rstd.ptr();
    return a;
  };
  normkit::row_norm_forward(ada_fwd());  // valid
  auto ada_bwd = [&]() {
    RowNormBackwardArgs a;
    a.kind = NormKind::Ada;
    a.dy = fx.dy.ptr();
    a.x = fx.x.ptr();
    a.mean = fx.mean.ptr();
    a.rstd = fx.rstd.ptr();
    a.dx = fx.dx.ptr();
    return a;
  };
  normkit::row_norm_backward(ada_bwd());  // valid
  const TensorView* some = fx.w.ptr();
  for (const char* name : {"weight", "bias", "residual"}) {
    RowNormForwardArgs a = ada_fwd();
    if (std::string(name) == "weight") a.weight = some;
    if (std::string(name) == "bias") a.bias = some;
    if (std::string(name) == "residual") a.residual = fx.r.ptr();
    NK_CHECK_THROWS(normkit::row_norm_forward(a),
                    (std::string("ada_norm: ") + name + ": AdaNorm has none").c_str());
  }
  for (double bad : {std::nan(""), HUGE_VAL}) {
    RowNormForwardArgs a = ada_fwd();
    a.ada_k = bad;
    NK_CHECK_THROWS(normkit::row_norm_forward(a), "ada_norm: k");
    a = ada_fwd();
    a.ada_scale = bad;
    NK_CHECK_THROWS(normkit::row_norm_forward(a), "ada_norm: scale");
    RowNormBackwardArgs b = ada_bwd();
    b.ada_k = bad;
    NK_CHECK_THROWS(normkit::row_norm_backward(b), "ada_norm_backward: k");
  }
  {
    RowNormForwardArgs a = ada_fwd();
    a.weight_offset = 1.0;
    NK_CHECK_THROWS(normkit::row_norm_forward(a), "weight_offset");
  }
  {
    RowNormBackwardArgs b = ada_bwd();
    b.mean = nullptr;
    NK_CHECK_THROWS(normkit::row_norm_backward(b), "ada_norm_backward: mean: is required for AdaNorm");
    b = ada_bwd();
    b.weight = some;
    NK_CHECK_THROWS(normkit::row_norm_backward(b), "ada_norm_backward: weight: AdaNorm has none");
    b = ada_bwd();
    b.dbias = fx.db.ptr();
    NK_CHECK_THROWS(normkit::row_norm_backward(b), "ada_norm_backward: dbias: AdaNorm has none");
  }
  {
    // One element per row: the unbiased std is 0/0. (No rows at all is fine.)
    Layout L1;
    L1.lead = {N};
    L1.row = {1};
    HostArray x1 = dev(HostArray(fx.dt, L1)), y1 = dev(HostArray(fx.dt, L1));
    RowNormForwardArgs a = ada_fwd();
    a.x = x1.ptr();
    a.y = y1.ptr();
    NK_CHECK_THROWS(normkit::row_norm_forward(a), "ada_norm: x: AdaNorm needs at least 2 elements per row");
    L1.lead = {0};
    HostArray x0 = dev(HostArray(fx.dt, L1)), y0 = dev(HostArray(fx.dt, L1));
    a.x = x0.ptr();
    a.y = y0.ptr();
    a.mean = a.rstd = nullptr;
    normkit::row_norm_forward(a);
  }
}

ERRORS_TEST(forward_outputs) {
  Fixture fx;
  {
    const TensorView y = readonly(*fx.y.ptr());
    RowNormForwardArgs a = fx.fwd();
    a.y = &y;
    NK_CHECK_THROWS(normkit::row_norm_forward(a), "out");
    NK_CHECK(kind_of([&] { normkit::row_norm_forward(a); }) == ErrorKind::Value);
  }
  {
    const TensorView s = readonly(*fx.s.ptr());
    RowNormForwardArgs a = fx.fwd();
    a.residual_out = &s;
    NK_CHECK_THROWS(normkit::row_norm_forward(a), "residual_out");
  }
  {
    const TensorView m = readonly(*fx.mean.ptr());
    RowNormForwardArgs a = fx.fwd();
    a.mean = &m;
    NK_CHECK_THROWS(normkit::row_norm_forward(a), "mean");
  }
  {
    const TensorView rs = readonly(*fx.rstd.ptr());
    RowNormForwardArgs a = fx.fwd();
    a.rstd = &rs;
    NK_CHECK_THROWS(normkit::row_norm_forward(a), "rstd");
  }
  {
    // out overlapping x partially (one element further on): only exact aliasing is allowed.
    HostArray buf(DType::Float32, Layout{{N + 1}, {H}, 0, 0});
    Rng rng(3);
    buf.fill_normal(rng);
    if (g_cuda) buf.to_device();
    const int64_t shape[] = {N, H};
    TensorView x = TensorView::contiguous(buf.ptr()->data, DType::Float32, shape, 2);
    x.device = buf.ptr()->device;
    x.device = buf.ptr()->device;
    TensorView y = x;
    y.data = static_cast<float*>(y.data) + 1;
    RowNormForwardArgs a;
    a.x = &x;
    a.y = &y;
    NK_CHECK_THROWS(normkit::row_norm_forward(a), "out");
  }
}

// No two outputs may share memory — not even as an exact alias (both would be written).
ERRORS_TEST(outputs_share_memory) {
  Fixture fx;
  {
    RowNormForwardArgs a = fx.fwd();
    a.rstd = a.mean;
    NK_CHECK_THROWS(normkit::row_norm_forward(a), "rstd: shares memory with the output mean");
  }
  {
    RowNormForwardArgs a = fx.fwd();
    a.residual_out = a.y;
    NK_CHECK_THROWS(normkit::row_norm_forward(a), "residual_out: shares memory with the output out");
  }
  {
    // mean inside y's memory
    TensorView m = *fx.mean.ptr();
    m.data = fx.y.ptr()->data;
    m.dtype = fx.y.ptr()->dtype;
    RowNormForwardArgs a = fx.fwd();
    a.mean = &m;
    NK_CHECK_THROWS(normkit::row_norm_forward(a), "mean: shares memory with the output out");
  }
  {
    RowNormBackwardArgs b = fx.bwd();
    b.dbias = b.dweight;
    NK_CHECK_THROWS(normkit::row_norm_backward(b), "dbias: shares memory with the output dweight");
  }
}

// Data not aligned to its element size (NumPy's frombuffer at an odd offset, say) is refused
// before anything is dereferenced.
ERRORS_TEST(byte_misaligned_data) {
  Fixture fx;
  for (int k = 0; k < 4; ++k) {
    TensorView v;
    RowNormForwardArgs a = fx.fwd();
    const TensorView** slot = k == 0 ? &a.x : k == 1 ? &a.weight : k == 2 ? &a.y : &a.rstd;
    const char* name = k == 0 ? " x: data" : k == 1 ? "weight: data" : k == 2 ? "out: data" : "rstd: data";
    v = **slot;
    v.data = static_cast<char*>(v.data) + 1;
    *slot = &v;
    NK_CHECK_THROWS(normkit::row_norm_forward(a), name) << "case " << k;
    NK_CHECK_THROWS(normkit::row_norm_forward(a), "is not aligned to its 4-byte elements");
  }
}

// A call that fails validation writes nothing: y, s, mean and rstd keep their NaNs.
ERRORS_TEST(nothing_written_on_error) {
  Fixture fx;
  const std::vector<unsigned char> y0 = fx.y.bytes(), s0 = fx.s.bytes(), m0 = fx.mean.bytes(),
                                   r0 = fx.rstd.bytes();
  {
    const TensorView rs = with_shape(*fx.rstd.ptr(), {N + 1});  // the last argument checked
    RowNormForwardArgs a = fx.fwd();
    a.rstd = &rs;
    NK_CHECK_THROWS(normkit::row_norm_forward(a), "rstd");
  }
  NK_CHECK(fx.y.bytes() == y0) << "y written by a call that threw";
  NK_CHECK(fx.s.bytes() == s0) << "residual_out written by a call that threw";
  NK_CHECK(fx.mean.bytes() == m0) << "mean written by a call that threw";
  NK_CHECK(fx.rstd.bytes() == r0) << "rstd written by a call that threw";

  RowNormBackwardArgs b = fx.bwd();
  const std::vector<unsigned char> dx0 = fx.dx.bytes(), dw0 = fx.dw.bytes();
  const TensorView dxb = with_shape(*fx.dxb.ptr(), {H + 1});
  b.dx_bias = &dxb;
  NK_CHECK_THROWS(normkit::row_norm_backward(b), "dx_bias");
  NK_CHECK(fx.dx.bytes() == dx0) << "dx written by a backward that threw";
  NK_CHECK(fx.dw.bytes() == dw0) << "dweight written by a backward that threw";
}

ERRORS_TEST(backward) {
  Fixture fx;
  {
    RowNormBackwardArgs a = fx.bwd();  // dweight needs weight
    a.weight = nullptr;
    NK_CHECK_THROWS(normkit::row_norm_backward(a), "dweight");
  }
  {
    const TensorView dx = readonly(*fx.dx.ptr());
    RowNormBackwardArgs a = fx.bwd();
    a.dx = &dx;
    NK_CHECK_THROWS(normkit::row_norm_backward(a), " dx");
  }
  {
    const TensorView dw = readonly(*fx.dw.ptr());
    RowNormBackwardArgs a = fx.bwd();
    a.dweight = &dw;
    NK_CHECK_THROWS(normkit::row_norm_backward(a), "dweight");
  }
  {
    RowNormBackwardArgs a = fx.bwd();  // layer norm's backward needs the mean
    a.mean = nullptr;
    NK_CHECK_THROWS(normkit::row_norm_backward(a), "mean");
  }
  {
    RowNormBackwardArgs a = fx.bwd();
    a.rstd = nullptr;
    NK_CHECK_THROWS(normkit::row_norm_backward(a), "rstd");
  }
  {
    RowNormBackwardArgs a = fx.bwd();
    a.dx = nullptr;
    NK_CHECK_THROWS(normkit::row_norm_backward(a), " dx");
  }
  {
    RowNormBackwardArgs a = fx.bwd();
    a.dy = nullptr;
    NK_CHECK_THROWS(normkit::row_norm_backward(a), " dy");
  }
  {
    HostArray dx16 = dev(HostArray(DType::Float16, rows_layout()));
    RowNormBackwardArgs a = fx.bwd();
    a.dx = dx16.ptr();
    NK_CHECK_THROWS(normkit::row_norm_backward(a), " dx");
  }
  {
    const TensorView m = with_dtype(*fx.mean.ptr(), DType::Float64);
    RowNormBackwardArgs a = fx.bwd();
    a.mean = &m;
    NK_CHECK_THROWS(normkit::row_norm_backward(a), "mean");
  }
  {
    const TensorView dy = with_shape(*fx.dy.ptr(), {N, H + 1});
    RowNormBackwardArgs a = fx.bwd();
    a.dy = &dy;
    NK_CHECK_THROWS(normkit::row_norm_backward(a), " dy");
  }
  {
    const TensorView ds = with_shape(*fx.ds.ptr(), {N - 1, H});
    RowNormBackwardArgs a = fx.bwd();
    a.ds = &ds;
    NK_CHECK_THROWS(normkit::row_norm_backward(a), " ds");
  }
  {
    const TensorView dr = with_shape(*fx.dr.ptr(), {N, H - 1});
    RowNormBackwardArgs a = fx.bwd();
    a.dresidual = &dr;
    NK_CHECK_THROWS(normkit::row_norm_backward(a), "dresidual");
  }
  {
    const TensorView db = with_shape(*fx.db.ptr(), {H - 1});
    RowNormBackwardArgs a = fx.bwd();
    a.dbias = &db;
    NK_CHECK_THROWS(normkit::row_norm_backward(a), "dbias");
  }
  {
    RowNormBackwardArgs a = fx.bwd();  // RMS backward takes no mean
    a.kind = NormKind::RMS;
    NK_CHECK_THROWS(normkit::row_norm_backward(a), "mean");
  }
  {
    RowNormBackwardArgs a = fx.bwd();
    a.residual_scale = HUGE_VAL;
    NK_CHECK_THROWS(normkit::row_norm_backward(a), "residual_scale");
  }
  {
    RowNormBackwardArgs a = fx.bwd();  // a workspace smaller than asked for
    const size_t need = normkit::row_norm_backward_workspace_size(a);
    if (need > 0) {
      std::vector<double> ws(need / 8 + 16);
      a.workspace = ws.data();
      a.workspace_bytes = need - 1;
      NK_CHECK_THROWS(normkit::row_norm_backward(a), "workspace");
    }
  }
}

// A CUDA view with CPU ones is a device mismatch; a CUDA call where no GPU (or no CUDA
// backend) exists is an error, never a crash. No device memory is touched either way.
NK_TEST(errors, devices) {
  Fixture fx;
  {
    TensorView y = *fx.y.ptr();
    y.device = normkit::DeviceType::CUDA;
    RowNormForwardArgs a = fx.fwd();
    a.y = &y;
    NK_CHECK_THROWS(normkit::row_norm_forward(a), "out");
  }
  {
    TensorView w = *fx.w.ptr();
    w.device = normkit::DeviceType::CUDA;
    RowNormForwardArgs a = fx.fwd();
    a.weight = &w;
    NK_CHECK_THROWS(normkit::row_norm_forward(a), "weight");
  }
  if (!normkit::cuda_available()) {
    // Every array "on the GPU": must throw before dereferencing any (host) pointer.
    std::vector<TensorView> views;
    RowNormForwardArgs a = fx.fwd();
    every_view(a, views, [](TensorView& v) { v.device = normkit::DeviceType::CUDA; });
    NK_CHECK_THROWS(normkit::row_norm_forward(a), "");
    NK_CHECK(kind_of([&] { normkit::row_norm_forward(a); }) == ErrorKind::Runtime)
        << "no GPU is not the caller's fault: expected ErrorKind::Runtime";
  }
}

// On the device: a host array among device ones is a mismatch naming it; a device index
// that does not exist is a clear error naming x, not a CUDA error from deep inside.
NK_TEST(errors_cuda, devices) {
  if (!normkit::cuda_available()) NK_SKIP("no CUDA device (and not the emulation build)");
  CudaScope scope(true);
  Fixture fx;
  {
    TensorView y = *fx.y.ptr();
    y.device = normkit::DeviceType::CPU;
    RowNormForwardArgs a = fx.fwd();
    a.y = &y;
    NK_CHECK_THROWS(normkit::row_norm_forward(a), "out");
  }
  {
    TensorView w = *fx.w.ptr();
    w.device_index = 1;  // another device than x's
    RowNormForwardArgs a = fx.fwd();
    a.weight = &w;
    NK_CHECK_THROWS(normkit::row_norm_forward(a), "weight");
  }
  {
    // Every array on a device index past the last device.
    std::vector<TensorView> views;
    RowNormForwardArgs a = fx.fwd();
    every_view(a, views, [](TensorView& v) { v.device_index = 1000; });
    NK_CHECK_THROWS(normkit::row_norm_forward(a), "x: is on cuda:1000");
    NK_CHECK(kind_of([&] { normkit::row_norm_forward(a); }) == ErrorKind::Value);
  }
}

NK_TEST(errors, runtime_settings) {
  NK_CHECK_THROWS(normkit::set_cpu_isa("no-such-isa"), "no-such-isa");
  const std::vector<std::string> all = normkit::compiled_cpu_isas();
  const std::vector<std::string> ok = normkit::available_cpu_isas();
  for (const std::string& isa : all) {
    bool runnable = false;
    for (const std::string& o : ok) runnable = runnable || o == isa;
    if (!runnable) {
      NK_CHECK_THROWS(normkit::set_cpu_isa(isa), isa.c_str());
    }
  }
}
