// normkit._core: Dynamic Tanh (SPEC §6).
#include <pybind11/pybind11.h>

#include "interop.hpp"
#include "normkit/dyt.hpp"

namespace py = pybind11;
using normkit::py_interop::ArrayRef;
using normkit::py_interop::ptr;
using normkit::py_interop::to_view;

namespace {

using normkit::py_interop::FastArgs;
using normkit::py_interop::fast_call;

PyObject* dyt_forward(PyObject*, PyObject* const* args, Py_ssize_t n) {
  return fast_call([&] {
    static constexpr const char* kNames[] = {"x", "alpha", "weight", "bias", "y", "channels_last",
        "stream"};
    const FastArgs p("dyt_forward", kNames, 6, args, n);
    const uintptr_t stream = p.stream(6);
    ArrayRef ax, aa, aw, ab, ay;
    p.view(0, stream, ax);
    p.view(1, stream, aa);
    p.view(2, stream, aw);
    p.view(3, stream, ab);
    p.view(4, stream, ay, true, "out");
    normkit::DytForwardArgs a;
    a.channels_last = p.flag(5);
    a.x = ptr(ax);
    a.alpha = ptr(aa);
    a.weight = ptr(aw);
    a.bias = ptr(ab);
    a.y = ptr(ay);
    py::gil_scoped_release nogil;
    normkit::dyt_forward(a, reinterpret_cast<normkit::Stream>(stream));
  });
}

PyObject* dyt_backward(PyObject*, PyObject* const* args, Py_ssize_t n) {
  return fast_call([&] {
    static constexpr const char* kNames[] = {"dy", "x", "alpha", "weight", "dx", "dalpha",
        "dweight", "dbias", "channels_last", "stream"};
    const FastArgs p("dyt_backward", kNames, 9, args, n);
    const uintptr_t stream = p.stream(9);
    ArrayRef ady, ax, aa, aw, adx, ada, adw, adb;
    p.view(0, stream, ady);
    p.view(1, stream, ax);
    p.view(2, stream, aa);
    p.view(3, stream, aw);
    p.view(4, stream, adx, true);
    p.view(5, stream, ada, true);
    p.view(6, stream, adw, true);
    p.view(7, stream, adb, true);
    normkit::DytBackwardArgs a;
    a.channels_last = p.flag(8);
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
  });
}

}  // namespace

NK_PY_BINDINGS(bind_dyt) {
  using normkit::py_interop::def_fast;
  def_fast(m, "dyt_forward", &dyt_forward,
           "dyt_forward(x, alpha, weight, bias, y, channels_last, stream=0)");
  def_fast(m, "dyt_backward", &dyt_backward,
           "dyt_backward(dy, x, alpha, weight, dx, dalpha, dweight, dbias, channels_last, "
           "stream=0)");
}
