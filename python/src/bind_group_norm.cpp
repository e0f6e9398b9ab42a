// normkit._core: group and instance norm (SPEC §5).
#include <pybind11/pybind11.h>

#include "interop.hpp"
#include "normkit/group_norm.hpp"

namespace py = pybind11;

namespace {

using normkit::py_interop::FastArgs;
using normkit::py_interop::fast_call;
using normkit::py_interop::Views;

normkit::Stream as_stream(uintptr_t s) { return reinterpret_cast<normkit::Stream>(s); }

PyObject* group_norm_forward(PyObject*, PyObject* const* args, Py_ssize_t n) {
  return fast_call([&] {
    static constexpr const char* kNames[] = {"x", "weight", "bias", "y", "save_mean",
        "save_rstd", "running_mean", "running_var", "num_groups", "eps", "momentum",
        "channels_last", "stream"};
    const FastArgs p("group_norm_forward", kNames, 10, args, n);
    using A = normkit::GroupNormForwardArgs;
    A a;
    a.num_groups = p.i64(8);
    a.eps = p.f64(9);
    a.momentum = n > 10 && p.obj(10).ptr() != Py_None ? p.f64(10) : 0.1;
    a.channels_last = p.flag(11, false);
    const uintptr_t stream = p.stream(12);
    const Views<A, 8> views(p, stream, a,
                            {{0, &A::x}, {1, &A::weight}, {2, &A::bias}, {3, &A::y, true, "out"},
                             {4, &A::save_mean, true}, {5, &A::save_rstd, true},
                             {6, &A::running_mean, true}, {7, &A::running_var, true}});
    py::gil_scoped_release nogil;
    normkit::group_norm_forward(a, as_stream(stream));
  });
}

PyObject* group_norm_backward(PyObject*, PyObject* const* args, Py_ssize_t n) {
  return fast_call([&] {
    static constexpr const char* kNames[] = {"dy", "x", "mean", "rstd", "weight", "dx",
        "dweight", "dbias", "num_groups", "channels_last", "stream"};
    const FastArgs p("group_norm_backward", kNames, 9, args, n);
    using A = normkit::GroupNormBackwardArgs;
    A a;
    a.num_groups = p.i64(8);
    a.channels_last = p.flag(9, false);
    const uintptr_t stream = p.stream(10);
    const Views<A, 8> views(p, stream, a,
                            {{0, &A::dy}, {1, &A::x}, {2, &A::mean}, {3, &A::rstd},
                             {4, &A::weight}, {5, &A::dx, true}, {6, &A::dweight, true},
                             {7, &A::dbias, true}});
    py::gil_scoped_release nogil;
    normkit::group_norm_backward(a, as_stream(stream));
  });
}

}  // namespace

NK_PY_BINDINGS(bind_group_norm) {
  using normkit::py_interop::def_fast;
  def_fast(m, "group_norm_forward", &group_norm_forward,
           "group_norm_forward(x, weight, bias, y, save_mean, save_rstd, running_mean, "
           "running_var, num_groups, eps, momentum=0.1, channels_last=False, stream=0)");
  def_fast(m, "group_norm_backward", &group_norm_backward,
           "group_norm_backward(dy, x, mean, rstd, weight, dx, dweight, dbias, num_groups, "
           "channels_last=False, stream=0)");
}
