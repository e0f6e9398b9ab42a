// The recurrent cells' C++ entry points (normkit/rnn.hpp) without Python: a double-precision
// reference of SPEC §12 written here (LSTM, GRU, Elman; LN over all gates or per gate), the
// backward against central differences of the core's own float64 forward, cells as one-step
// sequences, the workspace protocol, thread invariance and bad input. They need a CPU BLAS:
// the build passes the scipy-openblas32 library it found (NORMKIT_TEST_BLAS_LIBRARY; .ci/run
// gives it), else the groups skip.
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "device_array.hpp"
#include "nk_test.hpp"
#include "normkit/normkit.hpp"

#ifndef NORMKIT_TEST_BLAS_LIBRARY
#define NORMKIT_TEST_BLAS_LIBRARY ""
#endif

namespace {

using normkit::DType;
using normkit::RnnCell;
using normkit::TensorView;
using nk_test::Arr;

void need_blas() {
  if (normkit::cpu_blas_available()) return;
  const std::string path = NORMKIT_TEST_BLAS_LIBRARY;
  if (path.empty()) NK_SKIP("no CPU BLAS configured (NORMKIT_TEST_BLAS_LIBRARY)");
  normkit::load_cpu_blas(path, "scipy_");
}

struct Net {
  RnnCell cell;
  int64_t T, B, I, H, N;
  bool per_gate;
  std::vector<double> x, h0, c0, wih, whh, bih, bhh, lnxw, lnxb, lnhw, lnhb, lncw, lncb;
};

Net make_net(RnnCell cell, int64_t T, int64_t B, int64_t I, int64_t H, bool per_gate,
             unsigned seed) {
  std::mt19937_64 g(seed);
  std::normal_distribution<double> nd(0.0, 1.0);
  Net n{cell, T, B, I, H, normkit::rnn_gates(cell) * H, per_gate, {}, {}, {}, {}, {}, {}, {},
        {}, {}, {}, {}, {}, {}};
  auto fill = [&](std::vector<double>& a, int64_t count, double loc, double sc) {
    a.resize(size_t(count));
    for (auto& e : a) e = loc + sc * nd(g);
  };
  const bool elman = n.N == H;
  fill(n.x, T * B * I, 0, 1);
  fill(n.h0, B * H, 0, 0.5);
  fill(n.c0, B * H, 0, 0.5);
  fill(n.wih, n.N * I, 0, 0.5);
  fill(n.whh, n.N * H, 0, 0.5);
  fill(n.bih, n.N, 0, 0.3);
  fill(n.bhh, n.N, 0, 0.3);
  fill(n.lnxw, elman ? H : n.N, 1, 0.2);
  fill(n.lnxb, elman ? H : n.N, 0, 0.2);
  fill(n.lnhw, n.N, 1, 0.2);
  fill(n.lnhb, n.N, 0, 0.2);
  fill(n.lncw, H, 1, 0.2);
  fill(n.lncb, H, 0, 0.2);
  return n;
}

// LN of v[0..len) in place with γ, β (biased variance, two-pass in double).
void ln(double* v, int64_t len, const double* g, const double* b, double eps) {
  double m = 0, s = 0;
  for (int64_t j = 0; j < len; ++j) m += v[j];
  m /= double(len);
  for (int64_t j = 0; j < len; ++j) s += (v[j] - m) * (v[j] - m);
  const double r = 1.0 / std::sqrt(s / double(len) + eps);
  for (int64_t j = 0; j < len; ++j) v[j] = g[j] * (v[j] - m) * r + b[j];
}
double sig(double a) { return 1.0 / (1.0 + std::exp(-a)); }

// The reference sequence (SPEC §12) in double: y [T, B, H], h_n, c_n.
void reference(const Net& n, std::vector<double>& y, std::vector<double>& hn,
               std::vector<double>& cn) {
  const int64_t T = n.T, B = n.B, I = n.I, H = n.H, N = n.N;
  const double eps = 1e-5;
  std::vector<double> h = n.h0, c = n.c0, px(N), ph(N), a(N);
  y.assign(size_t(T * B * H), 0.0);
  const int G = int(N / H);
  const int parts = n.per_gate ? G : 1;
  const int64_t plen = N / parts;
  for (int64_t t = 0; t < T; ++t) {
    std::vector<double> h2(size_t(B * H)), c2(size_t(B * H));
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t k = 0; k < N; ++k) {
        double sx = 0, sh = 0;
        for (int64_t i = 0; i < I; ++i) sx += n.wih[k * I + i] * n.x[(t * B + b) * I + i];
        for (int64_t i = 0; i < H; ++i) sh += n.whh[k * H + i] * h[b * H + i];
        px[k] = sx;
        ph[k] = sh;
      }
      const double* hb = &h[b * H];
      if (n.cell == RnnCell::LSTM || n.cell == RnnCell::GRU) {
        for (int q = 0; q < parts; ++q) {
          ln(&px[q * plen], plen, &n.lnxw[q * plen], &n.lnxb[q * plen], eps);
          ln(&ph[q * plen], plen, &n.lnhw[q * plen], &n.lnhb[q * plen], eps);
        }
      }
      if (n.cell == RnnCell::LSTM) {
        std::vector<double> ct(H);
        for (int64_t j = 0; j < H; ++j) {
          auto A = [&](int q) { return px[q * H + j] + ph[q * H + j] + n.bih[q * H + j] + n.bhh[q * H + j]; };
          ct[j] = sig(A(1)) * c[b * H + j] + sig(A(0)) * std::tanh(A(2));
          a[j] = sig(A(3));
        }
        std::vector<double> lc = ct;
        ln(lc.data(), H, n.lncw.data(), n.lncb.data(), eps);
        for (int64_t j = 0; j < H; ++j) {
          h2[b * H + j] = a[j] * std::tanh(lc[j]);
          c2[b * H + j] = ct[j];
        }
      } else if (n.cell == RnnCell::GRU) {
        for (int64_t j = 0; j < H; ++j) {
          auto X = [&](int q) { return px[q * H + j] + n.bih[q * H + j]; };
          auto Hh = [&](int q) { return ph[q * H + j] + n.bhh[q * H + j]; };
          const double r = sig(X(0) + Hh(0)), z = sig(X(1) + Hh(1));
          const double nn = std::tanh(X(2) + r * Hh(2));
          h2[b * H + j] = (1 - z) * nn + z * hb[j];
        }
      } else {
        for (int64_t j = 0; j < H; ++j) a[j] = px[j] + ph[j] + n.bih[j] + n.bhh[j];
        ln(a.data(), H, n.lnxw.data(), n.lnxb.data(), eps);
        for (int64_t j = 0; j < H; ++j)
          h2[b * H + j] = n.cell == RnnCell::RNN_TANH ? std::tanh(a[j]) : std::max(a[j], 0.0);
      }
    }
    h = h2;
    c = c2;
    for (int64_t i = 0; i < B * H; ++i) y[size_t(t * B * H + i)] = h[size_t(i)];
  }
  hn = h;
  cn = c;
}

