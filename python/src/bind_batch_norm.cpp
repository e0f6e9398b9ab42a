// normkit._core: batch norm (SPEC §4), the fused forward / backward and the split phases.
#include <pybind11/pybind11.h>

#include "interop.hpp"
#include "normkit/batch_norm.hpp"

namespace py = pybind11;

namespace {

using normkit::py_interop::FastArgs;
using normkit::py_interop::fast_call;
using normkit::py_interop::Views;

normkit::Stream as_stream(uintptr_t s) { return reinterpret_cast<normkit::Stream>(s); }

PyObject* batch_norm_forward(PyObject*, PyObject* const* args, Py_ssize_t n) {
  return fast_call([&] {
    static constexpr const char* kNames[] = {"x", "weight", "bias", "running_mean", "running_var",
        "y", "save_mean", "save_rstd", "training", "momentum", "eps", "channels_last", "stream"};
    const FastArgs p("batch_norm_forward", kNames, 11, args, n);
    using A = normkit::BatchNormForwardArgs;
    A a;
    a.training = p.flag(8);
    a.momentum = p.f64(9);
    a.eps = p.f64(10);
    a.channels_last = p.flag(11, false);
    const uintptr_t stream = p.stream(12);
    const Views<A, 8> views(p, stream, a,
                            {{0, &A::x}, {1, &A::weight}, {2, &A::bias},
                             {3, &A::running_mean, a.training}, {4, &A::running_var, a.training},
                             {5, &A::y, true, "out"}, {6, &A::save_mean, true},
                             {7, &A::save_rstd, true}});
    py::gil_scoped_release nogil;
    normkit::batch_norm_forward(a, as_stream(stream));
  });
}

PyObject* batch_norm_backward(PyObject*, PyObject* const* args, Py_ssize_t n) {
  return fast_call([&] {
    static constexpr const char* kNames[] = {"dy", "x", "mean", "rstd", "weight", "dx",
        "dweight", "dbias", "training", "channels_last", "stream"};
    const FastArgs p("batch_norm_backward", kNames, 9, args, n);
    using A = normkit::BatchNormBackwardArgs;
    A a;
    a.training = p.flag(8);
    a.channels_last = p.flag(9, false);
    const uintptr_t stream = p.stream(10);
    const Views<A, 8> views(p, stream, a,
                            {{0, &A::dy}, {1, &A::x}, {2, &A::mean}, {3, &A::rstd},
                             {4, &A::weight}, {5, &A::dx, true}, {6, &A::dweight, true},
                             {7, &A::dbias, true}});
    py::gil_scoped_release nogil;
    normkit::batch_norm_backward(a, as_stream(stream));
  });
}

PyObject* batch_norm_stats(PyObject*, PyObject* const* args, Py_ssize_t n) {
  return fast_call([&] {
    static constexpr const char* kNames[] = {"x", "mean", "m2", "channels_last", "stream"};
    const FastArgs p("batch_norm_stats", kNames, 3, args, n);
    using A = normkit::BatchNormStatsArgs;
    A a;
    a.channels_last = p.flag(3, false);
    const uintptr_t stream = p.stream(4);
    const Views<A, 3> views(p, stream, a, {{0, &A::x}, {1, &A::mean, true}, {2, &A::m2, true}});
    py::gil_scoped_release nogil;
    normkit::batch_norm_stats(a, as_stream(stream));
  });
}

PyObject* moments_merge(PyObject*, PyObject* const* args, Py_ssize_t n) {
  return fast_call([&] {
    static constexpr const char* kNames[] = {"counts", "means", "m2s", "count", "mean", "m2",
        "stream"};
    const FastArgs p("moments_merge", kNames, 6, args, n);
    using A = normkit::MomentsMergeArgs;
    A a;
    const uintptr_t stream = p.stream(6);
    const Views<A, 6> views(p, stream, a,
                            {{0, &A::counts}, {1, &A::means}, {2, &A::m2s}, {3, &A::count, true},
                             {4, &A::mean, true}, {5, &A::m2, true}});
    py::gil_scoped_release nogil;
    normkit::moments_merge(a, as_stream(stream));
  });
}

PyObject* batch_norm_apply(PyObject*, PyObject* const* args, Py_ssize_t n) {
  return fast_call([&] {
    static constexpr const char* kNames[] = {"x", "mean", "rstd", "weight", "bias", "y",
        "channels_last", "stream"};
    const FastArgs p("batch_norm_apply", kNames, 6, args, n);
    using A = normkit::BatchNormApplyArgs;
    A a;
    a.channels_last = p.flag(6, false);
    const uintptr_t stream = p.stream(7);
    const Views<A, 6> views(p, stream, a,
                            {{0, &A::x}, {1, &A::mean}, {2, &A::rstd}, {3, &A::weight},
                             {4, &A::bias}, {5, &A::y, true, "out"}});
    py::gil_scoped_release nogil;
    normkit::batch_norm_apply(a, as_stream(stream));
  });
}

PyObject* batch_norm_backward_reduce(PyObject*, PyObject* const* args, Py_ssize_t n) {
  return fast_call([&] {
    static constexpr const char* kNames[] = {"dy", "x", "mean", "rstd", "sum_dy", "sum_dy_xhat",
        "channels_last", "stream"};
    const FastArgs p("batch_norm_backward_reduce", kNames, 6, args, n);
    using A = normkit::BatchNormBackwardReduceArgs;
    A a;
    a.channels_last = p.flag(6, false);
    const uintptr_t stream = p.stream(7);
    const Views<A, 6> views(p, stream, a,
                            {{0, &A::dy}, {1, &A::x}, {2, &A::mean}, {3, &A::rstd},
                             {4, &A::sum_dy, true}, {5, &A::sum_dy_xhat, true}});
    py::gil_scoped_release nogil;
    normkit::batch_norm_backward_reduce(a, as_stream(stream));
  });
}

PyObject* batch_norm_backward_apply(PyObject*, PyObject* const* args, Py_ssize_t n) {
  return fast_call([&] {
    static constexpr const char* kNames[] = {"dy", "x", "mean", "rstd", "weight", "sum_dy",
        "sum_dy_xhat", "count", "dx", "channels_last", "stream"};
    const FastArgs p("batch_norm_backward_apply", kNames, 9, args, n);
    using A = normkit::BatchNormBackwardApplyArgs;
    A a;
    a.count = p.f64(7);
    a.channels_last = p.flag(9, false);
    const uintptr_t stream = p.stream(10);
    const Views<A, 8> views(p, stream, a,
                            {{0, &A::dy}, {1, &A::x}, {2, &A::mean}, {3, &A::rstd},
                             {4, &A::weight}, {5, &A::sum_dy}, {6, &A::sum_dy_xhat},
                             {8, &A::dx, true}});
    py::gil_scoped_release nogil;
    normkit::batch_norm_backward_apply(a, as_stream(stream));
  });
}

}  // namespace

