// normkit._core: the row-norm family (layer norm, RMS norm, fused residual add + norm,
// AdaNorm).
#include <pybind11/pybind11.h>

#include "interop.hpp"
#include "normkit/row_norm.hpp"

namespace py = pybind11;

namespace {

using normkit::NormKind;
using normkit::py_interop::FastArgs;
using normkit::py_interop::fast_call;
using normkit::py_interop::Views;

// NormKind's Python members (NormKind.layer, .rms, .ada), in NormKind's order: the kind
// crosses the binding as one of these objects, never as a bare int.
py::handle g_kinds[3];
py::handle g_kind_type;
constexpr NormKind kKinds[3] = {NormKind::Layer, NormKind::RMS, NormKind::Ada};

NormKind kind_at(const FastArgs& a, int i) {
  return kKinds[a.member(i, g_kinds, 3, g_kind_type, "a normkit._core.NormKind")];
}

// The name of the rstd argument in errors: RMS norm's statistic is rrms.
const char* stat_name(NormKind kind) { return kind == NormKind::RMS ? "rrms" : "rstd"; }

PyObject* row_norm_forward(PyObject*, PyObject* const* args, Py_ssize_t n) {
  return fast_call([&] {
    static constexpr const char* kNames[] = {"kind", "normalized_ndim", "eps", "weight_offset",
        "residual_scale", "x", "residual", "x_bias", "weight", "bias", "y", "residual_out", "mean",
        "rstd", "stream"};
    const FastArgs p("row_norm_forward", kNames, 14, args, n);
    using A = normkit::RowNormForwardArgs;
    A a;
    a.kind = kind_at(p, 0);
    a.normalized_ndim = p.i32(1);
    a.eps = p.f64(2);
    a.weight_offset = p.f64(3);
    a.residual_scale = p.f64(4);
    const uintptr_t stream = p.stream(14);
    const Views<A, 9> views(p, stream, a,
                            {{5, &A::x}, {6, &A::residual}, {7, &A::x_bias}, {8, &A::weight},
                             {9, &A::bias}, {10, &A::y, true, "out"}, {11, &A::residual_out, true},
                             {12, &A::mean, true}, {13, &A::rstd, true, stat_name(a.kind)}});
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
    using A = normkit::RowNormBackwardArgs;
    A a;
    a.kind = kind_at(p, 0);
    a.normalized_ndim = p.i32(1);
    a.weight_offset = p.f64(2);
    a.residual_scale = p.f64(3);
    const uintptr_t stream = p.stream(15);
    const Views<A, 11> views(
        p, stream, a,
        {{4, &A::dy}, {5, &A::ds}, {6, &A::x}, {7, &A::mean}, {8, &A::rstd, false, stat_name(a.kind)},
         {9, &A::weight}, {10, &A::dx, true}, {11, &A::dresidual, true}, {12, &A::dweight, true},
         {13, &A::dbias, true}, {14, &A::dx_bias, true}});
    py::gil_scoped_release nogil;
    normkit::row_norm_backward(a, reinterpret_cast<normkit::Stream>(stream));
  });
}

PyObject* ada_norm_forward(PyObject*, PyObject* const* args, Py_ssize_t n) {
  return fast_call([&] {
    static constexpr const char* kNames[] = {"normalized_ndim", "eps", "k", "scale", "x", "y",
        "mean", "rstd", "stream"};
    const FastArgs p("ada_norm_forward", kNames, 8, args, n);
    using A = normkit::RowNormForwardArgs;
    A a;
    a.kind = NormKind::Ada;
    a.normalized_ndim = p.i32(0);
    a.eps = p.f64(1);
    a.ada_k = p.f64(2);
    a.ada_scale = p.f64(3);
    const uintptr_t stream = p.stream(8);
    const Views<A, 4> views(p, stream, a,
                            {{4, &A::x}, {5, &A::y, true, "out"}, {6, &A::mean, true},
                             {7, &A::rstd, true}});
    py::gil_scoped_release nogil;
    normkit::row_norm_forward(a, reinterpret_cast<normkit::Stream>(stream));
  });
}

PyObject* ada_norm_backward(PyObject*, PyObject* const* args, Py_ssize_t n) {
  return fast_call([&] {
    static constexpr const char* kNames[] = {"normalized_ndim", "k", "scale", "dy", "x", "mean",
        "rstd", "dx", "stream"};
    const FastArgs p("ada_norm_backward", kNames, 8, args, n);
    using A = normkit::RowNormBackwardArgs;
    A a;
    a.kind = NormKind::Ada;
    a.normalized_ndim = p.i32(0);
    a.ada_k = p.f64(1);
    a.ada_scale = p.f64(2);
    const uintptr_t stream = p.stream(8);
    const Views<A, 5> views(p, stream, a,
                            {{3, &A::dy}, {4, &A::x}, {5, &A::mean}, {6, &A::rstd},
                             {7, &A::dx, true}});
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
  g_kind_type = py::object(kinds).release();

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
