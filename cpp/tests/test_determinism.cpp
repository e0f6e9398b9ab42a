// SPEC §0 determinism: the same inputs give the same bits whatever the thread count, from
// run to run, and whatever other rows share the call (batch invariance). Parameter
// gradients (dweight, dbias, dx_bias) included.
#include <cstring>
#include <string>
#include <vector>

#include "determinism.hpp"
#include "nk_test.hpp"
#include "normkit/normkit.hpp"
#include "reference.hpp"
#include "row_norm_case.hpp"

namespace {

using namespace nk_case;
using normkit::DType;
using normkit::NormKind;
using normkit::TensorView;

// Rows × H large enough that the kernels split the work over threads (more than 64K
// elements: see Note [Threads for small work] in cpu/dispatch.cpp) and the parameter
// gradients over several row blocks.
std::vector<Case> big_cases(DType dt) {
  std::vector<Case> v;
  for (NormKind kind : {NormKind::Layer, NormKind::RMS}) {
    Case c;
    c.kind = kind;
    c.dt = dt;
    c.pdt = (dt == DType::Float64) ? dt : DType::Float32;
    c.lead = {131};
    c.row = {1000};
    c.fused = c.x_bias = c.store_s = c.ds = true;
    v.push_back(c);
    Case d = c;  // long rows, few of them, padded
    d.lead = {37};
    d.row = {4097};
    d.pad = 3;
    d.fused = d.x_bias = d.store_s = d.ds = false;
    d.user_workspace = true;
    v.push_back(d);
  }
  for (const int64_t H : {1000, 4097}) {  // AdaNorm: no parameters, so no column sums
    Case a;
    a.ada();
    a.dt = dt;
    a.lead = {H == 1000 ? int64_t(131) : int64_t(37)};
    a.row = {H};
    a.pad = 3;
    v.push_back(a);
  }
  return v;
}

void thread_invariance(DType dt) {
  RuntimeGuard guard;
  for (const std::string& isa : normkit::available_cpu_isas()) {
    normkit::set_cpu_isa(isa);
    uint64_t seed = 4242;
    for (const Case& c : big_cases(dt)) {
      ++seed;
      nk_det::expect_thread_invariant(
          [&](int threads) {
            normkit::set_num_threads(threads);
            Run r;
            run_case(c, seed, r);
            return output_bytes(c, r);
          },
          c.describe() + " isa=" + isa);
    }
  }
}

// A view of rows [first, first + count) of a [N, H] HostArray (one lead dim).
TensorView rows_of(const HostArray& a, int64_t first, int64_t count) {
  TensorView v = *a.ptr();
  v.shape[0] = count;
  v.data = static_cast<char*>(v.data) + a.row_offset(first) * normkit::dtype_size(v.dtype);
  return v;
}

std::vector<unsigned char> row_bytes(const HostArray& a, int64_t r) {
  const int64_t esz = normkit::dtype_size(a.dtype());
  const unsigned char* p = static_cast<const unsigned char*>(a.ptr()->data) + a.row_offset(r) * esz;
  return std::vector<unsigned char>(p, p + a.H() * esz);
}

std::vector<unsigned char> elem_bytes(const HostArray& a, int64_t i) {
  const int64_t esz = normkit::dtype_size(a.dtype());
  const unsigned char* p = static_cast<const unsigned char*>(a.ptr()->data) + i * esz;
  return std::vector<unsigned char>(p, p + esz);
}

// Each row's y, s, mean, rstd and dx are the same bits whether the row is normalized
// alone, in a sub-batch that starts elsewhere, or with the whole batch.
void batch_invariance(DType dt, NormKind kind, bool cuda) {
  const int64_t N = 41, H = 1000;
  Layout L;
  L.lead = {N};
  L.row = {H};
  L.pad = 1;
  Layout P;
  P.row = {H};
  const DType pdt = dt == DType::Float64 ? dt : DType::Float32;
  const DType st = normkit::stat_dtype(dt);
  Rng rng(99 + uint64_t(dt));
  HostArray x(dt, L), r(dt, L), w(pdt, P), b(pdt, P), dy(dt, L);
  x.fill_normal(rng, 3.0, 2.0);
  r.fill_normal(rng);
  w.fill_normal(rng, 1.0, 0.3);
  b.fill_normal(rng);
  dy.fill_normal(rng);
  const bool layer = kind == NormKind::Layer, ada = kind == NormKind::Ada;

  struct Out {
    HostArray y, s, mean, rstd, dx, dw;
  };
  auto run = [&](int64_t first, int64_t count, Out& o) {
    Layout Lc = L;
    Lc.lead = {count};
    o.y = HostArray(dt, Lc);
    o.s = HostArray(dt, Lc);
    o.dx = HostArray(dt, Lc);
    o.mean = HostArray::compact(st, {count});
    o.rstd = HostArray::compact(st, {count});
    o.dw = HostArray(pdt, P);
    OnDevice dev(cuda, {&x, &r, &w, &b, &dy, &o.y, &o.s, &o.dx, &o.mean, &o.rstd, &o.dw});
    const TensorView xv = rows_of(x, first, count), rv = rows_of(r, first, count),
                     dyv = rows_of(dy, first, count);
    normkit::RowNormForwardArgs f;
    f.kind = kind;
    f.eps = 1e-5;
    f.x = &xv;
    // AdaNorm has no fused add and no parameters: it normalizes x itself.
    f.residual = ada ? nullptr : &rv;
    f.weight = ada ? nullptr : w.ptr();
    f.bias = layer ? b.ptr() : nullptr;
    f.y = o.y.ptr();
    f.residual_out = ada ? nullptr : o.s.ptr();
    f.mean = layer || ada ? o.mean.ptr() : nullptr;
    f.rstd = o.rstd.ptr();
    normkit::row_norm_forward(f);
    normkit::RowNormBackwardArgs bw;
    bw.kind = kind;
    bw.dy = &dyv;
    bw.x = ada ? &xv : o.s.ptr();
    bw.mean = layer || ada ? o.mean.ptr() : nullptr;
    bw.rstd = o.rstd.ptr();
    bw.weight = ada ? nullptr : w.ptr();
    bw.dx = o.dx.ptr();
    bw.dweight = ada ? nullptr : o.dw.ptr();
    normkit::row_norm_backward(bw);
  };

  Out all;
  run(0, N, all);
  const std::string desc = std::string(normkit::dtype_name(dt)) +
                           (layer ? " layer" : ada ? " ada" : " rms") +
                           (cuda ? std::string(" on=cuda") : " isa=" + normkit::cpu_isa());
  struct Sub {
    int64_t first, count;
  };
  // {0, N} is the same call again: run-to-run determinism, dweight included.
  for (const Sub& sub : {Sub{0, N}, Sub{0, 1}, Sub{17, 1}, Sub{N - 1, 1}, Sub{5, 23}, Sub{1, N - 1}}) {
    Out part;
    run(sub.first, sub.count, part);
    if (sub.count == N) {
      NK_CHECK(part.dw.bytes() == all.dw.bytes()) << "dweight differs between two runs " << desc;
    }
    for (int64_t i = 0; i < sub.count; ++i) {
      const int64_t k = sub.first + i;
      const std::string where = desc + " row " + std::to_string(k) + " in rows [" +
                                std::to_string(sub.first) + ", +" + std::to_string(sub.count) + ")";
      NK_CHECK(row_bytes(part.y, i) == row_bytes(all.y, k)) << "y " << where;
      if (!ada) {
        NK_CHECK(row_bytes(part.s, i) == row_bytes(all.s, k)) << "residual_out " << where;
      }
      NK_CHECK(row_bytes(part.dx, i) == row_bytes(all.dx, k)) << "dx " << where;
      NK_CHECK(elem_bytes(part.rstd, i) == elem_bytes(all.rstd, k)) << "rstd " << where;
      if (layer || ada) {
        NK_CHECK(elem_bytes(part.mean, i) == elem_bytes(all.mean, k)) << "mean " << where;
      }
    }
  }
}

}  // namespace

