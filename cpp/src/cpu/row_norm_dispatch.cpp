// The row-norm family's CPU dispatch: per-call preparation of the parameters, the thread
// count, streaming-store and workspace decisions; then the selected ISA's kernel. Compiled
// without ISA flags.
#include <memory>
#include <vector>

#include "common/backends.hpp"
#include "common/row_norm_math.hpp"
#include "cpu/dispatch.hpp"
#include "cpu/kernels.hpp"
#include "normkit/error.hpp"

namespace normkit::cpu {
namespace {
int backward_nacc(const detail::RowNormBackwardProblem& p) {
  return (p.dweight != nullptr) + (p.dbias != nullptr) + (p.dx_bias != nullptr);
}
}  // namespace
}  // namespace normkit::cpu

namespace normkit::detail {

void cpu_row_norm_forward(const RowNormProblem& p) {
  if (p.rows == 0) return;
  if (p.H == 0) {  // empty rows: mean 0, variance 0
    const bool f64 = p.x_dtype == DType::Float64;
    for (int64_t r = 0; r < p.rows; ++r) {
      if (p.mean) f64 ? void(static_cast<double*>(p.mean)[r] = 0) : void(static_cast<float*>(p.mean)[r] = 0);
      if (p.rstd) {
        if (f64)
          static_cast<double*>(p.rstd)[r] = inv_std<double>(0.0, p.eps);
        else
          static_cast<float*>(p.rstd)[r] = inv_std<float>(0.0f, float(p.eps));
      }
    }
    return;
  }
  cpu::ParamBuf wbuf, bbuf, xbbuf;
  cpu::ForwardPrep prep;
  prep.weight = cpu::as_compute(p.weight, p.weight_dtype, p.x_dtype, p.H, p.weight_offset, wbuf);
  prep.bias = cpu::as_compute(p.bias, p.bias_dtype, p.x_dtype, p.H, 0.0, bbuf);
  prep.x_bias = cpu::as_compute(p.x_bias, p.x_bias_dtype, p.x_dtype, p.H, 0.0, xbbuf);
  const int64_t elems = p.rows * p.H;
  prep.threads = cpu::threads_for(elems, p.rows);
  prep.nontemporal = elems * dtype_size(p.x_dtype) >= cpu::nontemporal_threshold();
  cpu::current().row_norm_forward(p, prep);
}

size_t cpu_row_norm_backward_workspace_size(const RowNormBackwardProblem& p) {
  const int nacc = cpu::backward_nacc(p);
  if (nacc == 0 || p.rows == 0 || p.H == 0) return 0;
  const cpu::Blocks b = cpu::block_layout(p.rows, p.H);
  return size_t(b.nblocks) * size_t(nacc) * size_t(p.H) *
         size_t(dtype_size(cpu::compute_dtype(p.x_dtype)));
}

void cpu_row_norm_backward(const RowNormBackwardProblem& p) {
  if (p.H == 0) return;
  if (p.rows == 0) {  // Σ over no rows
    cpu::zero_fill(p.dweight, p.dweight_dtype, p.H);
    cpu::zero_fill(p.dbias, p.dbias_dtype, p.H);
    cpu::zero_fill(p.dx_bias, p.dx_bias_dtype, p.H);
    return;
  }
  cpu::ParamBuf wbuf;
  cpu::BackwardPrep prep;
  prep.weight = cpu::as_compute(p.weight, p.weight_dtype, p.x_dtype, p.H, p.weight_offset, wbuf);
  const cpu::Blocks b = cpu::block_layout(p.rows, p.H);
  prep.nblocks = b.nblocks;
  prep.rows_per_block = b.rows_per_block;
  prep.nacc = cpu::backward_nacc(p);
  const cpu::Scratch scratch(p.workspace, p.workspace_bytes, cpu_row_norm_backward_workspace_size(p), "row_norm_backward");
  prep.partials = scratch.get();
  const int64_t elems = p.rows * p.H;
  prep.threads = cpu::threads_for(elems, prep.nblocks);
  prep.nontemporal = elems * dtype_size(p.x_dtype) >= cpu::nontemporal_threshold();
  cpu::current().row_norm_backward(p, prep);
}

}  // namespace normkit::detail
