// normkit._core: the parameter norms (SPEC §9–10): weight norm and spectral norm.
#include <pybind11/pybind11.h>

#include "interop.hpp"
#include "normkit/param_norm.hpp"

namespace py = pybind11;

namespace {

using normkit::py_interop::FastArgs;
using normkit::py_interop::fast_call;
using normkit::py_interop::Views;

normkit::Stream as_stream(uintptr_t s) { return reinterpret_cast<normkit::Stream>(s); }

PyObject* weight_norm_forward(PyObject*, PyObject* const* args, Py_ssize_t n) {
  return fast_call([&] {
    static constexpr const char* kNames[] = {"v", "g", "w", "norm", "channels_last", "stream"};
    const FastArgs p("weight_norm_forward", kNames, 4, args, n);
    using A = normkit::WeightNormArgs;
    A a;
    a.channels_last = p.flag(4, false);
    const uintptr_t stream = p.stream(5);
    const Views<A, 4> views(p, stream, a,
                            {{0, &A::v}, {1, &A::g}, {2, &A::w, true, "out"}, {3, &A::norm, true}});
    py::gil_scoped_release nogil;
    normkit::weight_norm_forward(a, as_stream(stream));
  });
}

PyObject* weight_norm_backward(PyObject*, PyObject* const* args, Py_ssize_t n) {
  return fast_call([&] {
    static constexpr const char* kNames[] = {"dw", "v", "g", "norm", "dv", "dg", "channels_last",
                                             "stream"};
    const FastArgs p("weight_norm_backward", kNames, 6, args, n);
    using A = normkit::WeightNormBackwardArgs;
    A a;
    a.channels_last = p.flag(6, false);
    const uintptr_t stream = p.stream(7);
    const Views<A, 6> views(p, stream, a,
                            {{0, &A::dw}, {1, &A::v}, {2, &A::g}, {3, &A::norm},
                             {4, &A::dv, true}, {5, &A::dg, true}});
    py::gil_scoped_release nogil;
    normkit::weight_norm_backward(a, as_stream(stream));
  });
}

PyObject* spectral_norm_forward(PyObject*, PyObject* const* args, Py_ssize_t n) {
  return fast_call([&] {
    static constexpr const char* kNames[] = {"weight", "u", "v", "out", "sigma",
                                             "n_power_iterations", "eps", "stream"};
    const FastArgs p("spectral_norm_forward", kNames, 7, args, n);
    using A = normkit::SpectralNormArgs;
    A a;
    a.n_power_iterations = p.i64(5);
    a.eps = p.f64(6);
    const uintptr_t stream = p.stream(7);
    const bool iterate = a.n_power_iterations > 0;
    const Views<A, 5> views(p, stream, a,
                            {{0, &A::weight}, {1, &A::u, iterate}, {2, &A::v, iterate},
                             {3, &A::out, true}, {4, &A::sigma, true}});
    py::gil_scoped_release nogil;
    normkit::spectral_norm_forward(a, as_stream(stream));
  });
}

PyObject* spectral_norm_backward(PyObject*, PyObject* const* args, Py_ssize_t n) {
  return fast_call([&] {
    static constexpr const char* kNames[] = {"dout", "weight", "u", "v", "sigma", "dweight",
                                             "stream"};
    const FastArgs p("spectral_norm_backward", kNames, 6, args, n);
    using A = normkit::SpectralNormBackwardArgs;
    A a;
    const uintptr_t stream = p.stream(6);
    const Views<A, 6> views(p, stream, a,
                            {{0, &A::dout}, {1, &A::weight}, {2, &A::u}, {3, &A::v},
                             {4, &A::sigma}, {5, &A::dweight, true}});
    py::gil_scoped_release nogil;
    normkit::spectral_norm_backward(a, as_stream(stream));
  });
}

}  // namespace

NK_PY_BINDINGS(bind_param_norm) {
  using normkit::py_interop::def_fast;
  def_fast(m, "weight_norm_forward", &weight_norm_forward,
           "weight_norm_forward(v, g, w, norm, channels_last=False, stream=0)");
  def_fast(m, "weight_norm_backward", &weight_norm_backward,
           "weight_norm_backward(dw, v, g, norm, dv, dg, channels_last=False, stream=0)");
  def_fast(m, "spectral_norm_forward", &spectral_norm_forward,
           "spectral_norm_forward(weight, u, v, out, sigma, n_power_iterations, eps, stream=0)");
  def_fast(m, "spectral_norm_backward", &spectral_norm_backward,
           "spectral_norm_backward(dout, weight, u, v, sigma, dweight, stream=0)");
}
