// The parameter norms' C++ entry points (normkit/param_norm.hpp) without Python: weight norm
// (channels first and last, float and double) and spectral norm (power iterations, σ, the
// backward) against double-precision references written here from SPEC §9–10, thread
// invariance, bad input, and the CUDA backend (real or emulated) against the same.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "device_array.hpp"
#include "nk_test.hpp"
#include "normkit/normkit.hpp"

namespace {

using normkit::DType;
using normkit::TensorView;
using nk_test::Arr;

std::vector<double> normal(size_t n, unsigned seed, double loc = 0.0, double sc = 1.0) {
  std::mt19937_64 g(seed);
  std::normal_distribution<double> nd(loc, sc);
  std::vector<double> v(n);
  for (auto& e : v) e = nd(g);
  return v;
}

template <typename T>
Arr<T> make(std::vector<int64_t> shape, const std::vector<double>& vals, bool cuda) {
  Arr<T> a(std::move(shape));
  for (size_t i = 0; i < a.v.size(); ++i) a.v[i] = T(vals[i]);
  if (cuda) a.to_device();
  return a;
}

bool have_cuda() {
#if NORMKIT_TEST_WITH_CUDA
  int count = 0;
  return cudaGetDeviceCount(&count) == cudaSuccess && count > 0;
#else
  return false;
#endif
}

// ---- weight norm -------------------------------------------------------------------------

// (N, C, S) channels first, or (N, C) channels last (S = 1): channel c's elements.
struct WnShape {
  int64_t N, C, S;
  bool last;
};

int64_t at(const WnShape& s, int64_t n, int64_t c, int64_t k) { return (n * s.C + c) * s.S + k; }

void wn_reference(const WnShape& s, const std::vector<double>& v, const std::vector<double>& g,
                  const std::vector<double>& dw, std::vector<double>& w, std::vector<double>& norm,
                  std::vector<double>& dv, std::vector<double>& dg) {
  w.assign(v.size(), 0), dv.assign(v.size(), 0), norm.assign(size_t(s.C), 0), dg.assign(size_t(s.C), 0);
  for (int64_t c = 0; c < s.C; ++c) {
    double q = 0, d = 0;
    for (int64_t n = 0; n < s.N; ++n)
      for (int64_t k = 0; k < s.S; ++k) {
        const double x = v[size_t(at(s, n, c, k))];
        q += x * x, d += dw[size_t(at(s, n, c, k))] * x;
      }
    const double nr = std::sqrt(q);
    norm[size_t(c)] = nr;
    dg[size_t(c)] = d / nr;
    for (int64_t n = 0; n < s.N; ++n)
      for (int64_t k = 0; k < s.S; ++k) {
        const size_t i = size_t(at(s, n, c, k));
        w[i] = g[size_t(c)] * v[i] / nr;
        dv[i] = g[size_t(c)] / nr * dw[i] - g[size_t(c)] * dg[size_t(c)] / (nr * nr) * v[i];
      }
  }
}

struct WnRun {
  std::vector<double> w, norm, dv, dg;
};

template <typename T>
WnRun wn_core(const WnShape& s, const std::vector<double>& v, const std::vector<double>& g,
              const std::vector<double>& dw, bool cuda) {
  std::vector<int64_t> shape = s.last ? std::vector<int64_t>{s.N, s.C} : std::vector<int64_t>{s.N, s.C, s.S};
  Arr<T> V = make<T>(shape, v, cuda), G = make<T>({s.C}, g, cuda), DW = make<T>(shape, dw, cuda);
  Arr<T> W(shape), DV(shape), NORM({s.C}), DG({s.C});
  if (cuda) W.to_device(), DV.to_device(), NORM.to_device(), DG.to_device();
  normkit::WeightNormArgs a;
  a.channels_last = s.last;
  a.v = V.p(), a.g = G.p(), a.w = W.p(), a.norm = NORM.p();
  normkit::weight_norm_forward(a);
  normkit::WeightNormBackwardArgs b;
  b.channels_last = s.last;
  b.dw = DW.p(), b.v = V.p(), b.g = G.p(), b.norm = NORM.p(), b.dv = DV.p(), b.dg = DG.p();
  normkit::weight_norm_backward(b);
  W.to_host(), NORM.to_host(), DV.to_host(), DG.to_host();
  WnRun r;
  r.w.assign(W.v.begin(), W.v.end()), r.norm.assign(NORM.v.begin(), NORM.v.end());
  r.dv.assign(DV.v.begin(), DV.v.end()), r.dg.assign(DG.v.begin(), DG.v.end());
  return r;
}

const WnShape kWnShapes[] = {{1, 7, 5, false}, {1, 64, 1031, false}, {3, 4, 6, false},
                             {9, 1, 11, false}, {37, 5, 1, true}, {1000, 3, 1, true}, {2, 2, 1, true}};

double max_abs(const std::vector<double>& v) {
  double m = 1e-300;
  for (double e : v) m = std::max(m, std::fabs(e));
  return m;
}

void check_close(const std::vector<double>& got, const std::vector<double>& want, double tol,
                 const std::string& what) {
  const double scale = max_abs(want);
  for (size_t i = 0; i < want.size(); ++i)
    NK_CHECK(std::fabs(got[i] - want[i]) <= tol * scale) << what << "[" << i << "]: " << got[i]
                                                         << " vs " << want[i];
}

void weight_norm_cases(bool cuda) {
  for (const WnShape& s : kWnShapes) {
    const size_t n = size_t(s.N * s.C * s.S);
    const auto v = normal(n, 1u + unsigned(n), 0.3), g = normal(size_t(s.C), 2u, 1.0, 0.5),
               dw = normal(n, 3u);
    std::vector<double> w, norm, dv, dg;
    wn_reference(s, v, g, dw, w, norm, dv, dg);
    const std::string where = "shape (" + std::to_string(s.N) + ", " + std::to_string(s.C) + ", " +
                              std::to_string(s.S) + (s.last ? ") last" : ") first");
    const WnRun d = wn_core<double>(s, v, g, dw, cuda);
    check_close(d.w, w, 1e-13, where + " w");
    check_close(d.norm, norm, 1e-13, where + " norm");
    check_close(d.dv, dv, 1e-12, where + " dv");
    check_close(d.dg, dg, 1e-12, where + " dg");
    const WnRun f = wn_core<float>(s, v, g, dw, cuda);
    check_close(f.w, w, 2e-6, where + " float w");
    check_close(f.dv, dv, 2e-5, where + " float dv");
    check_close(f.dg, dg, 2e-5, where + " float dg");
  }
}

// ---- spectral norm -----------------------------------------------------------------------

struct SnRef {
  std::vector<double> out, u, v, dW;
  double sigma = 0;
};

SnRef sn_reference(int64_t R, int64_t Cc, const std::vector<double>& W, std::vector<double> u,
                   std::vector<double> v, int n_iter, const std::vector<double>& dout) {
  const double eps = 1e-12;
  auto normalize = [&](std::vector<double>& x) {
    double q = 0;
    for (double e : x) q += e * e;
    const double d = std::max(std::sqrt(q), eps);
    for (double& e : x) e /= d;
  };
  for (int it = 0; it < n_iter; ++it) {
    for (int64_t i = 0; i < R; ++i) {
      double s = 0;
      for (int64_t j = 0; j < Cc; ++j) s += W[size_t(i * Cc + j)] * v[size_t(j)];
      u[size_t(i)] = s;
    }
    normalize(u);
    for (int64_t j = 0; j < Cc; ++j) {
      double s = 0;
      for (int64_t i = 0; i < R; ++i) s += W[size_t(i * Cc + j)] * u[size_t(i)];
      v[size_t(j)] = s;
    }
    normalize(v);
  }
  SnRef r;
  for (int64_t i = 0; i < R; ++i)
    for (int64_t j = 0; j < Cc; ++j) r.sigma += u[size_t(i)] * W[size_t(i * Cc + j)] * v[size_t(j)];
  double dot = 0;
  for (size_t k = 0; k < W.size(); ++k) dot += dout[k] * W[k];
  r.out.resize(W.size()), r.dW.resize(W.size());
  for (int64_t i = 0; i < R; ++i)
    for (int64_t j = 0; j < Cc; ++j) {
      const size_t k = size_t(i * Cc + j);
      r.out[k] = W[k] / r.sigma;
      r.dW[k] = dout[k] / r.sigma - dot / (r.sigma * r.sigma) * u[size_t(i)] * v[size_t(j)];
    }
  r.u = u, r.v = v;
  return r;
}

template <typename T>
SnRef sn_core(int64_t R, int64_t Cc, const std::vector<double>& W, const std::vector<double>& u,
              const std::vector<double>& v, int n_iter, const std::vector<double>& dout, bool cuda) {
  Arr<T> Wa = make<T>({R, Cc}, W, cuda), U = make<T>({R}, u, cuda), V = make<T>({Cc}, v, cuda);
  Arr<T> D = make<T>({R, Cc}, dout, cuda), O({R, Cc}), DW({R, Cc}), S({1});
  if (cuda) O.to_device(), DW.to_device(), S.to_device();
  normkit::SpectralNormArgs a;
  a.weight = Wa.p(), a.u = U.p(), a.v = V.p(), a.n_power_iterations = n_iter;
  a.out = O.p(), a.sigma = S.p();
  normkit::spectral_norm_forward(a);
  normkit::SpectralNormBackwardArgs b;
  b.dout = D.p(), b.weight = Wa.p(), b.u = U.p(), b.v = V.p(), b.sigma = S.p(), b.dweight = DW.p();
  normkit::spectral_norm_backward(b);
  O.to_host(), U.to_host(), V.to_host(), S.to_host(), DW.to_host();
  SnRef r;
  r.out.assign(O.v.begin(), O.v.end()), r.u.assign(U.v.begin(), U.v.end());
  r.v.assign(V.v.begin(), V.v.end()), r.dW.assign(DW.v.begin(), DW.v.end());
  r.sigma = double(S.v[0]);
  return r;
}

struct SnShape {
  int64_t R, C;
};
const SnShape kSnShapes[] = {{7, 5}, {5, 7}, {1, 9}, {9, 1}, {130, 1031}};

void spectral_cases(bool cuda) {
  for (const SnShape& s : kSnShapes)
    for (int n_iter : {0, 1, 3}) {
      const size_t n = size_t(s.R * s.C);
      const auto W = normal(n, 5u + unsigned(n)), dout = normal(n, 6u);
      auto u = normal(size_t(s.R), 7u), v = normal(size_t(s.C), 8u);
      const SnRef ref = sn_reference(s.R, s.C, W, u, v, n_iter, dout);
      const std::string where = "shape (" + std::to_string(s.R) + ", " + std::to_string(s.C) +
                                ") iterations " + std::to_string(n_iter);
      const SnRef d = sn_core<double>(s.R, s.C, W, u, v, n_iter, dout, cuda);
      NK_CHECK(std::fabs(d.sigma - ref.sigma) <= 1e-12 * std::fabs(ref.sigma)) << where << " sigma";
      check_close(d.out, ref.out, 1e-12, where + " out");
      check_close(d.u, ref.u, 1e-12, where + " u");
      check_close(d.v, ref.v, 1e-12, where + " v");
      check_close(d.dW, ref.dW, 1e-11, where + " dW");
      const SnRef f = sn_core<float>(s.R, s.C, W, u, v, n_iter, dout, cuda);
      NK_CHECK(std::fabs(f.sigma - ref.sigma) <= 1e-5 * std::fabs(ref.sigma)) << where << " float sigma";
      check_close(f.out, ref.out, 1e-5, where + " float out");
      check_close(f.dW, ref.dW, 1e-4, where + " float dW");
    }
}

}  // namespace

