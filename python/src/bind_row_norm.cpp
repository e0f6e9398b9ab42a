// normkit._core: the row-norm family (layer norm, RMS norm, fused residual add + norm,
// AdaNorm).
#include <pybind11/pybind11.h>

#include "interop.hpp"
#include "normkit/row_norm.hpp"

namespace py = pybind11;
using normkit::py_interop::ArrayRef;
using normkit::py_interop::ptr;
using normkit::py_interop::to_view;

namespace {

using normkit::NormKind;
using normkit::py_interop::FastArgs;
using normkit::py_interop::fast_call;

// NormKind's Python members (NormKind.layer, .rms, .ada), in NormKind's order: the kind
// crosses the binding as one of these objects, never as a bare int.
py::handle g_kinds[3];
constexpr NormKind kKinds[3] = {NormKind::Layer, NormKind::RMS, NormKind::Ada};

NormKind kind_at(const FastArgs& a, int i) {
  return kKinds[a.member(i, g_kinds, 3, "a normkit._core.NormKind")];
}

PyObject* row_norm_forward(PyObject*, PyObject* const* args, Py_ssize_t n) {
  return fast_call([&] {
    static constexpr const char* kNames[] = {"kind", "normalized_ndim", "eps", "weight_offset",
        "residual_scale", "x", "residual", "x_bias", "weight", "bias", "y", "residual_out", "mean",
        "rstd", "stream"};
    const FastArgs p("row_norm_forward", kNames, 14, args, n);
    const NormKind kind = kind_at(p, 0);
    const uintptr_t stream = p.stream(14);
    ArrayRef ax, ar, axb, aw, ab, ay, as, am, arstd;
    p.view(5, stream, ax);
    p.view(6, stream, ar);
    p.view(7, stream, axb);
    p.view(8, stream, aw);
    p.view(9, stream, ab);
    p.view(10, stream, ay, true, "out");
    p.view(11, stream, as, true);
    p.view(12, stream, am, true);
    p.view(13, stream, arstd, true, kind == NormKind::RMS ? "rrms" : "rstd");
    normkit::RowNormForwardArgs a;
    a.kind = kind;
    a.normalized_ndim = p.i32(1);
    a.eps = p.f64(2);
    a.weight_offset = p.f64(3);
    a.residual_scale = p.f64(4);
    a.x = ptr(ax);
    a.residual = ptr(ar);
    a.x_bias = ptr(axb);
    a.weight = ptr(aw);
    a.bias = ptr(ab);
    a.y = ptr(ay);
    a.residual_out = ptr(as);
    a.mean = ptr(am);
    a.rstd = ptr(arstd);
    py::gil_scoped_release nogil;
    normkit::row_norm_forward(a, reinterpret_cast<normkit::Stream>(stream));
  });
}

PyObject* row_norm_backward(PyObject*, PyObject* const* args, Py_ssize_t n) {
  return fast_call([&] {
    static constexpr const char* kNames[] = {"kind", "normalized_ndim", "weight_offset",
        "residual_scale", "dy", "ds", "x", "mean", "rstd", "weight", "dx", "dresidual", "dweight",
        "dbias", "dx_bias", "stream"};
    const FastArgs p("row_norm_backward", kNames, 15, args, n);
    const NormKind kind = kind_at(p, 0);
    const uintptr_t stream = p.stream(15);
    ArrayRef ady, ads, ax, am, arstd, aw, adx, adr, adw, adb, adxb;
    p.view(4, stream, ady);
    p.view(5, stream, ads);
    p.view(6, stream, ax);
    p.view(7, stream, am);
    p.view(8, stream, arstd, false, kind == NormKind::RMS ? "rrms" : "rstd");
    p.view(9, stream, aw);
    p.view(10, stream, adx, true);
    p.view(11, stream, adr, true);
    p.view(12, stream, adw, true);
    p.view(13, stream, adb, true);
    p.view(14, stream, adxb, true);
    normkit::RowNormBackwardArgs a;
    a.kind = kind;
    a.normalized_ndim = p.i32(1);
    a.weight_offset = p.f64(2);
    a.residual_scale = p.f64(3);
    a.dy = ptr(ady);
    a.ds = ptr(ads);
    a.x = ptr(ax);
    a.mean = ptr(am);
    a.rstd = ptr(arstd);
    a.weight = ptr(aw);
    a.dx = ptr(adx);
    a.dresidual = ptr(adr);
    a.dweight = ptr(adw);
    a.dbias = ptr(adb);
    a.dx_bias = ptr(adxb);
    py::gil_scoped_release nogil;
    normkit::row_norm_backward(a, reinterpret_cast<normkit::Stream>(stream));
  });
}

PyObject* ada_norm_forward(PyObject*, PyObject* const* args, Py_ssize_t n) {
  return fast_call([&] {
    static constexpr const char* kNames[] = {"normalized_ndim", "eps", "k", "scale", "x", "y",
        "mean", "rstd", "stream"};
    const FastArgs p("ada_norm_forward", kNames, 8, args, n);
    const uintptr_t stream = p.stream(8);
    ArrayRef ax, ay, am, arstd;
    p.view(4, stream, ax);
    p.view(5, stream, ay, true, "out");
    p.view(6, stream, am, true);
    p.view(7, stream, arstd, true);
    normkit::RowNormForwardArgs a;
    a.kind = NormKind::Ada;
    a.normalized_ndim = p.i32(0);
    a.eps = p.f64(1);
    a.ada_k = p.f64(2);
    a.ada_scale = p.f64(3);
    a.x = ptr(ax);
    a.y = ptr(ay);
    a.mean = ptr(am);
    a.rstd = ptr(arstd);
    py::gil_scoped_release nogil;
    normkit::row_norm_forward(a, reinterpret_cast<normkit::Stream>(stream));
  });
}

PyObject* ada_norm_backward(PyObject*, PyObject* const* args, Py_ssize_t n) {
  return fast_call([&] {
    static constexpr const char* kNames[] = {"normalized_ndim", "k", "scale", "dy", "x", "mean",
        "rstd", "dx", "stream"};
    const FastArgs p("ada_norm_backward", kNames, 8, args, n);
    const uintptr_t stream = p.stream(8);
    ArrayRef ady, ax, am, arstd, adx;
    p.view(3, stream, ady);
    p.view(4, stream, ax);
    p.view(5, stream, am);
    p.view(6, stream, arstd);
    p.view(7, stream, adx, true);
    normkit::RowNormBackwardArgs a;
    a.kind = NormKind::Ada;
    a.normalized_ndim = p.i32(0);
    a.ada_k = p.f64(1);
    a.ada_scale = p.f64(2);
    a.dy = ptr(ady);
    a.x = ptr(ax);
    a.mean = ptr(am);
    a.rstd = ptr(arstd);
    a.dx = ptr(adx);
    py::gil_scoped_release nogil;
    normkit::row_norm_backward(a, reinterpret_cast<normkit::Stream>(stream));
  });
}

}  // namespace

