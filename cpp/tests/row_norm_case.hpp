// row_norm_case.hpp — one definition of a row-norm test case (SPEC §1–3, §8), used both for the
// comparison with the float64 reference and for the bitwise determinism tests.
//
// A Case fixes the kind, dtypes, shape, layout and optional features; run_case() builds
// the arrays (inputs from a seeded generator, outputs pre-filled with NaN), runs
// row_norm_forward and row_norm_backward through the public API and keeps everything in a
// Run; check_run() compares a Run with the reference.
#pragma once

#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "nk_test.hpp"
#include "normkit/normkit.hpp"
#include "reference.hpp"

namespace nk_case {

using namespace nk_ref;
using normkit::DType;
using normkit::NormKind;

struct Case {
  NormKind kind = NormKind::Layer;
  DType dt = DType::Float32;   // x, residual, y, s, dy, dx
  DType pdt = DType::Float32;  // weight, bias, x_bias and their gradients
  std::vector<int64_t> lead{4};
  std::vector<int64_t> row{17};
  int64_t pad = 0;       // elements between rows (row stride = H + pad)
  int64_t misalign = 0;  // elements before the first one
  bool weight = true, bias = true;
  bool fused = false, x_bias = false, store_s = false, ds = false;
  bool stats = true;     // ask the forward for mean/rstd
  bool in_place = false; // y over x and s over residual (forward only)
  bool backward = true;
  bool user_workspace = false;
  bool cuda = false;     // every array on the CUDA device (real or emulated)
  int dx_alias = 0;      // backward: 0 own dx; 1 dx written over dy; 2 dx written over x
  double eps = 1e-5, weight_offset = 0.0, residual_scale = 1.0;
  double ada_k = 0.1, ada_scale = 2.0;  // AdaNorm (no weight, bias or fused add)
  double x_mean = 0.0, x_sd = 1.0;

  // An AdaNorm case: the kind, and no parameters.
  Case& ada() {
    kind = NormKind::Ada;
    weight = bias = fused = x_bias = store_s = ds = false;
    return *this;
  }

  int64_t H() const {
    int64_t h = 1;
    for (int64_t d : row) h *= d;
    return h;
  }
  int64_t rows() const {
    int64_t n = 1;
    for (int64_t d : lead) n *= d;
    return n;
  }
  Layout layout() const {
    Layout L;
    L.lead = lead;
    L.row = row;
    L.pad = pad;
    L.misalign = misalign;
    return L;
  }
  Layout param_layout() const {
    Layout L;
    L.row = row;
    L.misalign = misalign;
    return L;
  }
  std::string describe() const {
    std::ostringstream os;
    os << (kind == NormKind::Layer ? "layer" : kind == NormKind::RMS ? "rms" : "ada")
       << " x=" << normkit::dtype_name(dt)
       << " p=" << normkit::dtype_name(pdt) << " lead=(";
    for (int64_t d : lead) os << d << ",";
    os << ") row=(";
    for (int64_t d : row) os << d << ",";
    os << ") pad=" << pad << " misalign=" << misalign << (weight ? " w" : "") << (bias ? " b" : "")
       << (fused ? " fused" : "") << (x_bias ? " x_bias" : "") << (store_s ? " store_s" : "")
       << (ds ? " ds" : "") << (stats ? "" : " nostats") << (in_place ? " in_place" : "")
       << (user_workspace ? " user_ws" : "")
       << (dx_alias == 1 ? " dx_over_dy" : dx_alias == 2 ? " dx_over_x" : "") << " eps=" << eps << " offset=" << weight_offset
       << " rscale=" << residual_scale;
    if (kind == NormKind::Ada) os << " k=" << ada_k << " scale=" << ada_scale;
    if (cuda)
      os << " on=cuda";
    else
      os << " isa=" << normkit::cpu_isa() << " threads=" << normkit::get_num_threads();
    return os.str();
  }
};

// ---------------------------------------------------------------------------------------
// Where a test runs: each CPU ISA this machine can run, or the CUDA backend.
// ---------------------------------------------------------------------------------------
// The *_cuda test groups run the same cases with every array on the device. They skip
// (exit status 77) where no CUDA device is present; the emulation build always has one.
inline void require_cuda() {
  if (!normkit::cuda_available()) NK_SKIP("no CUDA device (and not the emulation build)");
}

// The CPU ISAs (`cuda` false) or the single CUDA target; each call makes the next one
// current. Use: for (Target t : targets(cuda)) { t.use(); ... c.cuda = t.cuda; }
struct Target {
  std::string isa;  // "" for CUDA
  bool cuda = false;
  void use() const {
    if (!cuda) normkit::set_cpu_isa(isa);
  }
  std::string name() const { return cuda ? "cuda" : isa; }
};
inline std::vector<Target> targets(bool cuda) {
  std::vector<Target> t;
  if (cuda) {
    t.push_back(Target{"", true});
  } else {
    for (const std::string& isa : normkit::available_cpu_isas()) t.push_back(Target{isa, false});
  }
  return t;
}

// Moves the given arrays to the device for one call when `on` and back to the host when it
// goes out of scope (HostArray::to_device). Absent (empty) arrays and repeats are ignored.
class OnDevice {
 public:
  OnDevice(bool on, std::initializer_list<HostArray*> arrays) {
    if (!on) return;
    for (HostArray* a : arrays) {
      if (a->ptr()->data == nullptr || a->on_device()) continue;
      a->to_device();
      moved_.push_back(a);
    }
  }
  ~OnDevice() noexcept(false) {
    for (HostArray* a : moved_) a->to_host();
  }
  OnDevice(const OnDevice&) = delete;
  OnDevice& operator=(const OnDevice&) = delete;

