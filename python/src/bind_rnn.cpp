// normkit._core: the layer-normalized recurrent cells (SPEC §12) and the CPU BLAS they use.
#include <pybind11/pybind11.h>

#include "interop.hpp"
#include "normkit/blas.hpp"
#include "normkit/rnn.hpp"

namespace py = pybind11;

namespace {

using normkit::py_interop::FastArgs;
using normkit::py_interop::fast_call;
using normkit::py_interop::Views;

normkit::RnnCell cell_of(const FastArgs& p, int i) {
  const int c = p.i32(i);
  if (c < 0 || c > 3) p.fail(i, "0 (lstm), 1 (gru), 2 (rnn_tanh) or 3 (rnn_relu)");
  return static_cast<normkit::RnnCell>(c);
}

PyObject* rnn_forward(PyObject*, PyObject* const* args, Py_ssize_t n) {
  return fast_call([&] {
    static constexpr const char* kNames[] = {
        "cell", "x", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh", "ln_x_weight", "ln_x_bias",
        "ln_h_weight", "ln_h_bias", "ln_c_weight", "ln_c_bias", "zoneout_mask_h",
        "zoneout_mask_c", "y", "h_n", "c_n", "reserve", "per_gate", "eps", "reverse",
        "zoneout_h", "zoneout_c", "stream"};
    const FastArgs p("rnn_forward", kNames, 25, args, n);
    using A = normkit::RnnForwardArgs;
    A a;
    a.cell = cell_of(p, 0);
    a.per_gate = p.flag(20);
    a.eps = p.f64(21);
    a.reverse = p.flag(22);
    a.zoneout_h = p.f64(23);
    a.zoneout_c = p.f64(24);
    const uintptr_t stream = p.stream(25);
    const Views<A, 19> views(
        p, stream, a,
        {{1, &A::x}, {2, &A::h0}, {3, &A::c0}, {4, &A::w_ih}, {5, &A::w_hh}, {6, &A::b_ih},
         {7, &A::b_hh}, {8, &A::ln_x_weight}, {9, &A::ln_x_bias}, {10, &A::ln_h_weight},
         {11, &A::ln_h_bias}, {12, &A::ln_c_weight}, {13, &A::ln_c_bias},
         {14, &A::zoneout_mask_h}, {15, &A::zoneout_mask_c}, {16, &A::y, true},
         {17, &A::h_n, true}, {18, &A::c_n, true}, {19, &A::reserve, true}});
    py::gil_scoped_release nogil;
    normkit::rnn_forward(a, reinterpret_cast<normkit::Stream>(stream));
  });
}

PyObject* rnn_backward(PyObject*, PyObject* const* args, Py_ssize_t n) {
  return fast_call([&] {
    static constexpr const char* kNames[] = {
        "cell", "dy", "dh_n", "dc_n", "x", "w_ih", "w_hh", "b_ih", "b_hh", "ln_x_weight",
        "ln_x_bias", "ln_h_weight", "ln_h_bias", "ln_c_weight", "ln_c_bias", "zoneout_mask_h",
        "zoneout_mask_c", "reserve", "dx", "dh0", "dc0", "dw_ih", "dw_hh", "db_ih", "db_hh",
        "dln_x_weight", "dln_x_bias", "dln_h_weight", "dln_h_bias", "dln_c_weight",
        "dln_c_bias", "per_gate", "eps", "reverse", "zoneout_h", "zoneout_c", "stream"};
    const FastArgs p("rnn_backward", kNames, 36, args, n);
    using A = normkit::RnnBackwardArgs;
    A a;
    a.cell = cell_of(p, 0);
    a.per_gate = p.flag(31);
    a.eps = p.f64(32);
    a.reverse = p.flag(33);
    a.zoneout_h = p.f64(34);
    a.zoneout_c = p.f64(35);
    const uintptr_t stream = p.stream(36);
    const Views<A, 30> views(
        p, stream, a,
        {{1, &A::dy}, {2, &A::dh_n}, {3, &A::dc_n}, {4, &A::x}, {5, &A::w_ih}, {6, &A::w_hh},
         {7, &A::b_ih}, {8, &A::b_hh}, {9, &A::ln_x_weight}, {10, &A::ln_x_bias},
         {11, &A::ln_h_weight}, {12, &A::ln_h_bias}, {13, &A::ln_c_weight},
         {14, &A::ln_c_bias}, {15, &A::zoneout_mask_h}, {16, &A::zoneout_mask_c},
         {17, &A::reserve}, {18, &A::dx, true}, {19, &A::dh0, true}, {20, &A::dc0, true},
         {21, &A::dw_ih, true}, {22, &A::dw_hh, true}, {23, &A::db_ih, true},
         {24, &A::db_hh, true}, {25, &A::dln_x_weight, true}, {26, &A::dln_x_bias, true},
         {27, &A::dln_h_weight, true}, {28, &A::dln_h_bias, true},
         {29, &A::dln_c_weight, true}, {30, &A::dln_c_bias, true}});
    py::gil_scoped_release nogil;
    normkit::rnn_backward(a, reinterpret_cast<normkit::Stream>(stream));
  });
}

}  // namespace

NK_PY_BINDINGS(bind_rnn) {
  using normkit::py_interop::def_fast;
  def_fast(m, "rnn_forward", &rnn_forward,
           "rnn_forward(cell, x, h0, c0, w_ih, w_hh, b_ih, b_hh, ln_x_weight, ln_x_bias, "
           "ln_h_weight, ln_h_bias, ln_c_weight, ln_c_bias, zoneout_mask_h, zoneout_mask_c, y, "
           "h_n, c_n, reserve, per_gate, eps, reverse, zoneout_h, zoneout_c, stream=0)");
  def_fast(m, "rnn_backward", &rnn_backward,
           "rnn_backward(cell, dy, dh_n, dc_n, x, w_ih, w_hh, b_ih, b_hh, ln_x_weight, "
           "ln_x_bias, ln_h_weight, ln_h_bias, ln_c_weight, ln_c_bias, zoneout_mask_h, "
           "zoneout_mask_c, reserve, dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh, dln_x_weight, "
           "dln_x_bias, dln_h_weight, dln_h_bias, dln_c_weight, dln_c_bias, per_gate, eps, "
           "reverse, zoneout_h, zoneout_c, stream=0)");
  m.def(
      "rnn_reserve_size",
      [](int cell, int64_t T, int64_t B, int64_t H) {
        return normkit::rnn_reserve_size(static_cast<normkit::RnnCell>(cell), T, B, H);
      },
      py::arg("cell"), py::arg("T"), py::arg("B"), py::arg("H"));
  m.def("rnn_profile", &normkit::rnn_profile, py::arg("on"));
  m.def("rnn_release_scratch", &normkit::rnn_release_scratch);
  m.def("rnn_profile_read", [] {
    const normkit::RnnProfile r = normkit::rnn_profile_read();
    return py::make_tuple(r.gemm_seconds, r.step_seconds);
  });
  m.def("load_cpu_blas", &normkit::load_cpu_blas, py::arg("path"), py::arg("prefix") = "");
  m.def("cpu_blas_available", &normkit::cpu_blas_available);
  m.def("load_cublas", &normkit::load_cublas, py::arg("path"));
  m.def("cublas_available", &normkit::cublas_available);
  m.def("cublas_info", &normkit::cublas_info);
  m.def("cpu_blas_info", &normkit::cpu_blas_info);
}
