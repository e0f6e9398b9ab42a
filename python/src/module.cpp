// normkit._core — the thin pybind11 layer: Python objects -> TensorViews -> core entry
// points. No math and no validation beyond conversion live here (the core checks
// everything and names the argument). Only the core's public headers are included.
// This file holds the module, the error translation and the runtime functions; each family's
// functions are in python/src/bind_<family>.cpp.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>

#include "interop.hpp"
#include "normkit/normkit.hpp"

namespace py = pybind11;
using normkit::py_interop::ArrayRef;
using normkit::py_interop::to_view;

namespace {

void bench_copy(py::handle src, py::handle dst, bool nontemporal) {
  ArrayRef as, ad;
  to_view(src, "src", 0, as);
  to_view(dst, "dst", 0, ad, true);
  if (!as.present || !ad.present) throw normkit::Error(normkit::ErrorKind::Value, "_bench_copy: src and dst are required");
  const int64_t n = as.view.numel() * normkit::dtype_size(as.view.dtype);
  if (n != ad.view.numel() * normkit::dtype_size(ad.view.dtype) || as.view.device != normkit::DeviceType::CPU ||
      ad.view.device != normkit::DeviceType::CPU)
    throw normkit::Error(normkit::ErrorKind::Value, "_bench_copy: src, dst: expected CPU arrays of the same byte size");
  py::gil_scoped_release nogil;
  normkit::bench_copy(as.view.data, ad.view.data, n, nontemporal);
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "normkit core bindings (internal; use the normkit package)";

  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const normkit::Error&) {
      normkit::py_interop::set_python_error(std::current_exception());
    }
  });

  // The families' bindings, each in its own file (bind_<family>.cpp), registered there.
  normkit::py_interop::bind_all(m);
  m.def("_bench_copy", &bench_copy, py::arg("src"), py::arg("dst"), py::arg("nontemporal") = false);
  // Statistics allocation for the torch eager path (no Python-level torch call).
  m.def("empty_stat", &normkit::py_interop::empty_stat, py::arg("x"), py::arg("nd"));

  m.def("set_num_threads", &normkit::set_num_threads, py::arg("n"));
  m.def("set_default_num_threads", &normkit::set_default_num_threads, py::arg("n"));
  m.def("get_num_threads", &normkit::get_num_threads);
  m.def("cpu_isa", &normkit::cpu_isa);
  m.def("set_cpu_isa", &normkit::set_cpu_isa, py::arg("name"));
  m.def("available_cpu_isas", &normkit::available_cpu_isas);
  m.def("compiled_cpu_isas", &normkit::compiled_cpu_isas);
  m.def("cuda_available", &normkit::cuda_available);
  m.def("cuda_compiled", &normkit::cuda_compiled);
  m.def("cuda_emulated", &normkit::cuda_emulated);
  m.def("cuda_architectures", &normkit::cuda_architectures);
  m.def("cuda_status", &normkit::cuda_status);
  m.def("openmp_info", &normkit::openmp_info);
  m.def("openmp_team_size", &normkit::openmp_team_size, py::arg("n"));
  m.def("compiler_info", &normkit::compiler_info);
  m.attr("__version__") = NORMKIT_VERSION_STRING;
}
