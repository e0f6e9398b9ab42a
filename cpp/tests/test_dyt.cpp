// DyT (SPEC §6) against the float64 reference, on every CPU ISA and on the CUDA backend:
// channels last (padded, misaligned rows), channels first (planes) and channels-first views
// of channels-last memory; every dtype, 16-bit x with float32 parameters; optional weight,
// bias and gradients; NaN padding around every output; thread and batch invariance.
#include <cmath>
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
using nk_ref::HostArray;
using nk_ref::Rng;
using normkit::DType;

std::string dims(const std::vector<int64_t>& v) {
  std::string s = "(";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s + ")";
}

enum class Mem { Last, Planes, LastMemFirst };  // channels last; (N, C, *) planes; NCHW view of NHWC

struct DytCase {
  DType dt = DType::Float32, pdt = DType::Float32;
  Mem mem = Mem::Last;
  std::vector<int64_t> shape;  // logical: (*, C) for Last, (N, C, *) otherwise
  int64_t pad = 0, misalign = 0;
  bool weight = true, bias = true, dalpha = true, dweight = true, dbias = true;
  bool cuda = false;
  double alpha = 0.7;

  int64_t C() const { return mem == Mem::Last ? shape.back() : shape[1]; }
  std::string describe() const {
    std::string s = std::string(normkit::dtype_name(dt)) + "/" + normkit::dtype_name(pdt) +
                    (mem == Mem::Last ? " last" : mem == Mem::Planes ? " planes" : " nhwc-as-nchw") +
                    " shape " + dims(shape) +
                    " pad " + std::to_string(pad) + " mis " + std::to_string(misalign) +
                    (weight ? " w" : "") + (bias ? " b" : "") + (cuda ? " cuda" : "");
    return s;
  }
  // The HostArray layout: its rows and columns, and which channel element (r, j) belongs to.
  nk_ref::Layout layout() const {
    nk_ref::Layout L;
    L.pad = pad;
    L.misalign = misalign;
    if (mem == Mem::Last) {
      L.lead.assign(shape.begin(), shape.end() - 1);
      L.row = {shape.back()};
    } else if (mem == Mem::Planes) {
      L.lead = {shape[0], shape[1]};
      L.row.assign(shape.begin() + 2, shape.end());
    } else {
      L.lead = {shape[0]};
      L.lead.insert(L.lead.end(), shape.begin() + 2, shape.end());
      L.row = {shape[1]};
    }
    return L;
  }
  int64_t channel(int64_t r, int64_t j) const { return mem == Mem::Planes ? r % C() : j; }
};

// An array of the case's memory layout (HostArray indexes it as rows × H).
HostArray make_rows(const DytCase& c, DType t) { return HostArray(t, c.layout()); }

// The view the API gets: the array's own, or for Mem::LastMemFirst its (N, s..., C) dims
// reordered to the logical (N, C, s...). Take it after OnDevice moved the array.
normkit::TensorView api_view(const DytCase& c, HostArray& a) {
  normkit::TensorView v = a.view();
  if (c.mem == Mem::LastMemFirst) {
    const normkit::TensorView u = v;
    v.shape[1] = u.shape[u.ndim - 1];
    v.strides[1] = u.strides[u.ndim - 1];
    for (int i = 2; i < u.ndim; ++i) v.shape[i] = u.shape[i - 1], v.strides[i] = u.strides[i - 1];
  }
  return v;
}

struct DytRun {
  HostArray x, a, w, b, y, dy, dx, da, dw, db;
  std::vector<double> vx, vw, vb, vdy;
  double alpha = 0;
};