NK_PY_BINDINGS(bind_batch_norm) {
  using normkit::py_interop::def_fast;
  def_fast(m, "batch_norm_forward", &batch_norm_forward,
           "batch_norm_forward(x, weight, bias, running_mean, running_var, y, save_mean, "
           "save_rstd, training, momentum, eps, channels_last=False, stream=0)");
  def_fast(m, "batch_norm_backward", &batch_norm_backward,
           "batch_norm_backward(dy, x, mean, rstd, weight, dx, dweight, dbias, training, "
           "channels_last=False, stream=0)");
  def_fast(m, "batch_norm_stats", &batch_norm_stats,
           "batch_norm_stats(x, mean, m2, channels_last=False, stream=0)");
  def_fast(m, "moments_merge", &moments_merge,
           "moments_merge(counts, means, m2s, count, mean, m2, stream=0)");
  def_fast(m, "batch_norm_apply", &batch_norm_apply,
           "batch_norm_apply(x, mean, rstd, weight, bias, y, channels_last=False, stream=0)");
  def_fast(m, "batch_norm_backward_reduce", &batch_norm_backward_reduce,
           "batch_norm_backward_reduce(dy, x, mean, rstd, sum_dy, sum_dy_xhat, "
           "channels_last=False, stream=0)");
  def_fast(m, "batch_norm_backward_apply", &batch_norm_backward_apply,
           "batch_norm_backward_apply(dy, x, mean, rstd, weight, sum_dy, sum_dy_xhat, count, dx, "
           "channels_last=False, stream=0)");
}
