// DyT's CPU dispatch: parameters as compute-type arrays, threads, streaming stores and the
// backward's scratch; then the selected ISA's kernel. Compiled without ISA flags.
#include <memory>
#include <vector>

#include "common/backends.hpp"
#include "cpu/dispatch.hpp"
#include "normkit/error.hpp"

namespace normkit::cpu {
namespace {

double scalar_value(const void* p, DType dt) {
  switch (dt) {
    case DType::Float32: return double(*static_cast<const float*>(p));
    case DType::Float64: return *static_cast<const double*>(p);
    case DType::Float16: return double(half_to_float(*static_cast<const half_t*>(p)));
    case DType::BFloat16: return double(bf16_to_float(*static_cast<const bfloat16_t*>(p)));
  }
  return 0.0;
}

// α rounded to the compute type first (float for all but float64 x), as every backend uses it.
double alpha_value(const detail::DytLayout& p, const void* alpha, DType dt) {
  const double a = scalar_value(alpha, dt);
  return p.x_dtype == DType::Float64 ? a : double(float(a));
}

int64_t partial_count(const detail::DytBackwardProblem& p, const Blocks& b) {
  const int nacc = detail::dyt_sums(p).count();
  return p.per_row ? p.rows * nacc : b.nblocks * nacc * p.C;
}

}  // namespace
}  // namespace normkit::cpu

namespace normkit::detail {

void cpu_dyt_forward(const DytProblem& p) {
  cpu::ParamBuf wbuf, bbuf;
  cpu::DytPrep prep;
  prep.alpha = cpu::alpha_value(p, p.alpha, p.alpha_dtype);
  prep.weight = cpu::as_compute(p.weight, p.weight_dtype, p.x_dtype, p.C, 0.0, wbuf);
  prep.bias = cpu::as_compute(p.bias, p.bias_dtype, p.x_dtype, p.C, 0.0, bbuf);
  const int64_t elems = p.rows * p.width;
  prep.threads = cpu::threads_for(elems, p.rows);
  prep.nontemporal = elems * dtype_size(p.x_dtype) >= cpu::nontemporal_threshold();
  cpu::current().dyt_forward(p, prep);
}

size_t cpu_dyt_backward_workspace_size(const DytBackwardProblem& p) {
  if (dyt_sums(p).count() == 0 || p.rows == 0 || p.width == 0) return 0;
  const cpu::Blocks b = cpu::block_layout(p.rows, p.width);
  return size_t(cpu::partial_count(p, b)) * size_t(dtype_size(cpu::compute_dtype(p.x_dtype)));
}

void cpu_dyt_backward(const DytBackwardProblem& p) {
  if (p.rows == 0 || p.width == 0) {  // Σ over no elements
    cpu::zero_fill(p.dweight, p.dweight_dtype, p.C);
    cpu::zero_fill(p.dbias, p.dbias_dtype, p.C);
    cpu::zero_fill(p.dalpha, p.alpha_dtype, 1);
    return;
  }
  cpu::ParamBuf wbuf;
  cpu::DytPrep prep;
  prep.alpha = cpu::alpha_value(p, p.alpha, p.alpha_dtype);
  prep.weight = cpu::as_compute(p.weight, p.weight_dtype, p.x_dtype, p.C, 0.0, wbuf);
  const cpu::Blocks b = cpu::block_layout(p.rows, p.width);
  prep.nblocks = b.nblocks;
  prep.rows_per_block = b.rows_per_block;
  prep.nacc = dyt_sums(p).count();
  const cpu::Scratch scratch(p.workspace, p.workspace_bytes, cpu_dyt_backward_workspace_size(p), "dyt_backward");
  prep.partials = scratch.get();
  const int64_t elems = p.rows * p.width;
  prep.threads = cpu::threads_for(elems, p.per_row ? p.rows : prep.nblocks);
  prep.nontemporal = elems * dtype_size(p.x_dtype) >= cpu::nontemporal_threshold();
  cpu::current().dyt_backward(p, prep);
}

}  // namespace normkit::detail