void run_dyt(const DytCase& c, uint64_t seed, DytRun& run) {
  // One stream per array: a case with fewer rows starts with the same x, dy and parameters.
  Rng rng(seed), rng_x(seed + 1), rng_dy(seed + 2);
  const DType adt = c.pdt;
  run.x = make_rows(c, c.dt);
  run.vx = run.x.fill_normal(rng_x, 0.0, 1.5);
  run.a = HostArray::compact(adt, {1});
  run.alpha = run.a.fill([&](int64_t, int64_t) { return c.alpha; })[0];
  if (c.weight) {
    run.w = HostArray::compact(c.pdt, {c.C()});
    run.vw = run.w.fill_normal(rng, 1.0, 0.5);
  }
  if (c.bias) {
    run.b = HostArray::compact(c.pdt, {c.C()});
    run.vb = run.b.fill_normal(rng, 0.0, 0.5);
  }
  run.y = make_rows(c, c.dt);
  {
    OnDevice dev(c.cuda, {&run.x, &run.a, &run.w, &run.b, &run.y});
    normkit::DytForwardArgs f;
    f.channels_last = c.mem == Mem::Last;
    const normkit::TensorView xv = api_view(c, run.x), yv = api_view(c, run.y);
    f.x = &xv;
    f.alpha = run.a.ptr();
    f.weight = c.weight ? run.w.ptr() : nullptr;
    f.bias = c.bias ? run.b.ptr() : nullptr;
    f.y = &yv;
    normkit::dyt_forward(f);
  }
  run.dy = make_rows(c, c.dt);
  run.vdy = run.dy.fill_normal(rng_dy);
  run.dx = make_rows(c, c.dt);
  if (c.dalpha) run.da = HostArray::compact(adt, {1});
  if (c.dweight && c.weight) run.dw = HostArray::compact(c.pdt, {c.C()});
  if (c.dbias) run.db = HostArray::compact(c.pdt, {c.C()});
  OnDevice dev(c.cuda, {&run.x, &run.a, &run.w, &run.dy, &run.dx, &run.da, &run.dw, &run.db});
  normkit::DytBackwardArgs g;
  g.channels_last = c.mem == Mem::Last;
  const normkit::TensorView dyv = api_view(c, run.dy), xv = api_view(c, run.x),
                           dxv = api_view(c, run.dx);
  g.dy = &dyv;
  g.x = &xv;
  g.alpha = run.a.ptr();
  g.weight = c.weight ? run.w.ptr() : nullptr;
  g.dx = &dxv;
  g.dalpha = c.dalpha ? run.da.ptr() : nullptr;
  g.dweight = c.dweight && c.weight ? run.dw.ptr() : nullptr;
  g.dbias = c.dbias ? run.db.ptr() : nullptr;
  normkit::dyt_backward(g);
}

void check_dyt(const DytCase& c, DytRun& run) {
  const std::string desc = c.describe();
  const int64_t rows = run.x.rows(), H = run.x.H(), C = c.C();
  std::vector<double> ry(size_t(rows * H)), my(ry.size()), rdx(ry.size()), mdx(ry.size());
  std::vector<double> A(size_t(C), 0.0), mA(size_t(C), 0.0), G(size_t(C), 0.0), mG(size_t(C), 0.0),
      B(size_t(C), 0.0), mB(size_t(C), 0.0);
  const double al = run.alpha;
  const double tol = tol_for(c.dt);
  // float16 results below 2^-14 are denormals with a fixed spacing of 2^-24: the rounding of
  // the store is absolute there.
  const double floor16 = c.dt == DType::Float16 ? std::ldexp(1.0, -24) / tol : 0.0;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < H; ++j) {
      const size_t i = size_t(r * H + j);
      const size_t ch = size_t(c.channel(r, j));
      const double w = c.weight ? run.vw[ch] : 1.0, b = c.bias ? run.vb[ch] : 0.0;
      const double x = run.vx[i], dy = run.vdy[i], t = std::tanh(al * x);
      const double co = std::cosh(al * x), s = 1.0 / (co * co);  // not 1 − t²: see dyt_math.hpp
      ry[i] = w * t + b;
      my[i] = std::fabs(w * t) + std::fabs(b) + 1e-30 + floor16;
      rdx[i] = dy * w * al * s;
      // Relative to dx itself (sech² is computed to a few ulp), with a floor where it underflows.
      mdx[i] = std::fabs(rdx[i]) + std::fabs(dy * w * al) * 1e-30 + 1e-300 + floor16;
      A[ch] += w * dy * x * s, mA[ch] += std::fabs(w * dy * x * s);
      G[ch] += dy * t, mG[ch] += std::fabs(dy * t);
      B[ch] += dy, mB[ch] += std::fabs(dy);
    }
  NK_CHECK_CLOSE_MAG("y", run.y.values(), ry, tol, &my, desc);
  NK_CHECK_CLOSE_MAG("dx", run.dx.values(), rdx, tol, &mdx, desc);
  // Sums accumulate in float32 (float64 for float64 x) and are stored as the parameter dtype.
  const double stol = std::max(c.dt == DType::Float64 ? 1e-10 : 1e-4, tol_for(c.pdt));
  if (c.dalpha) {
    double ra = 0, ma = 1e-30;
    for (int64_t k = 0; k < C; ++k) ra += A[size_t(k)], ma += mA[size_t(k)];
    const std::vector<double> mag{ma};
    NK_CHECK_CLOSE_MAG("dalpha", run.da.values(), std::vector<double>{ra}, stol, &mag, desc);
  }
  if (c.dweight && c.weight) NK_CHECK_CLOSE_MAG("dweight", run.dw.values(), G, stol, &mG, desc);
  if (c.dbias) NK_CHECK_CLOSE_MAG("dbias", run.db.values(), B, stol, &mB, desc);
  for (HostArray* a : {&run.x, &run.y, &run.dy, &run.dx})
    NK_CHECK_PADDING(*a, "rows array", desc);
  if (c.dalpha) NK_CHECK_PADDING(run.da, "dalpha", desc);
  if (c.dweight && c.weight) NK_CHECK_PADDING(run.dw, "dweight", desc);
  if (c.dbias) NK_CHECK_PADDING(run.db, "dbias", desc);
}