NK_PY_BINDINGS(bind_row_norm) {
  py::enum_<NormKind> kinds(m, "NormKind");
  kinds.value("layer", NormKind::Layer).value("rms", NormKind::RMS).value("ada", NormKind::Ada);
  const char* const names[3] = {"layer", "rms", "ada"};
  for (int k = 0; k < 3; ++k) g_kinds[k] = py::object(kinds.attr(names[k])).release();  // held for good

  using normkit::py_interop::def_fast;
  def_fast(m, "row_norm_forward", &row_norm_forward,
           "row_norm_forward(kind, normalized_ndim, eps, weight_offset, residual_scale, x, "
           "residual, x_bias, weight, bias, y, residual_out, mean, rstd, stream=0)");
  def_fast(m, "row_norm_backward", &row_norm_backward,
           "row_norm_backward(kind, normalized_ndim, weight_offset, residual_scale, dy, ds, x, "
           "mean, rstd, weight, dx, dresidual, dweight, dbias, dx_bias, stream=0)");
  def_fast(m, "ada_norm_forward", &ada_norm_forward,
           "ada_norm_forward(normalized_ndim, eps, k, scale, x, y, mean, rstd, stream=0)");
  def_fast(m, "ada_norm_backward", &ada_norm_backward,
           "ada_norm_backward(normalized_ndim, k, scale, dy, x, mean, rstd, dx, stream=0)");
}