// The core's forward (and, when `grads` is given, backward of L = Σ y·dy) in T precision.
template <typename T>
struct Run {
  std::vector<double> y, hn, cn;
  std::vector<std::vector<double>> grads;  // dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh, dlnx_w, ...
};

template <typename T>
Run<T> run_core(const Net& n, const std::vector<double>* dy, bool with_workspace = false,
                bool device = false) {
  const bool lstm = n.cell == RnnCell::LSTM, elman = n.N == n.H;
  auto arr = [](const std::vector<double>& a, std::vector<int64_t> shape) {
    Arr<T> r(std::move(shape));
    for (size_t i = 0; i < a.size(); ++i) r.v[i] = T(a[i]);
    return r;
  };
  Arr<T> x = arr(n.x, {n.T, n.B, n.I}), h0 = arr(n.h0, {n.B, n.H}), c0 = arr(n.c0, {n.B, n.H});
  Arr<T> wih = arr(n.wih, {n.N, n.I}), whh = arr(n.whh, {n.N, n.H});
  Arr<T> bih = arr(n.bih, {n.N}), bhh = arr(n.bhh, {n.N});
  Arr<T> lxw = arr(n.lnxw, {int64_t(n.lnxw.size())}), lxb = arr(n.lnxb, {int64_t(n.lnxb.size())});
  Arr<T> lhw = arr(n.lnhw, {n.N}), lhb = arr(n.lnhb, {n.N});
  Arr<T> lcw = arr(n.lncw, {n.H}), lcb = arr(n.lncb, {n.H});
  Arr<T> y({n.T, n.B, n.H}), hn({n.B, n.H}), cn({n.B, n.H});
  Arr<T> res({normkit::rnn_reserve_size(n.cell, n.T, n.B, n.H)});
  if (device)
    for (Arr<T>* t : {&x, &h0, &c0, &wih, &whh, &bih, &bhh, &lxw, &lxb, &lhw, &lhb, &lcw, &lcb,
                      &y, &hn, &cn, &res})
      t->to_device();
  normkit::RnnForwardArgs a;
  a.cell = n.cell;
  a.per_gate = n.per_gate;
  a.x = x.p(), a.h0 = h0.p(), a.c0 = lstm ? c0.p() : nullptr;
  a.w_ih = wih.p(), a.w_hh = whh.p(), a.b_ih = bih.p(), a.b_hh = bhh.p();
  a.ln_x_weight = lxw.p(), a.ln_x_bias = lxb.p();
  if (!elman) a.ln_h_weight = lhw.p(), a.ln_h_bias = lhb.p();
  if (lstm) a.ln_c_weight = lcw.p(), a.ln_c_bias = lcb.p();
  a.y = y.p(), a.h_n = hn.p(), a.c_n = lstm ? cn.p() : nullptr;
  a.reserve = dy ? res.p() : nullptr;
  std::vector<char> ws;
  if (with_workspace) {
    ws.resize(normkit::rnn_forward_workspace_size(a));
    a.workspace = ws.data(), a.workspace_bytes = ws.size();
  }
  normkit::rnn_forward(a);
  for (Arr<T>* t : {&y, &hn, &cn}) t->to_host();
  Run<T> out;
  out.y.assign(y.v.begin(), y.v.end());
  out.hn.assign(hn.v.begin(), hn.v.end());
  out.cn.assign(cn.v.begin(), cn.v.end());
  if (!dy) return out;
  Arr<T> d = arr(*dy, {n.T, n.B, n.H});
  Arr<T> dx({n.T, n.B, n.I}), dh0({n.B, n.H}), dc0({n.B, n.H}), dwih({n.N, n.I}),
      dwhh({n.N, n.H}), dbih({n.N}), dbhh({n.N}), dlxw({int64_t(n.lnxw.size())}),
      dlxb({int64_t(n.lnxw.size())}), dlhw({n.N}), dlhb({n.N}), dlcw({n.H}), dlcb({n.H});
  if (device)
    for (Arr<T>* t : {&d, &dx, &dh0, &dc0, &dwih, &dwhh, &dbih, &dbhh, &dlxw, &dlxb, &dlhw, &dlhb,
                      &dlcw, &dlcb})
      t->to_device();
  normkit::RnnBackwardArgs b;
  b.cell = n.cell;
  b.per_gate = n.per_gate;
  b.dy = d.p(), b.x = x.p(), b.w_ih = wih.p(), b.w_hh = whh.p(), b.b_ih = bih.p(),
  b.b_hh = bhh.p(), b.ln_x_weight = lxw.p(), b.ln_x_bias = lxb.p();
  if (!elman) b.ln_h_weight = lhw.p(), b.ln_h_bias = lhb.p();
  if (lstm) b.ln_c_weight = lcw.p(), b.ln_c_bias = lcb.p();
  b.reserve = res.p();
  b.dx = dx.p(), b.dh0 = dh0.p(), b.dc0 = lstm ? dc0.p() : nullptr, b.dw_ih = dwih.p(),
  b.dw_hh = dwhh.p(), b.db_ih = dbih.p(), b.db_hh = dbhh.p(), b.dln_x_weight = dlxw.p(),
  b.dln_x_bias = dlxb.p();
  if (!elman) b.dln_h_weight = dlhw.p(), b.dln_h_bias = dlhb.p();
  if (lstm) b.dln_c_weight = dlcw.p(), b.dln_c_bias = dlcb.p();
  if (with_workspace) {
    ws.assign(normkit::rnn_backward_workspace_size(b), 0);
    b.workspace = ws.data(), b.workspace_bytes = ws.size();
  }
  normkit::rnn_backward(b);
  for (Arr<T>* g : {&dx, &dh0, &dc0, &dwih, &dwhh, &dbih, &dbhh, &dlxw, &dlxb, &dlhw, &dlhb,
                    &dlcw, &dlcb})
    g->to_host();
  for (Arr<T>* g : {&dx, &dh0, &dc0, &dwih, &dwhh, &dbih, &dbhh, &dlxw, &dlxb, &dlhw, &dlhb,
                    &dlcw, &dlcb})
    out.grads.emplace_back(g->v.begin(), g->v.end());
  return out;
}

