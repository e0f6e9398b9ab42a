// Group norm, instance norm (SPEC §5) and batch layer norm (SPEC §7) through the C++ API
// against float64 references written here, on every CPU ISA (groups group_norm.,
// batch_layer_norm.) and on the CUDA device (group_norm_cuda., batch_layer_norm_cuda.;
// emulated in CI): channels first and last, float32 / float64 / bfloat16 with float32
// parameters, instance norm's running statistics, every BLN statistics mode, forward and
// backward; thread and run-to-run invariance; bad input naming the argument.
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

double tol(DType dt) { return dt == DType::Float64 ? 1e-10 : dt == DType::Float32 ? 2e-5 : 2e-2; }
DType stat_of(DType dt) { return dt == DType::Float64 ? DType::Float64 : DType::Float32; }

int64_t numel(const std::vector<int64_t>& s) {
  int64_t n = 1;
  for (int64_t v : s) n *= v;
  return n;
}

// ---- group / instance norm ------------------------------------------------------------

struct GnCase {
  DType dt = DType::Float32, pdt = DType::Float32;
  bool channels_last = false, cuda = false, running = false;
  int64_t G = 1;
  std::vector<int64_t> shape;
  int64_t N() const { return shape[0]; }
  int64_t C() const { return channels_last ? shape.back() : shape[1]; }
  int64_t S() const { return numel(shape) / (N() * C()); }
  // (n, c) of flat element i.
  void nc(int64_t i, int64_t& n, int64_t& c) const {
    if (channels_last) {
      c = i % C();
      n = i / (S() * C());
    } else {
      c = (i / S()) % C();
      n = i / (S() * C());
    }
  }
};

struct GnRun {
  HostArray x, dy, w, b, y, sm, sr, dx, dw, db, rm, rv;
};

void run_gn(const GnCase& c, uint64_t seed, GnRun& r) {
  const int64_t C = c.C();
  for (HostArray* a : {&r.x, &r.dy, &r.y, &r.dx}) *a = HostArray::compact(c.dt, c.shape);
  for (HostArray* a : {&r.w, &r.b, &r.dw, &r.db, &r.rm, &r.rv}) *a = HostArray::compact(c.pdt, {C});
  r.sm = HostArray::compact(stat_of(c.dt), {c.N(), c.G});
  r.sr = HostArray::compact(stat_of(c.dt), {c.N(), c.G});
  Rng rng(seed);
  for (int64_t i = 0; i < numel(c.shape); ++i) r.x.set(0, i, 2.0 + 1.5 * rng.normal());
  for (int64_t i = 0; i < numel(c.shape); ++i) r.dy.set(0, i, rng.normal());
  for (int64_t j = 0; j < C; ++j) {
    r.w.set(0, j, 1.0 + 0.3 * rng.normal());
    r.b.set(0, j, 0.3 * rng.normal());
    r.rm.set(0, j, 0.1 * double(j));
    r.rv.set(0, j, 1.0 + 0.1 * double(j));
  }
  OnDevice dev(c.cuda, {&r.x, &r.dy, &r.y, &r.dx, &r.w, &r.b, &r.sm, &r.sr, &r.dw, &r.db, &r.rm, &r.rv});
  normkit::GroupNormForwardArgs f;
  f.channels_last = c.channels_last;
  f.x = r.x.ptr();
  f.num_groups = c.G;
  f.weight = r.w.ptr();
  f.bias = r.b.ptr();
  f.y = r.y.ptr();
  f.save_mean = r.sm.ptr();
  f.save_rstd = r.sr.ptr();
  if (c.running) {
    f.running_mean = r.rm.ptr();
    f.running_var = r.rv.ptr();
    f.momentum = 0.25;
  }
  normkit::group_norm_forward(f);
  normkit::GroupNormBackwardArgs g;
  g.channels_last = c.channels_last;
  g.dy = r.dy.ptr();
  g.x = r.x.ptr();
  g.num_groups = c.G;
  g.mean = r.sm.ptr();
  g.rstd = r.sr.ptr();
  g.weight = r.w.ptr();
  g.dx = r.dx.ptr();
  g.dweight = r.dw.ptr();
  g.dbias = r.db.ptr();
  normkit::group_norm_backward(g);
}