NK_TEST(param_norm, weight_norm_matches_reference) { weight_norm_cases(false); }
NK_TEST(param_norm, spectral_norm_matches_reference) { spectral_cases(false); }

NK_TEST(param_norm_cuda, weight_norm_matches_reference) {
  if (!have_cuda()) NK_SKIP("no CUDA device (or built without CUDA)");
  weight_norm_cases(true);
}
NK_TEST(param_norm_cuda, spectral_norm_matches_reference) {
  if (!have_cuda()) NK_SKIP("no CUDA device (or built without CUDA)");
  spectral_cases(true);
}

NK_TEST(determinism, param_norm) {
  const WnShape s{3, 257, 131, false}, t{5003, 37, 1, true};
  const SnShape m{257, 1031};
  std::vector<WnRun> wn, wl;
  std::vector<SnRef> sn;
  for (int threads : {1, 2, 3}) {
    normkit::set_num_threads(threads);
    const size_t n = size_t(s.N * s.C * s.S), nl = size_t(t.N * t.C), nm = size_t(m.R * m.C);
    wn.push_back(wn_core<float>(s, normal(n, 1u), normal(size_t(s.C), 2u), normal(n, 3u), false));
    wl.push_back(wn_core<float>(t, normal(nl, 1u), normal(size_t(t.C), 2u), normal(nl, 3u), false));
    sn.push_back(sn_core<float>(m.R, m.C, normal(nm, 4u), normal(size_t(m.R), 5u),
                                normal(size_t(m.C), 6u), 2, normal(nm, 7u), false));
  }
  normkit::set_num_threads(2);
  for (size_t k = 1; k < 3; ++k) {
    NK_CHECK(wn[k].w == wn[0].w && wn[k].dv == wn[0].dv && wn[k].dg == wn[0].dg) << "weight norm, run " << k;
    NK_CHECK(wl[k].w == wl[0].w && wl[k].dv == wl[0].dv && wl[k].dg == wl[0].dg)
        << "weight norm channels last, run " << k;
    NK_CHECK(sn[k].out == sn[0].out && sn[k].u == sn[0].u && sn[k].v == sn[0].v &&
             sn[k].dW == sn[0].dW && sn[k].sigma == sn[0].sigma)
        << "spectral norm, run " << k;
  }
}