const RnnCell kCells[] = {RnnCell::LSTM, RnnCell::GRU, RnnCell::RNN_TANH, RnnCell::RNN_RELU};

NK_TEST(rnn, forward_matches_reference) {
  need_blas();
  struct Shape { int64_t T, B, I, H; };
  for (RnnCell cell : kCells)
    for (Shape s : {Shape{3, 2, 4, 5}, Shape{1, 1, 3, 17}, Shape{4, 5, 2, 3}})
      for (bool pg : {false, true}) {
        if (pg && cell != RnnCell::LSTM && cell != RnnCell::GRU) continue;
        const Net n = make_net(cell, s.T, s.B, s.I, s.H, pg, 7u + unsigned(s.H));
        std::vector<double> y, hn, cn;
        reference(n, y, hn, cn);
        const Run<double> d = run_core<double>(n, nullptr);
        const Run<float> f = run_core<float>(n, nullptr);
        for (size_t i = 0; i < y.size(); ++i) {
          NK_CHECK(std::fabs(d.y[i] - y[i]) <= 1e-12) << "cell " << int(cell) << " y[" << i << "] " << d.y[i] << " vs " << y[i];
          NK_CHECK(std::fabs(f.y[i] - y[i]) <= 2e-5) << "float32 cell " << int(cell) << " y[" << i << "]";
        }
        for (size_t i = 0; i < hn.size(); ++i) NK_CHECK(std::fabs(d.hn[i] - hn[i]) <= 1e-12);
        if (cell == RnnCell::LSTM) {
          for (size_t i = 0; i < cn.size(); ++i) NK_CHECK(std::fabs(d.cn[i] - cn[i]) <= 1e-11);
        }
      }
}