void check_gn(const GnCase& c, uint64_t seed, const std::string& desc) {
  GnRun r;
  run_gn(c, seed, r);
  const int64_t N = c.N(), C = c.C(), G = c.G, Cg = C / G, S = c.S(), n = numel(c.shape);
  const double M = double(Cg * S);
  std::vector<double> mean(static_cast<size_t>(N * G), 0.0), var(static_cast<size_t>(N * G), 0.0);
  std::vector<double> cm(static_cast<size_t>(N * C), 0.0), cv(static_cast<size_t>(N * C), 0.0);  // per instance
  auto grp = [&](int64_t i) { int64_t nn, cc; c.nc(i, nn, cc); return nn * G + cc / Cg; };
  auto ins = [&](int64_t i) { int64_t nn, cc; c.nc(i, nn, cc); return nn * C + cc; };
  auto ch = [&](int64_t i) { int64_t nn, cc; c.nc(i, nn, cc); return cc; };
  for (int64_t i = 0; i < n; ++i) mean[size_t(grp(i))] += r.x.get(0, i) / M, cm[size_t(ins(i))] += r.x.get(0, i) / double(S);
  for (int64_t i = 0; i < n; ++i) {
    const double d = r.x.get(0, i) - mean[size_t(grp(i))], e = r.x.get(0, i) - cm[size_t(ins(i))];
    var[size_t(grp(i))] += d * d / M;
    cv[size_t(ins(i))] += e * e / double(S - 1 > 0 ? S - 1 : 1);
  }
  std::vector<double> rs(static_cast<size_t>(N * G)), sg(static_cast<size_t>(N * G), 0.0), sgx(static_cast<size_t>(N * G), 0.0), dw(static_cast<size_t>(C), 0.0), db(static_cast<size_t>(C), 0.0);
  for (int64_t k = 0; k < N * G; ++k) {
    rs[size_t(k)] = 1.0 / std::sqrt(var[size_t(k)] + 1e-5);
    NK_CHECK(std::fabs(r.sr.get(0, k) - rs[size_t(k)]) <= tol(c.dt) * rs[size_t(k)] + 1e-6) << desc << " rstd";
    NK_CHECK(std::fabs(r.sm.get(0, k) - mean[size_t(k)]) <= 1e-6 * (1 + std::fabs(mean[size_t(k)]))) << desc << " mean";
  }
  for (int64_t i = 0; i < n; ++i) {
    const int64_t k = grp(i), j = ch(i);
    const double xh = (r.x.get(0, i) - mean[size_t(k)]) * rs[size_t(k)];
    const double ey = xh * r.w.get(0, j) + r.b.get(0, j);
    NK_CHECK(std::fabs(r.y.get(0, i) - ey) <= tol(c.dt) * (1 + std::fabs(ey))) << desc << " y at " << i;
    const double gi = r.dy.get(0, i) * r.w.get(0, j);
    sg[size_t(k)] += gi;
    sgx[size_t(k)] += gi * xh;
    dw[size_t(j)] += r.dy.get(0, i) * xh;
    db[size_t(j)] += r.dy.get(0, i);
  }
  for (int64_t i = 0; i < n; ++i) {
    const int64_t k = grp(i), j = ch(i);
    const double xh = (r.x.get(0, i) - mean[size_t(k)]) * rs[size_t(k)];
    const double edx = rs[size_t(k)] * (r.dy.get(0, i) * r.w.get(0, j) - sg[size_t(k)] / M - xh * sgx[size_t(k)] / M);
    NK_CHECK(std::fabs(r.dx.get(0, i) - edx) <= tol(c.dt) * (2 + std::fabs(edx))) << desc << " dx at " << i;
  }
  const double s = std::sqrt(double(n / C));
  for (int64_t j = 0; j < C; ++j) {
    NK_CHECK(std::fabs(r.dw.get(0, j) - dw[size_t(j)]) <= tol(c.dt) * (s + std::fabs(dw[size_t(j)]))) << desc << " dweight";
    NK_CHECK(std::fabs(r.db.get(0, j) - db[size_t(j)]) <= tol(c.dt) * (s + std::fabs(db[size_t(j)]))) << desc << " dbias";
    if (c.running) {
      double m = 0, v = 0;
      for (int64_t q = 0; q < N; ++q) m += cm[size_t(q * C + j)] / double(N), v += cv[size_t(q * C + j)] / double(N);
      const double erm = 0.75 * 0.1 * double(j) + 0.25 * m, erv = 0.75 * (1.0 + 0.1 * double(j)) + 0.25 * v;
      NK_CHECK(std::fabs(r.rm.get(0, j) - erm) <= 1e-5 * (1 + std::fabs(erm))) << desc << " running_mean";
      NK_CHECK(std::fabs(r.rv.get(0, j) - erv) <= 1e-5 * (1 + std::fabs(erv))) << desc << " running_var";
    }
  }
}

