// The float64 reference itself: hand-computed values, and its backward against central
// finite differences of its forward (so the kernels are compared with something right).
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "nk_test.hpp"
#include "reference.hpp"

namespace {

using namespace nk_ref;
using normkit::NormKind;

}  // namespace

NK_TEST(reference, hand_computed) {
  // Layer norm of [1, 2, 3, 4], eps = 0: mean 2.5, var 1.25, y = (x − 2.5)/sqrt(1.25).
  const std::vector<double> x = {1, 2, 3, 4};
  RefForward f;
  f.rows = 1;
  f.H = 4;
  f.eps = 0;
  f.x = &x;
  RefForwardOut o = ref_forward(f);
  const double expect[] = {-1.3416407864998738, -0.4472135954999579, 0.4472135954999579,
                           1.3416407864998738};
  for (int j = 0; j < 4; ++j) NK_CHECK(std::fabs(o.y[size_t(j)] - expect[j]) < 1e-15) << j;
  NK_CHECK(o.mean[0] == 2.5);
  NK_CHECK(std::fabs(o.rstd[0] - 0.8944271909999159) < 1e-15);
  // RMS norm of [3, 4], eps = 0: rms = sqrt(12.5); γ = [1, 2], offset 1 → scale [2, 3].
  const std::vector<double> x2 = {3, 4}, w = {1, 2};
  RefForward g;
  g.kind = NormKind::RMS;
  g.rows = 1;
  g.H = 2;
  g.eps = 0;
  g.weight_offset = 1;
  g.x = &x2;
  g.weight = &w;
  o = ref_forward(g);
  NK_CHECK(std::fabs(o.y[0] - 2 * 0.848528137423857) < 1e-14) << o.y[0];
  NK_CHECK(std::fabs(o.y[1] - 3 * 1.131370849898476) < 1e-14) << o.y[1];
  // AdaNorm of [1, 2, 3, 4], eps = 0: unbiased s = sqrt(5/3); ŷ = (x − 2.5)/s;
  // y = 2·(1 − 0.1·ŷ)·ŷ.
  RefForward h;
  h.kind = NormKind::Ada;
  h.rows = 1;
  h.H = 4;
  h.eps = 0;
  h.x = &x;
  o = ref_forward(h);
  const double s = std::sqrt(5.0 / 3.0);
  for (int j = 0; j < 4; ++j) {
    const double yh = (x[size_t(j)] - 2.5) / s;
    NK_CHECK(std::fabs(o.y[size_t(j)] - 2 * (1 - 0.1 * yh) * yh) < 1e-15) << j;
  }
  NK_CHECK(std::fabs(o.rstd[0] - 1 / s) < 1e-15);
  NK_CHECK(std::fabs(o.y[0] - -2.5937900077244502) < 1e-14) << o.y[0];  // ŷ_0 = −1.5·sqrt(3/5)
}

// AdaNorm's backward holds φ = scale·(1 − k·ŷ) constant (SPEC §8): against finite
// differences of L(x) = Σ dy·φ₀·ŷ(x), φ₀ taken at the base point.
NK_TEST(reference, ada_backward_matches_finite_differences_with_the_gradient_stop) {
  const int64_t rows = 3, H = 7;
  Rng rng(13);
  std::vector<double> x(rows * H), dy(rows * H);
  for (double& e : x) e = 0.3 + 1.2 * rng.normal();
  for (double& e : dy) e = rng.normal();
  const double k = 0.25, scale = 1.5, eps = 1e-2;
  auto xhat_of = [&](const std::vector<double>& xv) {
    RefForward f;
    f.kind = NormKind::Ada;
    f.rows = rows;
    f.H = H;
    f.eps = eps;
    f.ada_k = 0;  // y = ŷ
    f.ada_scale = 1;
    f.x = &xv;
    return ref_forward(f).y;
  };
  const std::vector<double> xh0 = xhat_of(x);
  std::vector<double> phi0(xh0.size());
  for (size_t i = 0; i < xh0.size(); ++i) phi0[i] = scale * (1 - k * xh0[i]);
  auto loss = [&]() {
    const std::vector<double> xh = xhat_of(x);
    double L = 0;
    for (size_t i = 0; i < xh.size(); ++i) L += dy[i] * phi0[i] * xh[i];
    return L;
  };
  RefBackward bk;
  bk.kind = NormKind::Ada;
  bk.rows = rows;
  bk.H = H;
  bk.eps = eps;
  bk.ada_k = k;
  bk.ada_scale = scale;
  const std::vector<double> x0 = x;
  bk.s = &x0;
  bk.dy = &dy;
  const RefBackwardOut g = ref_backward(bk);
  std::vector<double> d(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const double keep = x[i], hstep = 1e-6 * std::max(1.0, std::fabs(keep));
    x[i] = keep + hstep;
    const double lp = loss();
    x[i] = keep - hstep;
    const double lm = loss();
    x[i] = keep;
    d[i] = (lp - lm) / (2 * hstep);
  }
  const std::string m = compare("dx", d, g.dx, 1e-7);
  NK_CHECK(m.empty()) << m;
  // And the forward's y against the same formula: φ₀·ŷ at the base point.
  RefForward f;
  f.kind = NormKind::Ada;
  f.rows = rows;
  f.H = H;
  f.eps = eps;
  f.ada_k = k;
  f.ada_scale = scale;
  f.x = &x0;
  const std::vector<double> y = ref_forward(f).y;
  for (size_t i = 0; i < y.size(); ++i)
    NK_CHECK(std::fabs(y[i] - phi0[i] * xh0[i]) < 1e-14) << i;
}

