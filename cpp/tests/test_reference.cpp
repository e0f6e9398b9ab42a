// The float64 reference itself: hand-computed values, and its backward against central
// finite differences of its forward (so the kernels are compared with something right).
#include <cmath>
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