std::vector<GnCase> gn_cases() {
  std::vector<GnCase> v;
  struct S { std::vector<int64_t> first; int64_t G; };
  const std::vector<S> shapes = {{{2, 6, 5, 7}, 3}, {{33, 1, 3}, 1}, {{4, 64, 9}, 32}, {{5, 8}, 2},
                                 {{3, 4, 1, 2, 3}, 4}, {{2, 257, 3}, 257}};
  for (DType dt : {DType::Float32, DType::Float64, DType::BFloat16})
    for (bool cl : {false, true})
      for (const S& sh : shapes) {
        GnCase c;
        c.dt = dt;
        c.pdt = dt == DType::BFloat16 ? DType::Float32 : dt;
        c.channels_last = cl;
        c.G = sh.G;
        c.shape = sh.first;
        if (cl && c.shape.size() > 2) {  // (N, C, *) -> (N, *, C)
          std::vector<int64_t> s = {sh.first[0]};
          s.insert(s.end(), sh.first.begin() + 2, sh.first.end());
          s.push_back(sh.first[1]);
          c.shape = s;
        }
        c.running = c.G == c.C() && c.S() > 1;  // instance norm
        v.push_back(c);
      }
  return v;
}

void gn_all(bool cuda) {
  if (cuda) require_cuda();
  RuntimeGuard guard;
  for (const auto& t : targets(cuda)) {
    t.use();
    uint64_t seed = 21;
    for (GnCase c : gn_cases()) {
      c.cuda = t.cuda;
      check_gn(c, ++seed, std::string(normkit::dtype_name(c.dt)) + (c.channels_last ? " last" : " first") +
                              " G=" + std::to_string(c.G) + " on " + t.name());
    }
  }
}

NK_TEST(group_norm, matches_reference) { gn_all(false); }
NK_TEST(group_norm_cuda, matches_reference) { gn_all(true); }

// ---- batch layer norm -------------------------------------------------------------------

struct BlnCase {
  DType dt = DType::Float32, pdt = DType::Float32;
  bool cuda = false, b_in = true, f_in = true;
  std::vector<int64_t> shape;  // (B, *, F)
  int64_t B() const { return shape[0]; }
  int64_t F() const { return shape.back(); }
  int64_t P() const { return numel(shape) / (B() * F()); }
};

struct BlnRun {
  HostArray x, dy, w, b, y, bm, br, fm, fr, dx, dw, db, rbm, rbv, rfm, rfv;
};