std::vector<DytCase> cases() {
  std::vector<DytCase> v;
  const std::vector<std::pair<Mem, std::vector<int64_t>>> shapes = {
      {Mem::Last, {3, 5, 17}}, {Mem::Last, {1, 1}},          {Mem::Last, {7, 1000}},
      {Mem::Last, {2, 4097}},  {Mem::Last, {130, 33}},       {Mem::Last, {9}},
      {Mem::Planes, {2, 3, 5, 7}}, {Mem::Planes, {3, 4, 1}}, {Mem::Planes, {2, 5, 33}},
      {Mem::Planes, {5, 9}},   {Mem::LastMemFirst, {2, 16, 3, 5}}, {Mem::LastMemFirst, {3, 7, 4}}};
  for (DType dt : {DType::Float32, DType::Float64, DType::Float16, DType::BFloat16})
    for (const auto& [mem, shape] : shapes) {
      DytCase c;
      c.dt = dt;
      c.pdt = (dt == DType::Float16 || dt == DType::BFloat16) ? DType::Float32 : dt;
      c.mem = mem;
      c.shape = shape;
      v.push_back(c);
      DytCase d = c;  // padded, misaligned, parameters of x's own dtype, no bias
      // (a padded 2-D planes array is a strided channels-last one: errors.dyt covers it)
      d.pad = mem == Mem::Planes && shape.size() == 2 ? 0 : 3;
      d.misalign = 1;
      d.pdt = dt;
      d.bias = false;
      d.alpha = -1.3;
      v.push_back(d);
      DytCase e = c;  // no weight, only dx and dalpha
      e.weight = false;
      e.dbias = false;
      e.alpha = 2.5;
      v.push_back(e);
    }
  return v;
}

void run_all(bool cuda) {
  if (cuda) require_cuda();
  RuntimeGuard guard;
  for (const Target& t : targets(cuda)) {
    t.use();
    uint64_t seed = 77;
    for (DytCase c : cases()) {
      c.cuda = t.cuda;
      DytRun run;
      run_dyt(c, ++seed, run);
      check_dyt(c, run);
    }
  }
}

NK_TEST(dyt, matches_reference) { run_all(false); }
NK_TEST(dyt_cuda, matches_reference) { run_all(true); }