NK_TEST(determinism, threads_float32) { thread_invariance(DType::Float32); }
NK_TEST(determinism, threads_float64) { thread_invariance(DType::Float64); }
NK_TEST(determinism, threads_float16) { thread_invariance(DType::Float16); }
NK_TEST(determinism, threads_bfloat16) { thread_invariance(DType::BFloat16); }

NK_TEST(determinism, batch_invariance) {
  RuntimeGuard guard;
  for (const std::string& isa : normkit::available_cpu_isas()) {
    normkit::set_cpu_isa(isa);
    for (int threads : {1, 2}) {
      normkit::set_num_threads(threads);
      for (DType dt : {DType::Float32, DType::Float64, DType::Float16, DType::BFloat16})
        for (NormKind kind : {NormKind::Layer, NormKind::RMS, NormKind::Ada})
          batch_invariance(dt, kind, false);
    }
  }
}

// The same on the CUDA backend: a row's bits do not depend on the batch, the grid or the
// order the blocks run in (the emulator's schedules differ in that order).
NK_TEST(determinism_cuda, batch_invariance) {
  require_cuda();
  for (DType dt : {DType::Float32, DType::Float64, DType::Float16, DType::BFloat16})
    for (NormKind kind : {NormKind::Layer, NormKind::RMS, NormKind::Ada})
      batch_invariance(dt, kind, true);
}
