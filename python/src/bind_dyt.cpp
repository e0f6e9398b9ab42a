// normkit._core: Dynamic Tanh (SPEC §6).
#include <pybind11/pybind11.h>

#include "interop.hpp"
#include "normkit/dyt.hpp"

namespace py = pybind11;
using normkit::py_interop::ArrayRef;
using normkit::py_interop::ptr;
using normkit::py_interop::to_view;

namespace {

void dyt_forward(py::handle x, py::handle alpha, py::handle weight, py::handle bias, py::handle y,
                 bool channels_last, uintptr_t stream) {
  ArrayRef ax, aa, aw, ab, ay;
  to_view(x, "x", stream, ax);
  to_view(alpha, "alpha", stream, aa);
  to_view(weight, "weight", stream, aw);
  to_view(bias, "bias", stream, ab);
  to_view(y, "out", stream, ay, true);
  normkit::DytForwardArgs a;
  a.channels_last = channels_last;
  a.x = ptr(ax);
  a.alpha = ptr(aa);
  a.weight = ptr(aw);
  a.bias = ptr(ab);
  a.y = ptr(ay);
  py::gil_scoped_release nogil;
  normkit::dyt_forward(a, reinterpret_cast<normkit::Stream>(stream));
}

void dyt_backward(py::handle dy, py::handle x, py::handle alpha, py::handle weight, py::handle dx,
                  py::handle dalpha, py::handle dweight, py::handle dbias, bool channels_last,
                  uintptr_t stream) {
  ArrayRef ady, ax, aa, aw, adx, ada, adw, adb;
  to_view(dy, "dy", stream, ady);
  to_view(x, "x", stream, ax);
  to_view(alpha, "alpha", stream, aa);
  to_view(weight, "weight", stream, aw);
  to_view(dx, "dx", stream, adx, true);
  to_view(dalpha, "dalpha", stream, ada, true);
  to_view(dweight, "dweight", stream, adw, true);
  to_view(dbias, "dbias", stream, adb, true);
  normkit::DytBackwardArgs a;
  a.channels_last = channels_last;
  a.dy = ptr(ady);
  a.x = ptr(ax);
  a.alpha = ptr(aa);
  a.weight = ptr(aw);
  a.dx = ptr(adx);
  a.dalpha = ptr(ada);
  a.dweight = ptr(adw);
  a.dbias = ptr(adb);
  py::gil_scoped_release nogil;
  normkit::dyt_backward(a, reinterpret_cast<normkit::Stream>(stream));
}

}  // namespace

NK_PY_BINDINGS(bind_dyt) {
  m.def("dyt_forward", &dyt_forward, py::arg("x"), py::arg("alpha"), py::arg("weight").none(true),
        py::arg("bias").none(true), py::arg("y"), py::arg("channels_last") = true,
        py::arg("stream") = 0);
  m.def("dyt_backward", &dyt_backward, py::arg("dy"), py::arg("x"), py::arg("alpha"),
        py::arg("weight").none(true), py::arg("dx"), py::arg("dalpha").none(true),
        py::arg("dweight").none(true), py::arg("dbias").none(true),
        py::arg("channels_last") = true, py::arg("stream") = 0);
}