// The bytes of every output of a run: rows arrays row by row, then the sums.
std::vector<unsigned char> outputs(const DytRun& run) {
  std::vector<unsigned char> b;
  for (const HostArray* a : {&run.y, &run.dx, &run.da, &run.dw, &run.db}) {
    if (a->ptr()->data == nullptr) continue;
    const std::vector<unsigned char> ab = a->bytes();
    b.insert(b.end(), ab.begin(), ab.end());
  }
  return b;
}

void invariance(bool cuda) {
  if (cuda) require_cuda();
  RuntimeGuard guard;
  for (const Target& t : targets(cuda)) {
    t.use();
    for (Mem mem : {Mem::Last, Mem::Planes}) {
      DytCase c;
      c.mem = mem;
      c.cuda = t.cuda;
      c.dt = DType::BFloat16;
      c.shape = mem == Mem::Last ? std::vector<int64_t>{301, 1024} : std::vector<int64_t>{9, 64, 17, 15};
      const std::string desc = c.describe() + " on " + t.name();
      // Threads (1, 2, 3) and run to run, gradients included.
      DytRun full;
      nk_det::expect_thread_invariant(
          [&](int threads) {
            normkit::set_num_threads(threads);
            run_dyt(c, 5, full);
            return outputs(full);
          },
          desc);
      // Batch invariance: the first rows alone (run_dyt draws x and dy from their own
      // streams, so they start with the same values) give the same y and dx bits.
      DytCase s = c;
      s.shape[0] = mem == Mem::Last ? 7 : 2;
      DytRun part;
      run_dyt(s, 5, part);
      nk_det::expect_prefix(full.y.bytes(), part.y.bytes(), "y", desc);
      nk_det::expect_prefix(full.dx.bytes(), part.dx.bytes(), "dx", desc);
    }
  }
}

NK_TEST(determinism, dyt) { invariance(false); }
NK_TEST(determinism_cuda, dyt) { invariance(true); }

// Bad input names the argument.
NK_TEST(errors, dyt) {
  DytCase c;
  c.shape = {4, 8};
  DytRun run;
  run_dyt(c, 1, run);
  normkit::DytForwardArgs f;
  f.x = run.x.ptr();
  f.alpha = run.a.ptr();
  f.y = run.y.ptr();
  HostArray w3 = HostArray::compact(DType::Float32, {3});
  f.weight = w3.ptr();
  NK_CHECK_THROWS(normkit::dyt_forward(f), "dyt: weight: expected shape (8,)");
  f.weight = nullptr;
  HostArray a2 = HostArray::compact(DType::Float32, {2});
  f.alpha = a2.ptr();
  NK_CHECK_THROWS(normkit::dyt_forward(f), "dyt: alpha: expected shape");
  f.alpha = nullptr;
  NK_CHECK_THROWS(normkit::dyt_forward(f), "dyt: alpha: is required");
  f.alpha = run.a.ptr();
  f.y = run.x.ptr();
  f.x = run.y.ptr();
  normkit::dyt_forward(f);  // exact alias out == x is allowed
  f.x = run.x.ptr();
  f.channels_last = false;
  HostArray x1 = HostArray::compact(DType::Float32, {8});
  f.x = x1.ptr();
  f.y = x1.ptr();
  NK_CHECK_THROWS(normkit::dyt_forward(f), "at least 2 dims (N, C, *)");
  normkit::DytBackwardArgs g;
  g.dy = run.dy.ptr();
  g.x = run.x.ptr();
  g.alpha = run.a.ptr();
  g.dx = run.dx.ptr();
  HostArray dw = HostArray::compact(DType::Float32, {8});
  g.dweight = dw.ptr();
  NK_CHECK_THROWS(normkit::dyt_backward(g), "dyt_backward: dweight: needs weight");
  g.weight = run.w.ptr();
  g.dbias = dw.ptr();
  NK_CHECK_THROWS(normkit::dyt_backward(g), "dyt_backward: dbias: shares memory with the output dweight");
  g.dbias = nullptr;
  HostArray da64 = HostArray::compact(DType::Float64, {1});
  g.dalpha = da64.ptr();
  NK_CHECK_THROWS(normkit::dyt_backward(g), "dyt_backward: dalpha: expected dtype float32");
}

}  // namespace