void run_bln(const BlnCase& c, uint64_t seed, BlnRun& r) {
  const int64_t F = c.F(), P = c.P(), B = c.B();
  for (HostArray* a : {&r.x, &r.dy, &r.y, &r.dx}) *a = HostArray::compact(c.dt, c.shape);
  for (HostArray* a : {&r.w, &r.b, &r.dw, &r.db}) *a = HostArray::compact(c.pdt, {F});
  r.rbm = HostArray::compact(c.pdt, {P * F});
  r.rbv = HostArray::compact(c.pdt, {P * F});
  r.rfm = HostArray::compact(c.pdt, {P});
  r.rfv = HostArray::compact(c.pdt, {P});
  for (HostArray* a : {&r.bm, &r.br}) *a = HostArray::compact(stat_of(c.dt), {P * F});
  for (HostArray* a : {&r.fm, &r.fr}) *a = HostArray::compact(stat_of(c.dt), {B * P});
  Rng rng(seed);
  for (int64_t i = 0; i < numel(c.shape); ++i) r.x.set(0, i, 2.0 + 1.5 * rng.normal());
  for (int64_t i = 0; i < numel(c.shape); ++i) r.dy.set(0, i, rng.normal());
  for (int64_t j = 0; j < F; ++j) r.w.set(0, j, 1.0 + 0.3 * rng.normal()), r.b.set(0, j, 0.3 * rng.normal());
  for (int64_t j = 0; j < P * F; ++j) r.rbm.set(0, j, 2.0 + 0.1 * rng.normal()), r.rbv.set(0, j, 2.0 + rng.uniform());
  for (int64_t j = 0; j < P; ++j) r.rfm.set(0, j, 2.0 + 0.1 * rng.normal()), r.rfv.set(0, j, 2.0 + rng.uniform());
  OnDevice dev(c.cuda, {&r.x, &r.dy, &r.y, &r.dx, &r.w, &r.b, &r.dw, &r.db, &r.rbm, &r.rbv, &r.rfm,
                        &r.rfv, &r.bm, &r.br, &r.fm, &r.fr});
  normkit::BatchLayerNormForwardArgs f;
  f.x = r.x.ptr();
  f.weight = r.w.ptr();
  f.bias = r.b.ptr();
  f.batch_stats_of_input = c.b_in;
  f.feature_stats_of_input = c.f_in;
  f.running_batch_mean = r.rbm.ptr();
  f.running_batch_var = r.rbv.ptr();
  f.running_feature_mean = r.rfm.ptr();
  f.running_feature_var = r.rfv.ptr();
  f.momentum = 0.25;
  f.y = r.y.ptr();
  f.batch_mean = r.bm.ptr();
  f.batch_rstd = r.br.ptr();
  f.feature_mean = r.fm.ptr();
  f.feature_rstd = r.fr.ptr();
  normkit::batch_layer_norm_forward(f);
  normkit::BatchLayerNormBackwardArgs g;
  g.dy = r.dy.ptr();
  g.x = r.x.ptr();
  g.weight = r.w.ptr();
  g.batch_mean = r.bm.ptr();
  g.batch_rstd = r.br.ptr();
  g.feature_mean = r.fm.ptr();
  g.feature_rstd = r.fr.ptr();
  g.batch_stats_of_input = c.b_in;
  g.feature_stats_of_input = c.f_in;
  g.dx = r.dx.ptr();
  g.dweight = r.dw.ptr();
  g.dbias = r.db.ptr();
  normkit::batch_layer_norm_backward(g);
}

