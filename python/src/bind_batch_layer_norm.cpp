// normkit._core: batch layer normalization (SPEC §7).
#include <pybind11/pybind11.h>

#include "interop.hpp"
#include "normkit/batch_layer_norm.hpp"

namespace py = pybind11;

namespace {

using normkit::py_interop::FastArgs;
using normkit::py_interop::fast_call;
using normkit::py_interop::Views;

normkit::Stream as_stream(uintptr_t s) { return reinterpret_cast<normkit::Stream>(s); }

PyObject* batch_layer_norm_forward(PyObject*, PyObject* const* args, Py_ssize_t n) {
  return fast_call([&] {
    static constexpr const char* kNames[] = {"x", "weight", "bias", "running_batch_mean",
        "running_batch_var", "running_feature_mean", "running_feature_var", "y", "batch_mean",
        "batch_rstd", "feature_mean", "feature_rstd", "batch_stats_of_input",
        "feature_stats_of_input", "momentum", "eps", "delta", "batch_size", "stream"};
    const FastArgs p("batch_layer_norm_forward", kNames, 18, args, n);
    using A = normkit::BatchLayerNormForwardArgs;
    A a;
    a.batch_stats_of_input = p.flag(12);
    a.feature_stats_of_input = p.flag(13);
    a.momentum = p.f64(14);
    a.eps = p.f64(15);
    a.delta = p.f64(16);
    a.batch_size = p.f64(17);
    const uintptr_t stream = p.stream(18);
    const Views<A, 12> views(
        p, stream, a,
        {{0, &A::x}, {1, &A::weight}, {2, &A::bias},
         {3, &A::running_batch_mean, a.batch_stats_of_input},
         {4, &A::running_batch_var, a.batch_stats_of_input},
         {5, &A::running_feature_mean, a.feature_stats_of_input},
         {6, &A::running_feature_var, a.feature_stats_of_input}, {7, &A::y, true, "out"},
         {8, &A::batch_mean, true}, {9, &A::batch_rstd, true}, {10, &A::feature_mean, true},
         {11, &A::feature_rstd, true}});
    py::gil_scoped_release nogil;
    normkit::batch_layer_norm_forward(a, as_stream(stream));
  });
}

PyObject* batch_layer_norm_backward(PyObject*, PyObject* const* args, Py_ssize_t n) {
  return fast_call([&] {
    static constexpr const char* kNames[] = {"dy", "x", "weight", "batch_mean", "batch_rstd",
        "feature_mean", "feature_rstd", "dx", "dweight", "dbias", "batch_stats_of_input",
        "feature_stats_of_input", "delta", "batch_size", "stream"};
    const FastArgs p("batch_layer_norm_backward", kNames, 14, args, n);
    using A = normkit::BatchLayerNormBackwardArgs;
    A a;
    a.batch_stats_of_input = p.flag(10);
    a.feature_stats_of_input = p.flag(11);
    a.delta = p.f64(12);
    a.batch_size = p.f64(13);
    const uintptr_t stream = p.stream(14);
    const Views<A, 10> views(p, stream, a,
                             {{0, &A::dy}, {1, &A::x}, {2, &A::weight}, {3, &A::batch_mean},
                              {4, &A::batch_rstd}, {5, &A::feature_mean}, {6, &A::feature_rstd},
                              {7, &A::dx, true}, {8, &A::dweight, true}, {9, &A::dbias, true}});
    py::gil_scoped_release nogil;
    normkit::batch_layer_norm_backward(a, as_stream(stream));
  });
}

}  // namespace

NK_PY_BINDINGS(bind_batch_layer_norm) {
  using normkit::py_interop::def_fast;
  def_fast(m, "batch_layer_norm_forward", &batch_layer_norm_forward,
           "batch_layer_norm_forward(x, weight, bias, running_batch_mean, running_batch_var, "
           "running_feature_mean, running_feature_var, y, batch_mean, batch_rstd, feature_mean, "
           "feature_rstd, batch_stats_of_input, feature_stats_of_input, momentum, eps, delta, "
           "batch_size, stream=0)");
  def_fast(m, "batch_layer_norm_backward", &batch_layer_norm_backward,
           "batch_layer_norm_backward(dy, x, weight, batch_mean, batch_rstd, feature_mean, "
           "feature_rstd, dx, dweight, dbias, batch_stats_of_input, feature_stats_of_input, "
           "delta, batch_size, stream=0)");
}