NK_TEST(rnn, backward_matches_finite_differences) {
  need_blas();
  for (RnnCell cell : kCells) {
    Net n = make_net(cell, 3, 2, 3, 4, cell == RnnCell::GRU, 11u);
    std::mt19937_64 g(3);
    std::normal_distribution<double> nd(0.0, 1.0);
    std::vector<double> dy(size_t(n.T * n.B * n.H));
    for (auto& e : dy) e = nd(g);
    const Run<double> base = run_core<double>(n, &dy);
    auto loss = [&](const Net& m) {
      const Run<double> r = run_core<double>(m, nullptr);
      double s = 0;
      for (size_t i = 0; i < dy.size(); ++i) s += r.y[i] * dy[i];
      return s;
    };
    // (which gradient, the member it differentiates)
    std::vector<std::pair<int, std::vector<double> Net::*>> wrt = {
        {0, &Net::x}, {1, &Net::h0}, {3, &Net::wih}, {4, &Net::whh}, {5, &Net::bih},
        {6, &Net::bhh}, {7, &Net::lnxw}, {8, &Net::lnxb}};
    if (cell == RnnCell::LSTM) wrt.push_back({2, &Net::c0}), wrt.push_back({11, &Net::lncw}),
                               wrt.push_back({12, &Net::lncb});
    if (cell == RnnCell::LSTM || cell == RnnCell::GRU)
      wrt.push_back({9, &Net::lnhw}), wrt.push_back({10, &Net::lnhb});
    for (auto [k, member] : wrt) {
      const std::vector<double>& grad = base.grads[size_t(k)];
      for (size_t i = 0; i < (n.*member).size(); i += 3) {
        Net up = n, dn = n;
        const double h = 1e-6;
        (up.*member)[i] += h;
        (dn.*member)[i] -= h;
        const double fd = (loss(up) - loss(dn)) / (2 * h);
        NK_CHECK(std::fabs(fd - grad[i]) <= 1e-6 * std::max(1.0, std::fabs(fd)))
            << "cell " << int(cell) << " grad " << k << "[" << i << "]: " << grad[i] << " vs FD " << fd;
      }
    }
  }
}

