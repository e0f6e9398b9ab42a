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

void row_norm_forward(normkit::NormKind kind, int normalized_ndim, double eps, double weight_offset,
                      double residual_scale, py::handle x, py::handle residual, py::handle x_bias,
                      py::handle weight, py::handle bias, py::handle y, py::handle residual_out,
                      py::handle mean, py::handle rstd, uintptr_t stream) {
  ArrayRef ax, ar, axb, aw, ab, ay, as, am, arstd;
  to_view(x, "x", stream, ax);
  to_view(residual, "residual", stream, ar);
  to_view(x_bias, "x_bias", stream, axb);
  to_view(weight, "weight", stream, aw);
  to_view(bias, "bias", stream, ab);
  to_view(y, "out", stream, ay, true);
  to_view(residual_out, "residual_out", stream, as, true);
  to_view(mean, "mean", stream, am, true);
  to_view(rstd, kind == normkit::NormKind::RMS ? "rrms" : "rstd", stream, arstd, true);
  normkit::RowNormForwardArgs a;
  a.kind = kind;  // an enum: an unknown value cannot cross the binding
  a.normalized_ndim = normalized_ndim;
  a.eps = eps;
  a.weight_offset = weight_offset;
  a.residual_scale = residual_scale;
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
}

void row_norm_backward(normkit::NormKind kind, int normalized_ndim, double weight_offset, double residual_scale,
                       py::handle dy, py::handle ds, py::handle x, py::handle mean,
                       py::handle rstd, py::handle weight, py::handle dx, py::handle dresidual,
                       py::handle dweight, py::handle dbias, py::handle dx_bias,
                       uintptr_t stream) {
  ArrayRef ady, ads, ax, am, arstd, aw, adx, adr, adw, adb, adxb;
  to_view(dy, "dy", stream, ady);
  to_view(ds, "ds", stream, ads);
  to_view(x, "x", stream, ax);
  to_view(mean, "mean", stream, am);
  to_view(rstd, kind == normkit::NormKind::RMS ? "rrms" : "rstd", stream, arstd);
  to_view(weight, "weight", stream, aw);
  to_view(dx, "dx", stream, adx, true);
  to_view(dresidual, "dresidual", stream, adr, true);
  to_view(dweight, "dweight", stream, adw, true);
  to_view(dbias, "dbias", stream, adb, true);
  to_view(dx_bias, "dx_bias", stream, adxb, true);
  normkit::RowNormBackwardArgs a;
  a.kind = kind;  // an enum: an unknown value cannot cross the binding
  a.normalized_ndim = normalized_ndim;
  a.weight_offset = weight_offset;
  a.residual_scale = residual_scale;
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
}

void ada_norm_forward(int normalized_ndim, double eps, double k, double scale, py::handle x,
                      py::handle y, py::handle mean, py::handle rstd, uintptr_t stream) {
  ArrayRef ax, ay, am, arstd;
  to_view(x, "x", stream, ax);
  to_view(y, "out", stream, ay, true);
  to_view(mean, "mean", stream, am, true);
  to_view(rstd, "rstd", stream, arstd, true);
  normkit::RowNormForwardArgs a;
  a.kind = normkit::NormKind::Ada;
  a.normalized_ndim = normalized_ndim;
  a.eps = eps;
  a.ada_k = k;
  a.ada_scale = scale;
  a.x = ptr(ax);
  a.y = ptr(ay);
  a.mean = ptr(am);
  a.rstd = ptr(arstd);
  py::gil_scoped_release nogil;
  normkit::row_norm_forward(a, reinterpret_cast<normkit::Stream>(stream));
}

void ada_norm_backward(int normalized_ndim, double k, double scale, py::handle dy, py::handle x,
                       py::handle mean, py::handle rstd, py::handle dx, uintptr_t stream) {
  ArrayRef ady, ax, am, arstd, adx;
  to_view(dy, "dy", stream, ady);
  to_view(x, "x", stream, ax);
  to_view(mean, "mean", stream, am);
  to_view(rstd, "rstd", stream, arstd);
  to_view(dx, "dx", stream, adx, true);
  normkit::RowNormBackwardArgs a;
  a.kind = normkit::NormKind::Ada;
  a.normalized_ndim = normalized_ndim;
  a.ada_k = k;
  a.ada_scale = scale;
  a.dy = ptr(ady);
  a.x = ptr(ax);
  a.mean = ptr(am);
  a.rstd = ptr(arstd);
  a.dx = ptr(adx);
  py::gil_scoped_release nogil;
  normkit::row_norm_backward(a, reinterpret_cast<normkit::Stream>(stream));
}

}  // namespace

NK_PY_BINDINGS(bind_row_norm) {
  py::enum_<normkit::NormKind>(m, "NormKind")
      .value("layer", normkit::NormKind::Layer)
      .value("rms", normkit::NormKind::RMS)
      .value("ada", normkit::NormKind::Ada);

  m.def("row_norm_forward", &row_norm_forward, py::arg("kind"), py::arg("normalized_ndim"),
        py::arg("eps"), py::arg("weight_offset"), py::arg("residual_scale"), py::arg("x"),
        py::arg("residual").none(true), py::arg("x_bias").none(true), py::arg("weight").none(true),
        py::arg("bias").none(true), py::arg("y"), py::arg("residual_out").none(true),
        py::arg("mean").none(true), py::arg("rstd").none(true), py::arg("stream") = 0);
  m.def("row_norm_backward", &row_norm_backward, py::arg("kind"), py::arg("normalized_ndim"),
        py::arg("weight_offset"), py::arg("residual_scale"), py::arg("dy"),
        py::arg("ds").none(true), py::arg("x"), py::arg("mean").none(true), py::arg("rstd"),
        py::arg("weight").none(true), py::arg("dx"), py::arg("dresidual").none(true),
        py::arg("dweight").none(true), py::arg("dbias").none(true),
        py::arg("dx_bias").none(true), py::arg("stream") = 0);
  m.def("ada_norm_forward", &ada_norm_forward, py::arg("normalized_ndim"), py::arg("eps"),
        py::arg("k"), py::arg("scale"), py::arg("x"), py::arg("y"), py::arg("mean").none(true),
        py::arg("rstd").none(true), py::arg("stream") = 0);
  m.def("ada_norm_backward", &ada_norm_backward, py::arg("normalized_ndim"), py::arg("k"),
        py::arg("scale"), py::arg("dy"), py::arg("x"), py::arg("mean"), py::arg("rstd"),
        py::arg("dx"), py::arg("stream") = 0);
}