 private:
  std::vector<HostArray*> moved_;
};

inline HostArray rows_array(const Case& c, DType t) { return HostArray(t, c.layout()); }
inline HostArray param_array(const Case& c) { return HostArray(c.pdt, c.param_layout()); }
inline HostArray stat_array(const Case& c) {
  return HostArray::compact(normkit::stat_dtype(c.dt), {c.rows()});
}

// Everything a case created, with the values the reference needs.
struct Run {
  HostArray x, r, xb, w, b, y, s, mean, rstd;
  HostArray bx, bmean, brstd, dy, ds, dx, dr, dw, db, dxb;
  std::vector<double> vx, vr, vxb, vw, vb, vdy, vds, vbx;
};

// Builds the arrays of `c` from `seed` and runs forward (and backward) through the API.
inline void run_case(const Case& c, uint64_t seed, Run& run) {
  Rng rng(seed);
  const bool rms = c.kind == NormKind::RMS;
  run.x = rows_array(c, c.dt);
  run.vx = run.x.fill_normal(rng, c.x_mean, c.x_sd);
  if (c.fused) {
    run.r = rows_array(c, c.dt);
    run.vr = run.r.fill_normal(rng);
    if (c.x_bias) {
      run.xb = param_array(c);
      run.vxb = run.xb.fill_normal(rng, 0.0, 0.5);
    }
  }
  if (c.weight) {
    run.w = param_array(c);
    run.vw = run.w.fill([&](int64_t, int64_t) { return 1.0 + 0.5 * rng.normal(); });
  }
  if (c.bias) {
    run.b = param_array(c);
    run.vb = run.b.fill_normal(rng, 0.0, 0.5);
  }

  normkit::RowNormForwardArgs f;
  f.kind = c.kind;
  f.normalized_ndim = int(c.row.size());
  f.eps = c.eps;
  f.weight_offset = c.weight_offset;
  f.residual_scale = c.residual_scale;
  f.ada_k = c.ada_k;
  f.ada_scale = c.ada_scale;
  f.x = run.x.ptr();
  if (c.in_place) {
    f.y = run.x.ptr();
  } else {
    run.y = rows_array(c, c.dt);
    f.y = run.y.ptr();
  }
  if (c.fused) {
    f.residual = run.r.ptr();
    if (c.x_bias) f.x_bias = run.xb.ptr();
    if (c.store_s) {
      if (c.in_place) {
        f.residual_out = run.r.ptr();
      } else {
        run.s = rows_array(c, c.dt);
        f.residual_out = run.s.ptr();
      }
    }
  }
  if (c.weight) f.weight = run.w.ptr();
  if (c.bias) f.bias = run.b.ptr();
  if (c.stats) {
    run.rstd = stat_array(c);
    f.rstd = run.rstd.ptr();
    if (!rms) {
      run.mean = stat_array(c);
      f.mean = run.mean.ptr();
    }
  }
  {
    OnDevice dev(c.cuda, {&run.x, &run.r, &run.xb, &run.w, &run.b, &run.y, &run.s, &run.mean,
                          &run.rstd});
    normkit::row_norm_forward(f);
  }
  if (!c.backward || c.in_place) return;

  // The backward's input is what the forward normalized: x, or s for the fused add (the
  // kernel's own s when it stored one, else the reference's s rounded to the dtype).
  run.bx = rows_array(c, c.dt);
  if (!c.fused) {
    run.vbx = run.bx.fill([&](int64_t r, int64_t j) { return run.x.get(r, j); });
  } else if (c.store_s) {
    run.vbx = run.bx.fill([&](int64_t r, int64_t j) { return run.s.get(r, j); });
  } else {
    RefForward rf;
    rf.kind = c.kind;
    rf.rows = c.rows();
    rf.H = c.H();
    rf.residual_scale = c.residual_scale;
    rf.x = &run.vx;
    rf.residual = &run.vr;
    rf.x_bias = c.x_bias ? &run.vxb : nullptr;
    const RefForwardOut o = ref_forward(rf);
    const int64_t H = c.H();
    run.vbx = run.bx.fill([&](int64_t r, int64_t j) { return o.s[size_t(r * H + j)]; });
  }
  const normkit::TensorView *mean = nullptr, *rstd = nullptr;
  if (c.stats) {
    rstd = run.rstd.ptr();
    if (!rms) mean = run.mean.ptr();
  } else {
    RefForward rf;
    rf.kind = c.kind;
    rf.rows = c.rows();
    rf.H = c.H();
    rf.eps = c.eps;
    rf.ada_k = c.ada_k;
    rf.ada_scale = c.ada_scale;
    rf.x = &run.vbx;
    const RefForwardOut o = ref_forward(rf);
    run.brstd = stat_array(c);
    run.brstd.fill([&](int64_t, int64_t j) { return o.rstd[size_t(j)]; });
    rstd = run.brstd.ptr();
    if (!rms) {
      run.bmean = stat_array(c);
      run.bmean.fill([&](int64_t, int64_t j) { return o.mean[size_t(j)]; });
      mean = run.bmean.ptr();
    }
  }

  run.dy = rows_array(c, c.dt);
  run.vdy = run.dy.fill_normal(rng);
  if (c.dx_alias == 0) run.dx = rows_array(c, c.dt);
  normkit::RowNormBackwardArgs b;
  b.kind = c.kind;
  b.normalized_ndim = int(c.row.size());
  b.weight_offset = c.weight_offset;
  b.residual_scale = c.residual_scale;
  b.ada_k = c.ada_k;
  b.ada_scale = c.ada_scale;
  b.dy = run.dy.ptr();
  b.x = run.bx.ptr();
  b.mean = mean;
  b.rstd = rstd;
  b.dx = (c.dx_alias == 1 ? run.dy : c.dx_alias == 2 ? run.bx : run.dx).ptr();
  if (c.weight) {
    b.weight = run.w.ptr();
    run.dw = param_array(c);
    b.dweight = run.dw.ptr();
  }
  if (c.bias) {
    run.db = param_array(c);
    b.dbias = run.db.ptr();
  }
  if (c.fused) {
    if (c.ds) {
      run.ds = rows_array(c, c.dt);
      run.vds = run.ds.fill_normal(rng);
      b.ds = run.ds.ptr();
    }
    run.dr = rows_array(c, c.dt);
    b.dresidual = run.dr.ptr();
    if (c.x_bias) {
      run.dxb = param_array(c);
      b.dx_bias = run.dxb.ptr();
    }
  }
  OnDevice dev(c.cuda, {&run.dy, &run.bx, &run.rstd, &run.mean, &run.brstd, &run.bmean,
                        &run.w, &run.dx, &run.dw, &run.db, &run.ds, &run.dr, &run.dxb});
  std::unique_ptr<unsigned char[]> ws;
  HostArray dev_ws;
  if (c.user_workspace) {
    const size_t n = normkit::row_norm_backward_workspace_size(b);
    if (c.cuda) {
      dev_ws = HostArray::compact(DType::Float64, {int64_t(n / 8 + 1)});
      dev_ws.to_device();
      b.workspace = dev_ws.ptr()->data;
    } else {
      ws.reset(new unsigned char[n + 64]);
      const uintptr_t p = reinterpret_cast<uintptr_t>(ws.get());
      b.workspace = ws.get() + ((64 - p % 64) % 64);
    }
    b.workspace_bytes = n;
  }
  normkit::row_norm_backward(b);
}

// Per-dtype tolerance of a stored result relative to the float64 reference of the same
// stored inputs: a few ulps of float32/float64 arithmetic; for 16-bit types the final
// rounding (2^-11, 2^-8 relative) dominates.
inline double tol_for(DType t) {
  switch (t) {
    case DType::Float32: return 1e-5;
    case DType::Float64: return 1e-12;
    case DType::Float16: return 2e-3;
    case DType::BFloat16: return 1.6e-2;
  }
  return 0;
}

// got vs ref within tol (see nk_ref::compare); mag: per-element magnitudes or nullptr.
#define NK_CHECK_CLOSE_MAG(what, got, ref, tol, mag, desc)                              \
  do {                                                                                  \
    const std::string nk_msg_ = ::nk_ref::compare((what), (got), (ref), (tol), (mag));  \
    NK_CHECK(nk_msg_.empty()) << nk_msg_ << " [" << (desc) << "]";                      \
  } while (0)
#define NK_CHECK_CLOSE(what, got, ref, tol, desc) \
  NK_CHECK_CLOSE_MAG(what, got, ref, tol, nullptr, desc)

#define NK_CHECK_PADDING(arr, what, desc)                                               \
  do {                                                                                  \
    std::string nk_where_;                                                              \
    NK_CHECK((arr).padding_intact(&nk_where_))                                          \
        << (what) << ": written outside the view at " << nk_where_ << " [" << (desc) << "]"; \
  } while (0)

// Compares a Run with the reference and checks that nothing outside the outputs' views
// was written. Inputs must be untouched too (padding of x etc. is NaN and stays NaN).
inline void check_run(const Case& c, Run& run) {
  const std::string desc = c.describe();
  const int64_t rows = c.rows(), H = c.H();
  const double tol = tol_for(c.dt);
  const double ptol = tol_for(c.pdt);
  const double stol = tol_for(normkit::stat_dtype(c.dt));

  // The fused add normalizes s rounded to x's dtype, the stored residual stream (as the
  // unfused torch composition `layer_norm(x + r)` does): the kernel's own s when it stored
  // one (checked against the reference below), the reference's rounded s otherwise.
  std::vector<double> s_ref;
  if (c.fused) {
    RefForward sf;
    sf.rows = rows;
    sf.H = H;
    sf.residual_scale = c.residual_scale;
    sf.x = &run.vx;
    sf.residual = &run.vr;
    if (c.x_bias) sf.x_bias = &run.vxb;
    s_ref = ref_forward(sf).s;
    for (double& v : s_ref) v = round_to(c.dt, v);
  }
  std::vector<double> s_used = s_ref;
  if (c.fused && c.store_s) s_used = (c.in_place ? run.r : run.s).values();

  RefForward rf;
  rf.kind = c.kind;
  rf.rows = rows;
  rf.H = H;
  rf.eps = c.eps;
  rf.weight_offset = c.weight_offset;
  rf.ada_k = c.ada_k;
  rf.ada_scale = c.ada_scale;
  rf.x = c.fused ? &s_used : &run.vx;
  if (c.weight) rf.weight = &run.vw;
  if (c.bias) rf.bias = &run.vb;
  const RefForwardOut fo = ref_forward(rf);

  HostArray& y = c.in_place ? run.x : run.y;
  NK_CHECK_CLOSE("y", y.values(), fo.y, tol, desc);
  NK_CHECK_PADDING(y, "y", desc);
  if (c.fused && c.store_s) {
    HostArray& s = c.in_place ? run.r : run.s;
    // s is x + x_bias + scale·r rounded to the dtype; the kernel may round twice
    // ((x + x_bias) + scale·r): allow one ulp of the dtype.
    const double s_tol = c.dt == DType::Float64 ? 1e-15 : c.dt == DType::Float32 ? 1e-6 : tol;
    NK_CHECK_CLOSE("residual_out", s_used, s_ref, s_tol, desc);
    NK_CHECK_PADDING(s, "residual_out", desc);
  }
  if (c.stats) {
    NK_CHECK_CLOSE("rstd", run.rstd.values(), fo.rstd, stol, desc);
    NK_CHECK_PADDING(run.rstd, "rstd", desc);
    if (c.kind != NormKind::RMS) {
      // mean's error is relative to the row's spread as much as to its own size.
      const std::vector<double> m = run.mean.values();
      int64_t bad = 0, first = 0;
      for (int64_t r = 0; r < rows; ++r) {
        const double ref = fo.mean[size_t(r)], spread = 1.0 / fo.rstd[size_t(r)];
        if (!(std::fabs(m[size_t(r)] - ref) <= stol * (std::fabs(ref) + spread))) {
          if (bad++ == 0) first = r;
        }
      }
      NK_CHECK(bad == 0) << "mean: " << bad << " of " << rows << " rows off; first row "
                         << first << ": got " << m[size_t(first)] << ", reference "
                         << fo.mean[size_t(first)] << " [" << desc << "]";
      NK_CHECK_PADDING(run.mean, "mean", desc);
    }
  }
  if (!c.in_place) {
    NK_CHECK_PADDING(run.x, "x", desc);
    if (c.fused) NK_CHECK_PADDING(run.r, "residual", desc);
  }
  if (!c.backward || c.in_place) return;

  RefBackward rb;
  rb.kind = c.kind;
  rb.rows = rows;
  rb.H = H;
  rb.eps = c.eps;
  rb.weight_offset = c.weight_offset;
  rb.residual_scale = c.residual_scale;
  rb.ada_k = c.ada_k;
  rb.ada_scale = c.ada_scale;
  rb.s = &run.vbx;
  rb.dy = &run.vdy;
  if (c.fused && c.ds) rb.ds = &run.vds;
  if (c.weight) rb.weight = &run.vw;
  const RefBackwardOut bo = ref_backward(rb);

  HostArray& dx = c.dx_alias == 1 ? run.dy : c.dx_alias == 2 ? run.bx : run.dx;
  NK_CHECK_CLOSE_MAG("dx", dx.values(), bo.dx, tol, &bo.dx_mag, desc);
  NK_CHECK_PADDING(dx, "dx", desc);
  if (c.weight) {
    NK_CHECK_CLOSE_MAG("dweight", run.dw.values(), bo.dweight, ptol, &bo.dweight_mag, desc);
    NK_CHECK_PADDING(run.dw, "dweight", desc);
  }
  if (c.bias) {
    NK_CHECK_CLOSE_MAG("dbias", run.db.values(), bo.dbias, ptol, &bo.dbias_mag, desc);
    NK_CHECK_PADDING(run.db, "dbias", desc);
  }
  if (c.fused) {
    NK_CHECK_CLOSE_MAG("dresidual", run.dr.values(), bo.dresidual, tol, &bo.dresidual_mag, desc);
    NK_CHECK_PADDING(run.dr, "dresidual", desc);
    if (c.x_bias) {
      NK_CHECK_CLOSE_MAG("dx_bias", run.dxb.values(), bo.dx_bias, ptol, &bo.dx_bias_mag, desc);
      NK_CHECK_PADDING(run.dxb, "dx_bias", desc);
    }
  }
}

// All output bytes of a run, in a fixed order, for bitwise comparisons.
inline std::vector<unsigned char> output_bytes(const Case& c, const Run& run) {
  std::vector<unsigned char> out;
  auto add = [&](const HostArray& a) {
    const std::vector<unsigned char> b = a.bytes();
    out.insert(out.end(), b.begin(), b.end());
  };
  add(c.in_place ? run.x : run.y);
  if (c.fused && c.store_s) add(c.in_place ? run.r : run.s);
  if (c.stats) {
    add(run.rstd);
    if (c.kind != NormKind::RMS) add(run.mean);
  }
  if (c.backward && !c.in_place) {
    add(run.dx);
    if (c.weight) add(run.dw);
    if (c.bias) add(run.db);
    if (c.fused) {
      add(run.dr);
      if (c.x_bias) add(run.dxb);
    }
  }
  return out;
}

// Restores the ISA and thread count a test changed, even when a check throws.
class RuntimeGuard {
 public:
  RuntimeGuard() : isa_(normkit::cpu_isa()), threads_(normkit::get_num_threads()) {}
  ~RuntimeGuard() {
    normkit::set_cpu_isa(isa_);
    normkit::set_num_threads(threads_);
  }
  RuntimeGuard(const RuntimeGuard&) = delete;
  RuntimeGuard& operator=(const RuntimeGuard&) = delete;

 private:
  std::string isa_;
  int threads_;
};

}  // namespace nk_case