void check_bln(const BlnCase& c, uint64_t seed, const std::string& desc) {
  BlnRun r0, r;
  {
    BlnCase e = c;
    e.b_in = e.f_in = false;  // the initial running statistics, untouched
    run_bln(e, seed, r0);
  }
  run_bln(c, seed, r);
  const int64_t B = c.B(), F = c.F(), P = c.P(), PF = P * F, n = numel(c.shape);
  const double wf = 1.0 / double(B) - 1e-4, wb = 1.0 - 1.0 / double(B) - 1e-4, sf = std::sqrt(double(F));
  std::vector<double> mb(static_cast<size_t>(PF), 0.0), vb(static_cast<size_t>(PF), 0.0), mf(static_cast<size_t>(B * P), 0.0), vf(static_cast<size_t>(B * P), 0.0);
  for (int64_t i = 0; i < n; ++i) mb[size_t(i % PF)] += r.x.get(0, i) / double(B), mf[size_t(i / F)] += r.x.get(0, i) / double(F);
  for (int64_t i = 0; i < n; ++i) {
    const double d = r.x.get(0, i) - mb[size_t(i % PF)], e = r.x.get(0, i) - mf[size_t(i / F)];
    vb[size_t(i % PF)] += d * d / double(B);
    vf[size_t(i / F)] += e * e / double(F);
  }
  std::vector<double> ub(static_cast<size_t>(PF)), rb(static_cast<size_t>(PF)), uf(static_cast<size_t>(B * P)), rf(static_cast<size_t>(B * P));
  for (int64_t j = 0; j < PF; ++j) {
    ub[size_t(j)] = c.b_in ? mb[size_t(j)] : r0.rbm.get(0, j);
    rb[size_t(j)] = 1.0 / std::sqrt((c.b_in ? vb[size_t(j)] : r0.rbv.get(0, j)) + 1e-3);
    NK_CHECK(std::fabs(r.br.get(0, j) - rb[size_t(j)]) <= tol(c.dt) * rb[size_t(j)] + 1e-6) << desc << " batch_rstd";
    if (c.b_in) {
      const double erm = 0.75 * r0.rbm.get(0, j) + 0.25 * mb[size_t(j)];
      const double erv = 0.75 * r0.rbv.get(0, j) + 0.25 * vb[size_t(j)] * double(B) / double(B - 1);
      NK_CHECK(std::fabs(r.rbm.get(0, j) - erm) <= 1e-5 * (1 + std::fabs(erm))) << desc << " running_batch_mean";
      NK_CHECK(std::fabs(r.rbv.get(0, j) - erv) <= 1e-5 * (1 + std::fabs(erv))) << desc << " running_batch_var";
    }
  }
  for (int64_t q = 0; q < B * P; ++q) {
    uf[size_t(q)] = c.f_in ? mf[size_t(q)] : r0.rfm.get(0, q % P);
    rf[size_t(q)] = 1.0 / std::sqrt((c.f_in ? vf[size_t(q)] : r0.rfv.get(0, q % P)) + 1e-3);
    NK_CHECK(std::fabs(r.fr.get(0, q) - rf[size_t(q)]) <= tol(c.dt) * rf[size_t(q)] + 1e-6) << desc << " feature_rstd";
  }
  if (c.f_in)
    for (int64_t p = 0; p < P; ++p) {
      double m = 0, v = 0;
      for (int64_t b = 0; b < B; ++b) m += mf[size_t(b * P + p)] / double(B), v += vf[size_t(b * P + p)] * double(F) / double(F - 1) / double(B);
      const double erm = 0.75 * r0.rfm.get(0, p) + 0.25 * m, erv = 0.75 * r0.rfv.get(0, p) + 0.25 * v;
      NK_CHECK(std::fabs(r.rfm.get(0, p) - erm) <= 1e-5 * (1 + std::fabs(erm))) << desc << " running_feature_mean";
      NK_CHECK(std::fabs(r.rfv.get(0, p) - erv) <= 1e-5 * (1 + std::fabs(erv))) << desc << " running_feature_var";
    }
  // Backward sums: per column over b (batch), per row over f (feature).
  std::vector<double> cg(static_cast<size_t>(PF), 0.0), cgx(static_cast<size_t>(PF), 0.0), rg(static_cast<size_t>(B * P), 0.0), rgx(static_cast<size_t>(B * P), 0.0);
  std::vector<double> dw(static_cast<size_t>(F), 0.0), db(static_cast<size_t>(F), 0.0);
  auto xb = [&](int64_t i) { return (r.x.get(0, i) - ub[size_t(i % PF)]) * rb[size_t(i % PF)]; };
  auto xf = [&](int64_t i) { return (r.x.get(0, i) - uf[size_t(i / F)]) * rf[size_t(i / F)]; };
  for (int64_t i = 0; i < n; ++i) {
    const int64_t f = i % F;
    const double ey = r.w.get(0, f) * (wf * xf(i) + wb * xb(i)) / sf + r.b.get(0, f);
    NK_CHECK(std::fabs(r.y.get(0, i) - ey) <= tol(c.dt) * (1 + std::fabs(ey))) << desc << " y at " << i;
    const double g = r.dy.get(0, i) * r.w.get(0, f) / sf;
    cg[size_t(i % PF)] += g, cgx[size_t(i % PF)] += g * xb(i);
    rg[size_t(i / F)] += g, rgx[size_t(i / F)] += g * xf(i);
    dw[size_t(f)] += r.dy.get(0, i) * (wf * xf(i) + wb * xb(i)) / sf;
    db[size_t(f)] += r.dy.get(0, i);
  }
  for (int64_t i = 0; i < n; ++i) {
    const int64_t j = i % PF, q = i / F;
    const double g = r.dy.get(0, i) * r.w.get(0, i % F) / sf;
    const double dxb = c.b_in ? rb[size_t(j)] * (g - cg[size_t(j)] / double(B) - xb(i) * cgx[size_t(j)] / double(B))
                              : rb[size_t(j)] * g;
    const double dxf = c.f_in ? rf[size_t(q)] * (g - rg[size_t(q)] / double(F) - xf(i) * rgx[size_t(q)] / double(F))
                              : rf[size_t(q)] * g;
    const double edx = wf * dxf + wb * dxb;
    NK_CHECK(std::fabs(r.dx.get(0, i) - edx) <= tol(c.dt) * (1 + std::fabs(edx))) << desc << " dx at " << i;
  }
  const double s = std::sqrt(double(B * P));
  for (int64_t f = 0; f < F; ++f) {
    NK_CHECK(std::fabs(r.dw.get(0, f) - dw[size_t(f)]) <= tol(c.dt) * (s + std::fabs(dw[size_t(f)]))) << desc << " dweight";
    NK_CHECK(std::fabs(r.db.get(0, f) - db[size_t(f)]) <= tol(c.dt) * (s + std::fabs(db[size_t(f)]))) << desc << " dbias";
  }
}

