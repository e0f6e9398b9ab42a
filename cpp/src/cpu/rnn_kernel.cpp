// The recurrent cells' fused step (SPEC §12), forward and backward, written once against
// Vec<C> and compiled once per ISA: per batch row, the LN statistics of the step's input and
// recurrent products, the gates and the state update (forward), or the gates', LN's and
// state's gradients (backward), in a few passes over the row while it sits in L1/L2. The
// matrix products around it are the BLAS's (cpu/rnn_dispatch.cpp). Gate math:
// common/rnn_math.hpp.
//
// Assumptions: the dispatcher prepared `s` (cpu/rnn_prep.hpp): B >= 1, H >= 1, every
// parameter array present, C = the data type. No static initializers (ISA flags).
#include <cmath>
#include <cstdint>

#include "common/rnn_math.hpp"
#include "cpu/kernels.hpp"
#include "cpu/vec/loops.hpp"
#include "cpu/vec/moments.hpp"
#include "cpu/vec/vec.hpp"

namespace normkit::cpu::NK_CPU_ISA {
namespace {

using detail::RnnReserve;
using detail::RnnShape;

// body(j, n) over [0, len) in vectors, the tail a partial vector (Note [One code path per
// element]: the same instructions for every element).
template <typename V, typename F>
NK_ALWAYS_INLINE void vec_loop(int64_t len, F&& body) {
  constexpr int64_t L = V::size;
  int64_t j = 0;
  for (; j + L <= len; j += L) body(j, L);
  if (j < len) body(j, len - j);
}

// Mean and 1/sqrt(var + eps) of n contiguous values (exact chunked two-pass, as the row
// norms: Note [Variance by chunks]).
template <typename C>
NK_ALWAYS_INLINE void ln_stats(const C* v, int64_t n, double eps, C& mean, C& rstd) {
  double m, m2;
  layer_stats<C, C>(v, n, m, m2);
  mean = C(m);
  rstd = C(1.0 / std::sqrt(m2 / double(n) + eps));
}

// The reserve's row (t, b) of one block.
template <typename C>
struct Reserve {
  C* base;
  RnnReserve lay;
  int64_t TB, B;
  C* row(RnnReserve::Block k, int64_t t, int64_t b) const {
    return base + lay.offset[k] * TB + (t * B + b) * lay.width[k];
  }
};

template <typename C>
Reserve<C> reserve_of(const RnnStepPrep& s) {
  const RnnShape& sh = *s.shape;
  return {static_cast<C*>(s.reserve), detail::rnn_reserve_layout(sh.cell, sh.H), sh.T * sh.B,
          sh.B};
}

template <typename C>
const C* seq_row(const detail::SeqRows& r, int64_t t, int64_t b) {
  return r.p ? static_cast<const C*>(r.p) + t * r.st + b * r.sb : nullptr;
}

// A zoneout mask's vector at j, or the constant.
template <typename V, typename C>
NK_ALWAYS_INLINE V mask_at(const C* m, int64_t j, int64_t n, V constant) {
  return m ? ld<C, V>(m + j, n) : constant;
}

// Σ over a row's chunks, in order: each chunk's rows are one thread's, its partials its own.
template <typename F>
void for_chunks(const RnnStepPrep& s, F&& row) {
  const int64_t B = s.shape->B;
  parallel_ranges(s.threads, s.nchunks, [&](int, int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      const int64_t r1 = (c + 1) * s.chunk_rows < B ? (c + 1) * s.chunk_rows : B;
      for (int64_t r = c * s.chunk_rows; r < r1; ++r) row(c, r);
    }
  });
}

// acc[j..j+n) += v.
template <typename V, typename C>
NK_ALWAYS_INLINE void add_to(C* acc, int64_t j, int64_t n, V v) {
  st<C, V>(ld<C, V>(acc + j, n) + v, acc + j, n, false);
}

// The two LNs of a row (LSTM, GRU): the statistics of px and ph (over all N or per gate),
// then, vector by vector of each gate g, the normalized x̂_x, x̂_h (saved to the reserve when
// xhx is not null) handed to body(o, n, x̂_x, x̂_h), o the offset in the row. rx, rh: the
// parts' rstd (the reserve's statistics).
template <typename V, typename C, typename F>
NK_ALWAYS_INLINE void two_lns(const RnnShape& sh, const C* px, const C* ph, C* xhx, C* xhh,
                              C (&rx)[4], C (&rh)[4], F&& body) {
  const int parts = sh.per_gate ? sh.G : 1;
  const int64_t plen = sh.N / parts, H = sh.H;
  C mx[4], mh[4];
  for (int k = 0; k < parts; ++k) {
    ln_stats(px + k * plen, plen, sh.eps, mx[k], rx[k]);
    ln_stats(ph + k * plen, plen, sh.eps, mh[k], rh[k]);
  }
  for (int k = parts; k < 4; ++k) rx[k] = rx[0], rh[k] = rh[0];
  for (int g = 0; g < sh.G; ++g) {
    const int k = sh.per_gate ? g : 0;
    const V vmx = V::set1(mx[k]), vrx = V::set1(rx[k]), vmh = V::set1(mh[k]),
            vrh = V::set1(rh[k]);
    vec_loop<V>(H, [&](int64_t j, int64_t n) NK_INLINE_LAMBDA {
      const int64_t o = g * H + j;
      const V xx = (ld<C, V>(px + o, n) - vmx) * vrx;
      const V xh = (ld<C, V>(ph + o, n) - vmh) * vrh;
      if (xhx != nullptr) {
        st<C, V>(xx, xhx + o, n, false);
        st<C, V>(xh, xhh + o, n, false);
      }
      body(o, n, xx, xh);
    });
  }
}

// ---------------------------------------------------------------------------------------
// LSTM
// ---------------------------------------------------------------------------------------

template <typename C>
void lstm_forward(const RnnStepPrep& s) {
  using V = Vec<C>;
  const RnnShape& sh = *s.shape;
  const int64_t H = sh.H, N = sh.N, t = s.t;
  const C *gx = static_cast<const C*>(s.lnx_w), *bx = static_cast<const C*>(s.lnx_b);
  const C *gh = static_cast<const C*>(s.lnh_w), *bh = static_cast<const C*>(s.lnh_b);
  const C *gc = static_cast<const C*>(s.lnc_w), *bc = static_cast<const C*>(s.lnc_b);
  const C* bias = static_cast<const C*>(s.bias);
  const bool train = s.reserve != nullptr;
  const Reserve<C> R = train ? reserve_of<C>(s) : Reserve<C>{};
  const V zo_h = V::set1(C(s.zo_h)), zo_c = V::set1(C(s.zo_c));
  for_chunks(s, [&](int64_t, int64_t r) {
    const C* px = static_cast<const C*>(s.px) + r * N;
    C* a = static_cast<C*>(s.ph) + r * N;  // ph in, the pre-activations / scratch out
    const C* hp = static_cast<const C*>(s.h_prev) + r * H;
    const C* cp = static_cast<const C*>(s.c_prev) + r * H;
    C* hn = static_cast<C*>(s.h_next) + r * H;
    C* cn = static_cast<C*>(s.c_next) + r * H;
    C* y = static_cast<C*>(s.y.p) + t * s.y.st + r * s.y.sb;
    const C* mh = seq_row<C>(s.mask_h, t, r);
    const C* mc = seq_row<C>(s.mask_c, t, r);
    C rx[4], rh[4];
    C* xhx = train ? R.row(RnnReserve::XhatX, t, r) : nullptr;
    C* xhh = train ? R.row(RnnReserve::XhatH, t, r) : nullptr;
    two_lns<V>(sh, px, a, xhx, xhh, rx, rh, [&](int64_t o, int64_t n, V xx, V xh) NK_INLINE_LAMBDA {
      const V v = (V::fmadd(ld<C, V>(gx + o, n), xx, ld<C, V>(bx + o, n)) +
                   V::fmadd(ld<C, V>(gh + o, n), xh, ld<C, V>(bh + o, n))) +
                  ld<C, V>(bias + o, n);
      st<C, V>(v, a + o, n, false);
    });
    C* gates = train ? R.row(RnnReserve::Gates, t, r) : nullptr;
    vec_loop<V>(H, [&](int64_t j, int64_t n) NK_INLINE_LAMBDA {
      const auto g = detail::rnn::lstm_gates(ld<C, V>(a + j, n), ld<C, V>(a + H + j, n),
                                             ld<C, V>(a + 2 * H + j, n),
                                             ld<C, V>(a + 3 * H + j, n), ld<C, V>(cp + j, n));
      if (train) {
        st<C, V>(g.i, gates + j, n, false);
        st<C, V>(g.f, gates + H + j, n, false);
        st<C, V>(g.g, gates + 2 * H + j, n, false);
        st<C, V>(g.o, gates + 3 * H + j, n, false);
      }
      st<C, V>(g.c, a + j, n, false);  // c̃ in slot i, o kept in slot o
      st<C, V>(g.o, a + 3 * H + j, n, false);
    });
    C mean_c, rstd_c;
    ln_stats(a, H, sh.eps, mean_c, rstd_c);
    const V vmc = V::set1(mean_c), vrc = V::set1(rstd_c);
    C* ctil = train ? R.row(RnnReserve::CTil, t, r) : nullptr;
    C* hprev = train ? R.row(RnnReserve::HPrev, t, r) : nullptr;
    C* cprev = train ? R.row(RnnReserve::CPrev, t, r) : nullptr;
    vec_loop<V>(H, [&](int64_t j, int64_t n) NK_INLINE_LAMBDA {
      const V ct = ld<C, V>(a + j, n);
      const V ch = (ct - vmc) * vrc;
      const V tc = detail::vmath::tanh(V::fmadd(ld<C, V>(gc + j, n), ch, ld<C, V>(bc + j, n)));
      const V ht = ld<C, V>(a + 3 * H + j, n) * tc;
      const V h_prev = ld<C, V>(hp + j, n), c_prev = ld<C, V>(cp + j, n);
      const V h = detail::rnn::zoneout(mask_at<V>(mh, j, n, zo_h), h_prev, ht);
      const V c = detail::rnn::zoneout(mask_at<V>(mc, j, n, zo_c), c_prev, ct);
      st<C, V>(h, y + j, n, false);
      st<C, V>(h, hn + j, n, false);
      st<C, V>(c, cn + j, n, false);
      if (train) {
        st<C, V>(ct, ctil + j, n, false);
        st<C, V>(h_prev, hprev + j, n, false);
        st<C, V>(c_prev, cprev + j, n, false);
      }
    });
    if (train) {
      C* stats = R.row(RnnReserve::Stats, t, r);
      for (int k = 0; k < 4; ++k) stats[k] = rx[k], stats[4 + k] = rh[k];
      stats[8] = mean_c;
      stats[9] = rstd_c;
    }
  });
}

// The LN backward of one part: dv = rstd·(g − mean(g) − x̂·mean(g·x̂)), g = dout·γ, given the
// two means; written over `out`.
template <typename V, typename C>
NK_ALWAYS_INLINE void ln_backward_part(const C* dout, const C* gamma, const C* xhat, int64_t o0,
                                       int64_t len, C rstd, C m1, C m2, C* out) {
  const V vr = V::set1(rstd), v1 = V::set1(m1), v2 = V::set1(m2);
  vec_loop<V>(len, [&](int64_t j, int64_t n) NK_INLINE_LAMBDA {
    const int64_t o = o0 + j;
    const V gg = ld<C, V>(dout + o, n) * ld<C, V>(gamma + o, n);
    const V xh = ld<C, V>(xhat + o, n);
    st<C, V>(vr * (gg - v1 - xh * v2), out + o, n, false);
  });
}

// Σ g and Σ g·x̂ over one part (g = dout·γ), divided by len; and the parameter partials
// Σ dout·x̂ (into dgamma) — Σ dout (into dsum) when dsum is not null.
template <typename V, typename C>
NK_ALWAYS_INLINE void ln_sums_part(const C* dout, const C* gamma, const C* xhat, int64_t o0,
                                   int64_t len, C* dgamma, C* dsum, C& m1, C& m2) {
  V s1 = V::zero(), s2 = V::zero();
  vec_loop<V>(len, [&](int64_t j, int64_t n) NK_INLINE_LAMBDA {
    const int64_t o = o0 + j;
    const V d = ld<C, V>(dout + o, n);
    const V xh = ld<C, V>(xhat + o, n);
    const V gg = d * ld<C, V>(gamma + o, n);
    s1 = s1 + gg;
    s2 = V::fmadd(gg, xh, s2);
    add_to<V>(dgamma, o, n, d * xh);
    if (dsum) add_to<V>(dsum, o, n, d);
  });
  m1 = s1.sum() / C(len);
  m2 = s2.sum() / C(len);
}

template <typename C>
void lstm_backward(const RnnStepPrep& s) {
  using V = Vec<C>;
  const RnnShape& sh = *s.shape;
  const int64_t H = sh.H, N = sh.N, t = s.t;
  const int parts = sh.per_gate ? 4 : 1;
  const int64_t plen = N / parts;
  const C *gx = static_cast<const C*>(s.lnx_w), *gh = static_cast<const C*>(s.lnh_w);
  const C *gc = static_cast<const C*>(s.lnc_w), *bc = static_cast<const C*>(s.lnc_b);
  const Reserve<C> R = reserve_of<C>(s);
  const V zo_h = V::set1(C(s.zo_h)), zo_c = V::set1(C(s.zo_c)), one = V::set1(C(1));
  for_chunks(s, [&](int64_t c, int64_t r) {
    C* P = static_cast<C*>(s.partials) + c * s.partial_width;
    C *p_db = P, *p_gx = P + N, *p_gh = P + 2 * N, *p_gc = P + 3 * N, *p_bc = P + 3 * N + H;
    const C* dy = seq_row<C>(s.dy, t, r);
    const C* dhs = static_cast<const C*>(s.dh_in) + r * H;
    const C* dcs = static_cast<const C*>(s.dc_in) + r * H;
    C* dho = static_cast<C*>(s.dh_out) + r * H;
    C* dco = static_cast<C*>(s.dc_out) + r * H;
    C* da = static_cast<C*>(s.dph) + r * N;  // da, then dph in place
    C* dpx = static_cast<C*>(s.dpx) + r * N;  // scratch dĉ in [0, H), then dpx
    const C* mh = seq_row<C>(s.mask_h, t, r);
    const C* mc = seq_row<C>(s.mask_c, t, r);
    const C* gates = R.row(RnnReserve::Gates, t, r);
    const C* ctil = R.row(RnnReserve::CTil, t, r);
    const C* cprev = R.row(RnnReserve::CPrev, t, r);
    const C* xhx = R.row(RnnReserve::XhatX, t, r);
    const C* xhh = R.row(RnnReserve::XhatH, t, r);
    const C* stats = R.row(RnnReserve::Stats, t, r);
    const V vmc = V::set1(stats[8]), vrc = V::set1(stats[9]);
    // 1: through h̃ = o·tanh(LN_c(c̃)).
    V s1 = V::zero(), s2 = V::zero();
    vec_loop<V>(H, [&](int64_t j, int64_t n) NK_INLINE_LAMBDA {
      const V dh = (dy ? ld<C, V>(dy + j, n) : V::zero()) + ld<C, V>(dhs + j, n);
      const V m = mask_at<V>(mh, j, n, zo_h);
      const V dht = (one - m) * dh;
      st<C, V>(m * dh, dho + j, n, false);
      const V ch = (ld<C, V>(ctil + j, n) - vmc) * vrc;
      const V tc = detail::vmath::tanh(V::fmadd(ld<C, V>(gc + j, n), ch, ld<C, V>(bc + j, n)));
      const V o = ld<C, V>(gates + 3 * H + j, n);
      const V du = dht * o * (one - tc * tc);
      add_to<V>(p_gc, j, n, du * ch);
      add_to<V>(p_bc, j, n, du);
      const V dch = du * ld<C, V>(gc + j, n);
      st<C, V>(dch, dpx + j, n, false);
      s1 = s1 + dch;
      s2 = V::fmadd(dch, ch, s2);
      st<C, V>(detail::rnn::sigmoid_grad(dht * tc, o), da + 3 * H + j, n, false);
    });
    const V m1 = V::set1(s1.sum() / C(H)), m2 = V::set1(s2.sum() / C(H));
    // 2: c̃'s gradient (through LN_c and the next step's state), the gates'.
    vec_loop<V>(H, [&](int64_t j, int64_t n) NK_INLINE_LAMBDA {
      const V ch = (ld<C, V>(ctil + j, n) - vmc) * vrc;
      const V dcs_v = ld<C, V>(dcs + j, n);
      const V m = mask_at<V>(mc, j, n, zo_c);
      const V dct = V::fmadd(vrc, ld<C, V>(dpx + j, n) - m1 - ch * m2, (one - m) * dcs_v);
      const V i = ld<C, V>(gates + j, n), f = ld<C, V>(gates + H + j, n),
              g = ld<C, V>(gates + 2 * H + j, n);
      const auto d = detail::rnn::lstm_gate_grads(dct, i, f, g, ld<C, V>(cprev + j, n));
      st<C, V>(V::fmadd(m, dcs_v, d.c_prev), dco + j, n, false);
      st<C, V>(d.ai, da + j, n, false);
      st<C, V>(d.af, da + H + j, n, false);
      st<C, V>(d.ag, da + 2 * H + j, n, false);
    });
    // 3, 4: the two LNs' backward, part by part; Σda is every bias's gradient.
    for (int k = 0; k < parts; ++k) {
      const int64_t o0 = k * plen;
      C x1, x2, h1, h2;
      ln_sums_part<V>(da, gx, xhx, o0, plen, p_gx, p_db, x1, x2);
      ln_sums_part<V>(da, gh, xhh, o0, plen, p_gh, static_cast<C*>(nullptr), h1, h2);
      ln_backward_part<V>(da, gx, xhx, o0, plen, stats[k], x1, x2, dpx);
      ln_backward_part<V>(da, gh, xhh, o0, plen, stats[4 + k], h1, h2, da);
    }
  });
}

// ---------------------------------------------------------------------------------------
// GRU
// ---------------------------------------------------------------------------------------

template <typename C>
void gru_forward(const RnnStepPrep& s) {
  using V = Vec<C>;
  const RnnShape& sh = *s.shape;
  const int64_t H = sh.H, N = sh.N, t = s.t;
  const C *gx = static_cast<const C*>(s.lnx_w), *bx = static_cast<const C*>(s.lnx_b);
  const C *gh = static_cast<const C*>(s.lnh_w), *bh = static_cast<const C*>(s.lnh_b);
  const C *bih = static_cast<const C*>(s.bias), *bhh = static_cast<const C*>(s.bias_h);
  const bool train = s.reserve != nullptr;
  const Reserve<C> R = train ? reserve_of<C>(s) : Reserve<C>{};
  const V zo_h = V::set1(C(s.zo_h));
  for_chunks(s, [&](int64_t, int64_t r) {
    C* px = static_cast<C*>(s.px) + r * N;  // px in, gx out
    C* a = static_cast<C*>(s.ph) + r * N;   // ph in, gh out
    const C* hp = static_cast<const C*>(s.h_prev) + r * H;
    C* hn = static_cast<C*>(s.h_next) + r * H;
    C* y = static_cast<C*>(s.y.p) + t * s.y.st + r * s.y.sb;
    const C* mh = seq_row<C>(s.mask_h, t, r);
    C rx[4], rh[4];
    C* xhx = train ? R.row(RnnReserve::XhatX, t, r) : nullptr;
    C* xhh = train ? R.row(RnnReserve::XhatH, t, r) : nullptr;
    two_lns<V>(sh, static_cast<const C*>(px), a, xhx, xhh, rx, rh,
               [&](int64_t o, int64_t n, V xx, V xh) NK_INLINE_LAMBDA {
                 st<C, V>(V::fmadd(ld<C, V>(gx + o, n), xx, ld<C, V>(bx + o, n)) +
                              ld<C, V>(bih + o, n),
                          px + o, n, false);
                 st<C, V>(V::fmadd(ld<C, V>(gh + o, n), xh, ld<C, V>(bh + o, n)) +
                              ld<C, V>(bhh + o, n),
                          a + o, n, false);
               });
    C* rzn = train ? R.row(RnnReserve::Gates, t, r) : nullptr;
    C* ghn = train ? R.row(RnnReserve::GhN, t, r) : nullptr;
    C* hprev = train ? R.row(RnnReserve::HPrev, t, r) : nullptr;
    vec_loop<V>(H, [&](int64_t j, int64_t n) NK_INLINE_LAMBDA {
      const V h_prev = ld<C, V>(hp + j, n), hn_v = ld<C, V>(a + 2 * H + j, n);
      const auto g = detail::rnn::gru_gates(ld<C, V>(px + j, n), ld<C, V>(a + j, n),
                                            ld<C, V>(px + H + j, n), ld<C, V>(a + H + j, n),
                                            ld<C, V>(px + 2 * H + j, n), hn_v, h_prev);
      const V h = detail::rnn::zoneout(mask_at<V>(mh, j, n, zo_h), h_prev, g.h);
      st<C, V>(h, y + j, n, false);
      st<C, V>(h, hn + j, n, false);
      if (train) {
        st<C, V>(g.r, rzn + j, n, false);
        st<C, V>(g.z, rzn + H + j, n, false);
        st<C, V>(g.n, rzn + 2 * H + j, n, false);
        st<C, V>(hn_v, ghn + j, n, false);
        st<C, V>(h_prev, hprev + j, n, false);
      }
    });
    if (train) {
      C* stats = R.row(RnnReserve::Stats, t, r);
      for (int k = 0; k < 3; ++k) stats[k] = rx[k], stats[3 + k] = rh[k];
    }
  });
}

template <typename C>
void gru_backward(const RnnStepPrep& s) {
  using V = Vec<C>;
  const RnnShape& sh = *s.shape;
  const int64_t H = sh.H, N = sh.N, t = s.t;
  const int parts = sh.per_gate ? 3 : 1;
  const int64_t plen = N / parts;
  const C *gx = static_cast<const C*>(s.lnx_w), *gh = static_cast<const C*>(s.lnh_w);
  const Reserve<C> R = reserve_of<C>(s);
  const V zo_h = V::set1(C(s.zo_h)), one = V::set1(C(1));
  for_chunks(s, [&](int64_t c, int64_t r) {
    C* P = static_cast<C*>(s.partials) + c * s.partial_width;
    C *p_bx = P, *p_bh = P + N, *p_gx = P + 2 * N, *p_gh = P + 3 * N;
    const C* dy = seq_row<C>(s.dy, t, r);
    const C* dhs = static_cast<const C*>(s.dh_in) + r * H;
    C* dho = static_cast<C*>(s.dh_out) + r * H;
    C* dgx = static_cast<C*>(s.dpx) + r * N;
    C* dgh = static_cast<C*>(s.dph) + r * N;
    const C* mh = seq_row<C>(s.mask_h, t, r);
    const C* rzn = R.row(RnnReserve::Gates, t, r);
    const C* ghn = R.row(RnnReserve::GhN, t, r);
    const C* hprev = R.row(RnnReserve::HPrev, t, r);
    const C* xhx = R.row(RnnReserve::XhatX, t, r);
    const C* xhh = R.row(RnnReserve::XhatH, t, r);
    const C* stats = R.row(RnnReserve::Stats, t, r);
    vec_loop<V>(H, [&](int64_t j, int64_t n) NK_INLINE_LAMBDA {
      const V dh = (dy ? ld<C, V>(dy + j, n) : V::zero()) + ld<C, V>(dhs + j, n);
      const V m = mask_at<V>(mh, j, n, zo_h);
      const V rr = ld<C, V>(rzn + j, n);
      const auto d = detail::rnn::gru_gate_grads((one - m) * dh, rr, ld<C, V>(rzn + H + j, n),
                                                 ld<C, V>(rzn + 2 * H + j, n),
                                                 ld<C, V>(ghn + j, n), ld<C, V>(hprev + j, n));
      st<C, V>(V::fmadd(m, dh, d.h_prev), dho + j, n, false);
      st<C, V>(d.ar, dgx + j, n, false);
      st<C, V>(d.az, dgx + H + j, n, false);
      st<C, V>(d.an, dgx + 2 * H + j, n, false);
      st<C, V>(d.ar, dgh + j, n, false);
      st<C, V>(d.az, dgh + H + j, n, false);
      st<C, V>(d.an * rr, dgh + 2 * H + j, n, false);
    });
    for (int k = 0; k < parts; ++k) {
      const int64_t o0 = k * plen;
      C x1, x2, h1, h2;
      ln_sums_part<V>(dgx, gx, xhx, o0, plen, p_gx, p_bx, x1, x2);
      ln_sums_part<V>(dgh, gh, xhh, o0, plen, p_gh, p_bh, h1, h2);
      ln_backward_part<V>(dgx, gx, xhx, o0, plen, stats[k], x1, x2, dgx);
      ln_backward_part<V>(dgh, gh, xhh, o0, plen, stats[3 + k], h1, h2, dgh);
    }
  });
}

// ---------------------------------------------------------------------------------------
// Elman
// ---------------------------------------------------------------------------------------

template <typename C, bool kRelu>
void elman_forward(const RnnStepPrep& s) {
  using V = Vec<C>;
  const RnnShape& sh = *s.shape;
  const int64_t H = sh.H, t = s.t;
  const C *gx = static_cast<const C*>(s.lnx_w), *bx = static_cast<const C*>(s.lnx_b);
  const C* bias = static_cast<const C*>(s.bias);
  const bool train = s.reserve != nullptr;
  const Reserve<C> R = train ? reserve_of<C>(s) : Reserve<C>{};
  const V zo_h = V::set1(C(s.zo_h));
  for_chunks(s, [&](int64_t, int64_t r) {
    const C* px = static_cast<const C*>(s.px) + r * H;
    C* a = static_cast<C*>(s.ph) + r * H;
    const C* hp = static_cast<const C*>(s.h_prev) + r * H;
    C* hn = static_cast<C*>(s.h_next) + r * H;
    C* y = static_cast<C*>(s.y.p) + t * s.y.st + r * s.y.sb;
    const C* mh = seq_row<C>(s.mask_h, t, r);
    vec_loop<V>(H, [&](int64_t j, int64_t n) NK_INLINE_LAMBDA {
      st<C, V>((ld<C, V>(px + j, n) + ld<C, V>(a + j, n)) + ld<C, V>(bias + j, n), a + j, n,
               false);
    });
    C mean, rstd;
    ln_stats(a, H, sh.eps, mean, rstd);
    const V vm = V::set1(mean), vr = V::set1(rstd);
    C* xh_r = train ? R.row(RnnReserve::XhatX, t, r) : nullptr;
    C* ht_r = train ? R.row(RnnReserve::HTil, t, r) : nullptr;
    C* hprev = train ? R.row(RnnReserve::HPrev, t, r) : nullptr;
    vec_loop<V>(H, [&](int64_t j, int64_t n) NK_INLINE_LAMBDA {
      const V xh = (ld<C, V>(a + j, n) - vm) * vr;
      const V u = V::fmadd(ld<C, V>(gx + j, n), xh, ld<C, V>(bx + j, n));
      // max(0, u): u when u is NaN (Vec's min/max rule).
      const V ht = kRelu ? V::max(V::zero(), u) : detail::vmath::tanh(u);
      const V h_prev = ld<C, V>(hp + j, n);
      const V h = detail::rnn::zoneout(mask_at<V>(mh, j, n, zo_h), h_prev, ht);
      st<C, V>(h, y + j, n, false);
      st<C, V>(h, hn + j, n, false);
      if (train) {
        st<C, V>(xh, xh_r + j, n, false);
        st<C, V>(ht, ht_r + j, n, false);
        st<C, V>(h_prev, hprev + j, n, false);
      }
    });
    if (train) R.row(RnnReserve::Stats, t, r)[0] = rstd;
  });
}

template <typename C, bool kRelu>
void elman_backward(const RnnStepPrep& s) {
  using V = Vec<C>;
  const RnnShape& sh = *s.shape;
  const int64_t H = sh.H, t = s.t;
  const C* gx = static_cast<const C*>(s.lnx_w);
  const Reserve<C> R = reserve_of<C>(s);
  const V zo_h = V::set1(C(s.zo_h)), one = V::set1(C(1));
  for_chunks(s, [&](int64_t c, int64_t r) {
    C* P = static_cast<C*>(s.partials) + c * s.partial_width;
    C *p_db = P, *p_g = P + H, *p_b = P + 2 * H;
    const C* dy = seq_row<C>(s.dy, t, r);
    const C* dhs = static_cast<const C*>(s.dh_in) + r * H;
    C* dho = static_cast<C*>(s.dh_out) + r * H;
    C* dpre = static_cast<C*>(s.dpx) + r * H;  // du, then dpre in place
    const C* mh = seq_row<C>(s.mask_h, t, r);
    const C* xh_r = R.row(RnnReserve::XhatX, t, r);
    const C* ht_r = R.row(RnnReserve::HTil, t, r);
    const C rstd = R.row(RnnReserve::Stats, t, r)[0];
    vec_loop<V>(H, [&](int64_t j, int64_t n) NK_INLINE_LAMBDA {
      const V dh = (dy ? ld<C, V>(dy + j, n) : V::zero()) + ld<C, V>(dhs + j, n);
      const V m = mask_at<V>(mh, j, n, zo_h);
      const V dht = (one - m) * dh;
      st<C, V>(m * dh, dho + j, n, false);
      const V ht = ld<C, V>(ht_r + j, n);
      const V du = kRelu ? V::select(V::gt(ht, V::zero()), dht, V::zero()) : dht * (one - ht * ht);
      st<C, V>(du, dpre + j, n, false);
    });
    C m1, m2;
    ln_sums_part<V>(dpre, gx, xh_r, 0, H, p_g, p_b, m1, m2);
    ln_backward_part<V>(dpre, gx, xh_r, 0, H, rstd, m1, m2, dpre);
    vec_loop<V>(H, [&](int64_t j, int64_t n) NK_INLINE_LAMBDA { add_to<V>(p_db, j, n, ld<C, V>(dpre + j, n)); });
  });
}

template <typename C>
void step_forward(const RnnStepPrep& s) {
  switch (s.shape->cell) {
    case RnnCell::LSTM: return lstm_forward<C>(s);
    case RnnCell::GRU: return gru_forward<C>(s);
    case RnnCell::RNN_TANH: return elman_forward<C, false>(s);
    case RnnCell::RNN_RELU: return elman_forward<C, true>(s);
  }
}

template <typename C>
void step_backward(const RnnStepPrep& s) {
  switch (s.shape->cell) {
    case RnnCell::LSTM: return lstm_backward<C>(s);
    case RnnCell::GRU: return gru_backward<C>(s);
    case RnnCell::RNN_TANH: return elman_backward<C, false>(s);
    case RnnCell::RNN_RELU: return elman_backward<C, true>(s);
  }
}

}  // namespace

void rnn_step_forward(const RnnStepPrep& s) {
  if (s.shape->dtype == DType::Float64)
    step_forward<double>(s);
  else
    step_forward<float>(s);
}

void rnn_step_backward(const RnnStepPrep& s) {
  if (s.shape->dtype == DType::Float64)
    step_backward<double>(s);
  else
    step_backward<float>(s);
}

}  // namespace normkit::cpu::NK_CPU_ISA