NK_TEST(errors, param_norm) {
  Arr<float> v({3, 4}), g({3}), w({3, 4}), g4({4});  // a 2-dim v is (N, C): 4 channels
  normkit::WeightNormArgs a;
  a.v = v.p(), a.g = g.p(), a.w = w.p();
  NK_CHECK_THROWS(normkit::weight_norm_forward(a), "g: expected shape (4,)");
  a.g = g4.p();
  NK_CHECK_THROWS(normkit::weight_norm_forward(a), "channel 0 has norm 0");
  a.w = nullptr;
  NK_CHECK_THROWS(normkit::weight_norm_forward(a), "out: is required");
  Arr<float> W({3, 4}, 1.0f), u({3}, 1.0f), vv({4}, 1.0f), u4({4}, 1.0f), out({3, 4}), zero({4});
  normkit::SpectralNormArgs s;
  s.weight = W.p(), s.u = u4.p(), s.v = vv.p(), s.out = out.p();
  NK_CHECK_THROWS(normkit::spectral_norm_forward(s), "u: expected shape (3,)");
  s.u = u.p();
  s.v = zero.p();
  NK_CHECK_THROWS(normkit::spectral_norm_forward(s), "v: has norm 0");
  s.v = vv.p();
  s.eps = -1;
  NK_CHECK_THROWS(normkit::spectral_norm_forward(s), "eps");
  s.eps = 1e-12;
  s.n_power_iterations = -2;
  NK_CHECK_THROWS(normkit::spectral_norm_forward(s), "n_power_iterations: expected >= 0");
  s.n_power_iterations = 1;
  Arr<double> u64({3}, 1.0);
  s.u = u64.p();
  NK_CHECK_THROWS(normkit::spectral_norm_forward(s), "u: expected dtype float32");
  s.u = u.p();
  Arr<float> W3({3, 4, 1});
  s.weight = W3.p();
  NK_CHECK_THROWS(normkit::spectral_norm_forward(s), "weight: expected a 2-dim");
  s.weight = W.p();
  s.out = u.p();
  NK_CHECK_THROWS(normkit::spectral_norm_forward(s), "out: expected shape (3, 4)");
  Arr<float> Z({3, 4});
  s.weight = Z.p(), s.out = out.p();
  NK_CHECK_THROWS(normkit::spectral_norm_forward(s), "sigma = 0");
  NK_CHECK(u.v[0] == 1.0f) << "a failing call leaves u as it was";
}
