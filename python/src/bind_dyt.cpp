// normkit._core: Dynamic Tanh (SPEC §6).
#include <pybind11/pybind11.h>

#include "interop.hpp"
#include "normkit/dyt.hpp"

namespace py = pybind11;

namespace {

using normkit::py_interop::FastArgs;
using normkit::py_interop::fast_call;
using normkit::py_interop::Views;

PyObject* dyt_forward(PyObject*, PyObject* const* args, Py_ssize_t n) {
  return fast_call([&] {
    static constexpr const char* kNames[] = {"x", "alpha", "weight", "bias", "y", "channels_last",
        "stream"};
    const FastArgs p("dyt_forward", kNames, 5, args, n);
    using A = normkit::DytForwardArgs;
    A a;
    a.channels_last = p.flag(5, true);
    const uintptr_t stream = p.stream(6);
    const Views<A, 5> views(p, stream, a,
                            {{0, &A::x}, {1, &A::alpha}, {2, &A::weight}, {3, &A::bias},
                             {4, &A::y, true, "out"}});
    py::gil_scoped_release nogil;
    normkit::dyt_forward(a, reinterpret_cast<normkit::Stream>(stream));
  });
}

PyObject* dyt_backward(PyObject*, PyObject* const* args, Py_ssize_t n) {
  return fast_call([&] {
    static constexpr const char* kNames[] = {"dy", "x", "alpha", "weight", "dx", "dalpha",
        "dweight", "dbias", "channels_last", "stream"};
    const FastArgs p("dyt_backward", kNames, 8, args, n);
    using A = normkit::DytBackwardArgs;
    A a;
    a.channels_last = p.flag(8, true);
    const uintptr_t stream = p.stream(9);
    const Views<A, 8> views(p, stream, a,
                            {{0, &A::dy}, {1, &A::x}, {2, &A::alpha}, {3, &A::weight},
                             {4, &A::dx, true}, {5, &A::dalpha, true}, {6, &A::dweight, true},
                             {7, &A::dbias, true}});
    py::gil_scoped_release nogil;
    normkit::dyt_backward(a, reinterpret_cast<normkit::Stream>(stream));
  });
}

}  // namespace

NK_PY_BINDINGS(bind_dyt) {
  using normkit::py_interop::def_fast;
  def_fast(m, "dyt_forward", &dyt_forward,
           "dyt_forward(x, alpha, weight, bias, y, channels_last=True, stream=0)");
  def_fast(m, "dyt_backward", &dyt_backward,
           "dyt_backward(dy, x, alpha, weight, dx, dalpha, dweight, dbias, channels_last=True, "
           "stream=0)");
}
