// Batch norm (SPEC §4) through the C++ API against a float64 reference written here, on
// every CPU ISA: channels first and last, float32 / float64 / bfloat16 with float32
// parameters, training (running statistics updated) and evaluation, forward and backward;
// thread and run-to-run invariance; bad input naming the argument. The batch_norm_cuda group
// runs the same cases with every array on the CUDA device (emulated in CI).
#include <cmath>
#include <string>
#include <vector>

#include "determinism.hpp"
#include "nk_test.hpp"
#include "normkit/normkit.hpp"
#include "reference.hpp"
#include "row_norm_case.hpp"

namespace {

using nk_case::OnDevice;
using nk_case::require_cuda;
using nk_case::RuntimeGuard;
using nk_case::targets;
using nk_ref::HostArray;
using nk_ref::Rng;
using normkit::DType;

struct BnCase {
  DType dt = DType::Float32, pdt = DType::Float32;
  bool channels_last = false, training = true, cuda = false;
  std::vector<int64_t> shape;  // (N, C, *) or (N, *, C)
  int64_t C() const { return channels_last ? shape.back() : shape[1]; }
  int64_t numel() const {
    int64_t n = 1;
    for (int64_t s : shape) n *= s;
    return n;
  }
  // The channel of flat element i.
  int64_t chan(int64_t i) const {
    if (channels_last) return i % C();
    int64_t inner = 1;
    for (size_t d = 2; d < shape.size(); ++d) inner *= shape[d];
    return (i / inner) % C();
  }
};

struct BnRun {
  HostArray x, dy, w, b, rm, rv, y, sm, sr, dx, dw, db;
};

void run_bn(const BnCase& c, uint64_t seed, BnRun& r) {
  const int64_t C = c.C();
  r.x = HostArray::compact(c.dt, c.shape);
  r.dy = HostArray::compact(c.dt, c.shape);
  r.y = HostArray::compact(c.dt, c.shape);
  r.dx = HostArray::compact(c.dt, c.shape);
  for (HostArray* a : {&r.w, &r.b, &r.rm, &r.rv, &r.dw, &r.db}) *a = HostArray::compact(c.pdt, {C});
  const DType st = c.dt == DType::Float64 ? DType::Float64 : DType::Float32;
  r.sm = HostArray::compact(st, {C});
  r.sr = HostArray::compact(st, {C});
  Rng rng(seed);
  for (int64_t i = 0; i < c.numel(); ++i) r.x.set(0, i, 3.0 + 1.5 * rng.normal());
  for (int64_t i = 0; i < c.numel(); ++i) r.dy.set(0, i, rng.normal());
  for (int64_t j = 0; j < C; ++j) {
    r.w.set(0, j, 1.0 + 0.3 * rng.normal());
    r.b.set(0, j, 0.3 * rng.normal());
    r.rm.set(0, j, 0.5 * rng.normal());
    r.rv.set(0, j, 0.5 + rng.uniform());
  }
  OnDevice dev(c.cuda, {&r.x, &r.dy, &r.y, &r.dx, &r.w, &r.b, &r.rm, &r.rv, &r.sm, &r.sr, &r.dw, &r.db});
  normkit::BatchNormForwardArgs f;
  f.channels_last = c.channels_last;
  f.x = r.x.ptr();
  f.weight = r.w.ptr();
  f.bias = r.b.ptr();
  f.running_mean = r.rm.ptr();
  f.running_var = r.rv.ptr();
  f.training = c.training;
  f.momentum = 0.25;
  f.y = r.y.ptr();
  f.save_mean = r.sm.ptr();
  f.save_rstd = r.sr.ptr();
  normkit::batch_norm_forward(f);
  normkit::BatchNormBackwardArgs g;
  g.channels_last = c.channels_last;
  g.training = c.training;
  g.dy = r.dy.ptr();
  g.x = r.x.ptr();
  g.mean = r.sm.ptr();
  g.rstd = r.sr.ptr();
  g.weight = r.w.ptr();
  g.dx = r.dx.ptr();
  g.dweight = r.dw.ptr();
  g.dbias = r.db.ptr();
  normkit::batch_norm_backward(g);
}

double tol(DType dt) { return dt == DType::Float64 ? 1e-10 : dt == DType::Float32 ? 2e-5 : 2e-2; }

void check_bn(const BnCase& c, uint64_t seed, const std::string& desc) {
  // The reference from the same stored inputs: rerun the generator into float64 copies.
  BnRun r;
  HostArray rm0 = HostArray::compact(c.pdt, {c.C()}), rv0 = HostArray::compact(c.pdt, {c.C()});
  {
    BnRun tmp;
    BnCase e = c;
    e.training = false;  // read the running statistics only
    run_bn(e, seed, tmp);
    for (int64_t j = 0; j < c.C(); ++j) rm0.set(0, j, tmp.rm.get(0, j)), rv0.set(0, j, tmp.rv.get(0, j));
  }
  run_bn(c, seed, r);
  const int64_t C = c.C(), n = c.numel(), M = n / C;
  const size_t nc = size_t(C);
  std::vector<double> mean(nc, 0.0), var(nc, 0.0);
  for (int64_t i = 0; i < n; ++i) mean[size_t(c.chan(i))] += r.x.get(0, i) / double(M);
  for (int64_t i = 0; i < n; ++i) {
    const double d = r.x.get(0, i) - mean[size_t(c.chan(i))];
    var[size_t(c.chan(i))] += d * d / double(M);
  }
  std::vector<double> mu(nc, 0.0), rs(nc, 0.0), sdy(nc, 0.0), sdyx(nc, 0.0);
  for (int64_t j = 0; j < C; ++j) {
    mu[size_t(j)] = c.training ? mean[size_t(j)] : rm0.get(0, j);
    rs[size_t(j)] = 1.0 / std::sqrt((c.training ? var[size_t(j)] : rv0.get(0, j)) + 1e-5);
    NK_CHECK(std::fabs(r.sr.get(0, j) - rs[size_t(j)]) <= tol(c.dt) * rs[size_t(j)] + 1e-6) << desc << " rstd";
    if (c.training) {
      const double erm = 0.75 * rm0.get(0, j) + 0.25 * mean[size_t(j)];
      const double erv = 0.75 * rv0.get(0, j) + 0.25 * var[size_t(j)] * double(M) / double(M - 1);
      NK_CHECK(std::fabs(r.rm.get(0, j) - erm) <= 1e-5 * (1 + std::fabs(erm))) << desc << " running_mean";
      NK_CHECK(std::fabs(r.rv.get(0, j) - erv) <= 1e-5 * (1 + std::fabs(erv))) << desc << " running_var";
    }
  }
  for (int64_t i = 0; i < n; ++i) {
    const int64_t j = c.chan(i);
    const double xh = (r.x.get(0, i) - mu[size_t(j)]) * rs[size_t(j)];
    const double ey = xh * r.w.get(0, j) + r.b.get(0, j);
    NK_CHECK(std::fabs(r.y.get(0, i) - ey) <= tol(c.dt) * (1 + std::fabs(ey))) << desc << " y at " << i;
    sdy[size_t(j)] += r.dy.get(0, i);
    sdyx[size_t(j)] += r.dy.get(0, i) * xh;
  }
  for (int64_t i = 0; i < n; ++i) {
    const int64_t j = c.chan(i);
    const double xh = (r.x.get(0, i) - mu[size_t(j)]) * rs[size_t(j)];
    const double g = r.w.get(0, j) * rs[size_t(j)];
    const double edx = c.training ? g * (r.dy.get(0, i) - sdy[size_t(j)] / double(M) - xh * sdyx[size_t(j)] / double(M))
                                  : g * r.dy.get(0, i);
    NK_CHECK(std::fabs(r.dx.get(0, i) - edx) <= tol(c.dt) * (1 + std::fabs(edx))) << desc << " dx at " << i;
  }
  for (int64_t j = 0; j < C; ++j) {
    const double s = std::sqrt(double(M));
    NK_CHECK(std::fabs(r.dw.get(0, j) - sdyx[size_t(j)]) <= tol(c.dt) * (s + std::fabs(sdyx[size_t(j)]))) << desc << " dweight";
    NK_CHECK(std::fabs(r.db.get(0, j) - sdy[size_t(j)]) <= tol(c.dt) * (s + std::fabs(sdy[size_t(j)]))) << desc << " dbias";
  }
}

std::vector<BnCase> cases() {
  std::vector<BnCase> v;
  const std::vector<std::vector<int64_t>> first = {{2, 3, 5, 7}, {33, 1, 3}, {4, 64, 9}, {5, 7}, {3, 5, 1, 2, 3}};
  const std::vector<std::vector<int64_t>> last = {{2, 5, 7, 3}, {33, 3, 1}, {4, 9, 64}, {5, 7}, {2, 3, 257}};
  for (DType dt : {DType::Float32, DType::Float64, DType::BFloat16})
    for (bool training : {true, false})
      for (bool cl : {false, true})
        for (const auto& s : cl ? last : first) {
          BnCase c;
          c.dt = dt;
          c.pdt = dt == DType::BFloat16 ? DType::Float32 : dt;
          c.channels_last = cl;
          c.training = training;
          c.shape = s;
          v.push_back(c);
        }
  return v;
}

void run_all(bool cuda) {
  if (cuda) require_cuda();
  RuntimeGuard guard;
  for (const auto& t : targets(cuda)) {
    t.use();
    uint64_t seed = 11;
    for (BnCase c : cases()) {
      c.cuda = t.cuda;
      check_bn(c, ++seed, std::string(normkit::dtype_name(c.dt)) + (c.channels_last ? " last" : " first") +
                              (c.training ? " train" : " eval") + " on " + t.name());
    }
  }
}

NK_TEST(batch_norm, matches_reference) { run_all(false); }
NK_TEST(batch_norm_cuda, matches_reference) { run_all(true); }

NK_TEST(determinism, batch_norm) {
  RuntimeGuard guard;
  for (const auto& t : targets(false)) {
    t.use();
    for (bool cl : {false, true}) {
      BnCase c;
      c.dt = DType::BFloat16;
      c.pdt = DType::Float32;
      c.channels_last = cl;
      c.shape = cl ? std::vector<int64_t>{9, 17, 15, 64} : std::vector<int64_t>{9, 64, 17, 15};
      nk_det::expect_thread_invariant(
          [&](int threads) {
            normkit::set_num_threads(threads);
            BnRun r;
            run_bn(c, 5, r);
            std::vector<unsigned char> b;
            for (const HostArray* a : {&r.y, &r.sm, &r.sr, &r.rm, &r.rv, &r.dx, &r.dw, &r.db}) {
              const auto ab = a->bytes();
              b.insert(b.end(), ab.begin(), ab.end());
            }
            return b;
          },
          std::string(cl ? "last" : "first") + " on " + t.name());
    }
  }
}

NK_TEST(errors, batch_norm) {
  BnCase c;
  c.shape = {4, 3, 5};
  BnRun r;
  run_bn(c, 1, r);
  normkit::BatchNormForwardArgs f;
  f.x = r.x.ptr();
  f.y = r.y.ptr();
  f.training = true;
  HostArray w4 = HostArray::compact(DType::Float32, {4});
  f.weight = w4.ptr();
  NK_CHECK_THROWS(normkit::batch_norm_forward(f), "batch_norm: weight: expected shape (3,)");
  f.weight = nullptr;
  f.momentum = std::nan("");
  NK_CHECK_THROWS(normkit::batch_norm_forward(f), "batch_norm: momentum: expected a finite number");
  f.momentum = 0.1;
  f.running_mean = r.rm.ptr();
  NK_CHECK_THROWS(normkit::batch_norm_forward(f), "running_var: needed with running_mean");
  HostArray rv64 = HostArray::compact(DType::Float64, {3});
  f.running_var = rv64.ptr();
  NK_CHECK_THROWS(normkit::batch_norm_forward(f), "running_var: expected dtype float32");
  f.running_mean = f.running_var = nullptr;
  HostArray x1 = HostArray::compact(DType::Float32, {1, 3}), y1 = HostArray::compact(DType::Float32, {1, 3});
  f.x = x1.ptr();
  f.y = y1.ptr();
  NK_CHECK_THROWS(normkit::batch_norm_forward(f), "training needs more than one value per channel");
  f.training = false;
  NK_CHECK_THROWS(normkit::batch_norm_forward(f), "running_mean: required when training=False");
  normkit::BatchNormBackwardApplyArgs a;
  a.dy = a.x = r.x.ptr();
  a.mean = a.rstd = a.sum_dy = a.sum_dy_xhat = r.sm.ptr();
  a.dx = r.dx.ptr();
  a.count = 0.0;
  NK_CHECK_THROWS(normkit::batch_norm_backward_apply(a), "count: expected >= 1");
}

}  // namespace