// L = Σ dy·y + Σ ds·s; each analytic gradient against (L(p + h) − L(p − h)) / 2h.
NK_TEST(reference, backward_matches_finite_differences) {
  for (NormKind kind : {NormKind::Layer, NormKind::RMS}) {
    const int64_t rows = 3, H = 6;
    Rng rng(kind == NormKind::Layer ? 11 : 12);
    auto randv = [&](size_t n, double m, double sd) {
      std::vector<double> v(n);
      for (double& e : v) e = m + sd * rng.normal();
      return v;
    };
    std::vector<double> x = randv(rows * H, 0.5, 1), r = randv(rows * H, 0, 1),
                        xb = randv(H, 0, 0.3), w = randv(H, 1, 0.3), b = randv(H, 0, 0.3),
                        dy = randv(rows * H, 0, 1), ds = randv(rows * H, 0, 1);
    const double scale = 1.7, eps = 1e-3, offset = kind == NormKind::RMS ? 1.0 : 0.0;
    auto loss = [&]() {
      RefForward f;
      f.kind = kind;
      f.rows = rows;
      f.H = H;
      f.eps = eps;
      f.weight_offset = offset;
      f.residual_scale = scale;
      f.x = &x;
      f.residual = &r;
      f.x_bias = &xb;
      f.weight = &w;
      f.bias = &b;
      const RefForwardOut o = ref_forward(f);
      double L = 0;
      for (size_t i = 0; i < o.y.size(); ++i) L += dy[i] * o.y[i] + ds[i] * o.s[i];
      return L;
    };
    RefForward f;
    f.kind = kind;
    f.rows = rows;
    f.H = H;
    f.eps = eps;
    f.residual_scale = scale;
    f.x = &x;
    f.residual = &r;
    f.x_bias = &xb;
    const std::vector<double> s = ref_forward(f).s;
    RefBackward bk;
    bk.kind = kind;
    bk.rows = rows;
    bk.H = H;
    bk.eps = eps;
    bk.weight_offset = offset;
    bk.residual_scale = scale;
    bk.s = &s;
    bk.dy = &dy;
    bk.ds = &ds;
    bk.weight = &w;
    const RefBackwardOut g = ref_backward(bk);

    auto numeric = [&](std::vector<double>& p) {
      std::vector<double> d(p.size());
      for (size_t i = 0; i < p.size(); ++i) {
        const double keep = p[i], h = 1e-6 * std::max(1.0, std::fabs(keep));
        p[i] = keep + h;
        const double lp = loss();
        p[i] = keep - h;
        const double lm = loss();
        p[i] = keep;
        d[i] = (lp - lm) / (2 * h);
      }
      return d;
    };
    const char* k = kind == NormKind::Layer ? "layer" : "rms";
    std::string m;
    m = compare("dx", numeric(x), g.dx, 1e-7);
    NK_CHECK(m.empty()) << k << " " << m;
    m = compare("dresidual", numeric(r), g.dresidual, 1e-7);
    NK_CHECK(m.empty()) << k << " " << m;
    m = compare("dx_bias", numeric(xb), g.dx_bias, 1e-7);
    NK_CHECK(m.empty()) << k << " " << m;
    m = compare("dweight", numeric(w), g.dweight, 1e-7);
    NK_CHECK(m.empty()) << k << " " << m;
    m = compare("dbias", numeric(b), g.dbias, 1e-7);
    NK_CHECK(m.empty()) << k << " " << m;
  }
}