std::vector<BlnCase> bln_cases() {
  std::vector<BlnCase> v;
  const std::vector<std::vector<int64_t>> shapes = {{4, 7}, {33, 3, 5}, {3, 2, 3, 64}, {5, 1, 257}};
  for (DType dt : {DType::Float32, DType::Float64, DType::BFloat16})
    for (int mode = 0; mode < 4; ++mode)
      for (const auto& s : shapes) {
        BlnCase c;
        c.dt = dt;
        c.pdt = dt == DType::BFloat16 ? DType::Float32 : dt;
        c.b_in = (mode & 1) == 0;
        c.f_in = (mode & 2) == 0;
        c.shape = s;
        v.push_back(c);
      }
  return v;
}

void bln_all(bool cuda) {
  if (cuda) require_cuda();
  RuntimeGuard guard;
  for (const auto& t : targets(cuda)) {
    t.use();
    uint64_t seed = 31;
    for (BlnCase c : bln_cases()) {
      c.cuda = t.cuda;
      check_bln(c, ++seed, std::string(normkit::dtype_name(c.dt)) + (c.b_in ? " batch-in" : " batch-run") +
                               (c.f_in ? " feature-in" : " feature-run") + " on " + t.name());
    }
  }
}

NK_TEST(batch_layer_norm, matches_reference) { bln_all(false); }
NK_TEST(batch_layer_norm_cuda, matches_reference) { bln_all(true); }

// ---- invariance and errors ----------------------------------------------------------------