NK_TEST(rnn, cells_and_workspace) {
  need_blas();
  const Net n = make_net(RnnCell::LSTM, 1, 3, 4, 5, false, 5u);
  const Run<double> seq = run_core<double>(n, nullptr);
  const Run<double> own = run_core<double>(n, nullptr, true);  // the caller's workspace
  for (size_t i = 0; i < seq.y.size(); ++i) NK_CHECK(seq.y[i] == own.y[i]);
  // The *_cell entry point: x [B, I], h_out [B, H].
  std::vector<double> x = n.x, h0 = n.h0, c0 = n.c0, wih = n.wih, whh = n.whh, hout(15), cout(15);
  const int64_t sx[2] = {3, 4}, sh[2] = {3, 5}, sw[2] = {20, 4}, sww[2] = {20, 5};
  TensorView vx = TensorView::contiguous(x.data(), DType::Float64, sx, 2);
  TensorView vh = TensorView::contiguous(h0.data(), DType::Float64, sh, 2);
  TensorView vc = TensorView::contiguous(c0.data(), DType::Float64, sh, 2);
  TensorView vwi = TensorView::contiguous(wih.data(), DType::Float64, sw, 2);
  TensorView vwh = TensorView::contiguous(whh.data(), DType::Float64, sww, 2);
  TensorView vo = TensorView::contiguous(hout.data(), DType::Float64, sh, 2);
  TensorView vco = TensorView::contiguous(cout.data(), DType::Float64, sh, 2);
  std::vector<double> bi = n.bih, bh = n.bhh, lxw = n.lnxw, lxb = n.lnxb, lhw = n.lnhw,
                      lhb = n.lnhb, lcw = n.lncw, lcb = n.lncb;
  const int64_t s20[1] = {20}, s5[1] = {5};
  TensorView p[8] = {TensorView::contiguous(bi.data(), DType::Float64, s20, 1),
                     TensorView::contiguous(bh.data(), DType::Float64, s20, 1),
                     TensorView::contiguous(lxw.data(), DType::Float64, s20, 1),
                     TensorView::contiguous(lxb.data(), DType::Float64, s20, 1),
                     TensorView::contiguous(lhw.data(), DType::Float64, s20, 1),
                     TensorView::contiguous(lhb.data(), DType::Float64, s20, 1),
                     TensorView::contiguous(lcw.data(), DType::Float64, s5, 1),
                     TensorView::contiguous(lcb.data(), DType::Float64, s5, 1)};
  normkit::RnnForwardArgs a;
  a.x = &vx, a.h0 = &vh, a.c0 = &vc, a.w_ih = &vwi, a.w_hh = &vwh, a.y = &vo, a.c_n = &vco;
  a.b_ih = &p[0], a.b_hh = &p[1], a.ln_x_weight = &p[2], a.ln_x_bias = &p[3];
  a.ln_h_weight = &p[4], a.ln_h_bias = &p[5], a.ln_c_weight = &p[6], a.ln_c_bias = &p[7];
  normkit::rnn_cell_forward(a);
  for (size_t i = 0; i < hout.size(); ++i) {
    NK_CHECK(hout[i] == seq.y[i]) << "cell h'[" << i << "]";
    NK_CHECK(cout[i] == seq.cn[i]) << "cell c'[" << i << "]";
  }
  // A workspace too small is refused, naming it.
  std::vector<char> small(16);
  a.workspace = small.data(), a.workspace_bytes = small.size();
  NK_CHECK_THROWS(normkit::rnn_cell_forward(a), "workspace: expected at least");
}