std::vector<unsigned char> bytes_of(std::initializer_list<const HostArray*> arrays) {
  std::vector<unsigned char> b;
  for (const HostArray* a : arrays) {
    const auto ab = a->bytes();
    b.insert(b.end(), ab.begin(), ab.end());
  }
  return b;
}

NK_TEST(determinism, stat_norms) {
  RuntimeGuard guard;
  for (const auto& t : targets(false)) {
    t.use();
    for (bool cl : {false, true}) {
      GnCase c;
      c.dt = DType::BFloat16;
      c.channels_last = cl;
      c.G = 8;
      c.shape = cl ? std::vector<int64_t>{9, 17, 15, 64} : std::vector<int64_t>{9, 64, 17, 15};
      nk_det::expect_thread_invariant(
          [&](int threads) {
            normkit::set_num_threads(threads);
            GnRun r;
            run_gn(c, 5, r);
            return bytes_of({&r.y, &r.sm, &r.sr, &r.dx, &r.dw, &r.db});
          },
          std::string("group_norm ") + (cl ? "last" : "first") + " on " + t.name());
    }
    BlnCase b;
    b.dt = DType::BFloat16;
    b.shape = {33, 17, 96};
    nk_det::expect_thread_invariant(
        [&](int threads) {
          normkit::set_num_threads(threads);
          BlnRun r;
          run_bln(b, 6, r);
          return bytes_of({&r.y, &r.bm, &r.br, &r.fm, &r.fr, &r.dx, &r.dw, &r.db, &r.rbm, &r.rbv, &r.rfm, &r.rfv});
        },
        "batch_layer_norm on " + t.name());
  }
}

NK_TEST(errors, stat_norms) {
  GnCase c;
  c.shape = {4, 6, 5};
  c.G = 3;
  GnRun r;
  run_gn(c, 1, r);
  normkit::GroupNormForwardArgs f;
  f.x = r.x.ptr();
  f.y = r.y.ptr();
  f.num_groups = 4;
  NK_CHECK_THROWS(normkit::group_norm_forward(f), "group_norm: num_groups: expected a divisor of the 6 channels");
  f.num_groups = 3;
  f.running_mean = r.rm.ptr();
  f.running_var = r.rv.ptr();
  NK_CHECK_THROWS(normkit::group_norm_forward(f), "running statistics are instance norm's");
  f.num_groups = 6;
  f.momentum = std::nan("");
  NK_CHECK_THROWS(normkit::group_norm_forward(f), "group_norm: momentum: expected a finite number");
  f.momentum = 0.1;
  f.running_var = nullptr;
  NK_CHECK_THROWS(normkit::group_norm_forward(f), "running_var: needed with running_mean");
  normkit::GroupNormBackwardArgs g;
  g.dy = g.x = r.x.ptr();
  g.num_groups = 3;
  g.mean = g.rstd = r.w.ptr();  // 6 values, not N x G = 12
  NK_CHECK_THROWS(normkit::group_norm_backward(g), "group_norm_backward: mean: expected 12 elements");
  BlnCase b;
  b.shape = {4, 3, 5};
  BlnRun br;
  run_bln(b, 2, br);
  normkit::BatchLayerNormForwardArgs h;
  h.x = br.x.ptr();
  h.y = br.y.ptr();
  h.weight = br.rfm.ptr();  // 3 values, not F = 5
  NK_CHECK_THROWS(normkit::batch_layer_norm_forward(h), "batch_layer_norm: weight: expected shape (5,)");
  h.weight = nullptr;
  h.batch_stats_of_input = false;
  NK_CHECK_THROWS(normkit::batch_layer_norm_forward(h), "running_batch_mean: required");
  h.batch_stats_of_input = true;
  h.running_batch_mean = br.rfm.ptr();
  h.running_batch_var = br.rfv.ptr();
  NK_CHECK_THROWS(normkit::batch_layer_norm_forward(h), "running_batch_mean: expected shape (3, 5)");
}

}  // namespace