NK_TEST(determinism, rnn) {
  need_blas();
  for (RnnCell cell : kCells) {
    const Net n = make_net(cell, 4, 37, 19, 33, false, 9u);
    std::vector<double> dy(size_t(n.T * n.B * n.H), 0.5);
    normkit::set_num_threads(1);
    const Run<float> one = run_core<float>(n, &dy);
    normkit::set_num_threads(2);
    const Run<float> two = run_core<float>(n, &dy);
    normkit::set_num_threads(3);
    const Run<float> three = run_core<float>(n, &dy);
    NK_CHECK(one.y == two.y && one.y == three.y) << "y, cell " << int(cell);
    for (size_t k = 0; k < one.grads.size(); ++k)
      NK_CHECK(one.grads[k] == two.grads[k] && one.grads[k] == three.grads[k])
          << "gradient " << k << ", cell " << int(cell);
  }
}

NK_TEST(errors, rnn) {
  Arr<float> x({2, 3, 4}), wih({12, 4}), whh({12, 3}), y({2, 3, 3}), h0({3, 3});
  normkit::RnnForwardArgs a;
  a.x = x.p(), a.w_ih = wih.p(), a.w_hh = whh.p(), a.y = y.p();
  Arr<float> bad_wih({12, 5});
  a.w_ih = bad_wih.p();
  NK_CHECK_THROWS(normkit::rnn_forward(a), "w_ih: expected shape (12, 4)");
  a.w_ih = wih.p();
  Arr<float> bad_h({2, 3});
  a.h0 = bad_h.p();
  NK_CHECK_THROWS(normkit::rnn_forward(a), "h0: expected shape (3, 3)");
  a.h0 = h0.p();
  Arr<double> whh64({12, 3});
  a.w_hh = whh64.p();
  NK_CHECK_THROWS(normkit::rnn_forward(a), "w_hh: expected dtype float32");
  a.w_hh = whh.p();
  a.cell = RnnCell::GRU;
  NK_CHECK_THROWS(normkit::rnn_forward(a), "w_hh: expected shape (3*hidden_size, hidden_size)");
  a.cell = RnnCell::LSTM;
  a.eps = -1;
  NK_CHECK_THROWS(normkit::rnn_forward(a), "eps: expected a finite value >= 0");
  a.eps = 1e-5;
  a.zoneout_h = 2.0;
  NK_CHECK_THROWS(normkit::rnn_forward(a), "zoneout_h: expected a probability");
  a.zoneout_h = 0.0;
  Arr<float> res({5});
  a.reserve = res.p();
  NK_CHECK_THROWS(normkit::rnn_forward(a), "reserve: expected shape");
  a.reserve = nullptr;
  a.y = x.p();  // y overlapping (being) x
  NK_CHECK_THROWS(normkit::rnn_forward(a), "y: expected shape");
  normkit::RnnBackwardArgs b;
  b.x = x.p(), b.w_ih = wih.p(), b.w_hh = whh.p();
  NK_CHECK_THROWS(normkit::rnn_backward(b), "reserve: is required");
}

// The CUDA backend (cuBLAS; the emulation build's stand-in on the CPU BLAS): forward against
// the reference, every gradient against the CPU backend's (itself checked against finite
// differences above), float64 and float32, per gate, every cell.
NK_TEST(rnn_cuda, matches_reference_and_cpu) {
#if !NORMKIT_TEST_WITH_CUDA
  NK_SKIP("built without CUDA");
#else
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) NK_SKIP("no CUDA device");
  need_blas();
  struct Shape { int64_t T, B, I, H; };
  for (RnnCell cell : kCells)
    for (Shape sh : {Shape{3, 2, 4, 5}, Shape{2, 3, 3, 17}})
      for (bool pg : {false, true}) {
        if (pg && cell != RnnCell::LSTM && cell != RnnCell::GRU) continue;
        const Net n = make_net(cell, sh.T, sh.B, sh.I, sh.H, pg, 21u + unsigned(sh.H));
        std::vector<double> y, hn, cn;
        reference(n, y, hn, cn);
        std::vector<double> dy(y.size());
        for (size_t i = 0; i < dy.size(); ++i) dy[i] = std::sin(double(i));
        const Run<double> gpu = run_core<double>(n, &dy, false, true);
        const Run<double> cpu = run_core<double>(n, &dy, false, false);
        const Run<float> gpu32 = run_core<float>(n, &dy, false, true);
        for (size_t i = 0; i < y.size(); ++i) {
          NK_CHECK(std::fabs(gpu.y[i] - y[i]) <= 1e-12) << "cell " << int(cell) << " y[" << i << "]";
          NK_CHECK(std::fabs(gpu32.y[i] - y[i]) <= 2e-5) << "float32 cell " << int(cell) << " y[" << i << "]";
        }
        for (size_t i = 0; i < hn.size(); ++i) NK_CHECK(std::fabs(gpu.hn[i] - hn[i]) <= 1e-12);
        for (size_t k = 0; k < cpu.grads.size(); ++k) {
          double scale = 1e-300;
          for (double v : cpu.grads[k]) scale = std::max(scale, std::fabs(v));
          for (size_t i = 0; i < cpu.grads[k].size(); ++i)
            NK_CHECK(std::fabs(gpu.grads[k][i] - cpu.grads[k][i]) <= 1e-12 * scale * 10)
                << "cell " << int(cell) << " per_gate " << pg << " gradient " << k << "[" << i
                << "]: " << gpu.grads[k][i] << " vs CPU " << cpu.grads[k][i];
        }
      }
  NK_CHECK(!normkit::cublas_info().empty());
#endif
}

// In its own process (ctest entry rnn_noblas): before any BLAS is set, a call says what to do.
NK_TEST(rnn_noblas, clear_error) {
  if (normkit::cpu_blas_available()) NK_SKIP("a BLAS is linked in (NORMKIT_CBLAS)");
  Arr<float> x({2, 3, 4}), wih({12, 4}), whh({12, 3}), y({2, 3, 3});
  normkit::RnnForwardArgs a;
  a.x = x.p(), a.w_ih = wih.p(), a.w_hh = whh.p(), a.y = y.p();
  NK_CHECK_THROWS(normkit::rnn_forward(a), "no CPU BLAS is loaded");
  NK_CHECK_THROWS(normkit::load_cpu_blas("/nonexistent/libnothing.so"), "cannot load");
}

}  // namespace
