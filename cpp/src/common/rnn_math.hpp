// The recurrent cells' elementwise math (SPEC §12), written once for every backend against
// the Vec interface (V = detail::Lane<C> for scalar code and CUDA, or an ISA's Vec<C>); the
// activations are common/vec_math.hpp's. The LN statistics and reductions around these are
// the callers'.
#pragma once

#include "common/vec_math.hpp"
#include "normkit/config.hpp"

namespace normkit::detail::rnn {

// Zoneout (Krueger et al. 2016): m·prev + (1 − m)·next — exactly next for m = 0 and exactly
// prev for m = 1 (a unit that zones out keeps its bits; next + m·(prev − next) would not).
template <typename V>
NK_HD V zoneout(V m, V prev, V next) {
  return V::fmadd(m, prev, (V::set1(typename V::value_type(1)) - m) * next);
}

// LSTM: c̃ = f·c + i·g from the gates' pre-activations; the activated gates are returned too.
template <typename V>
struct LstmGates {
  V i, f, g, o, c;
};
template <typename V>
NK_HD LstmGates<V> lstm_gates(V ai, V af, V ag, V ao, V c_prev) {
  LstmGates<V> r;
  r.i = vmath::sigmoid(ai);
  r.f = vmath::sigmoid(af);
  r.g = vmath::tanh(ag);
  r.o = vmath::sigmoid(ao);
  r.c = V::fmadd(r.f, c_prev, r.i * r.g);
  return r;
}

// σ'(a)·d from the activation s = σ(a): d·s·(1 − s).
template <typename V>
NK_HD V sigmoid_grad(V d, V s) {
  return d * s * (V::set1(typename V::value_type(1)) - s);
}

// The gradients of the i, f, g pre-activations and c's direct part, given dc̃ (the gradient
// reaching c̃ through both paths): σ' = s·(1 − s), tanh' = 1 − t².
template <typename V>
struct LstmGrads {
  V ai, af, ag, c_prev;
};
template <typename V>
NK_HD LstmGrads<V> lstm_gate_grads(V dct, V i, V f, V g, V c_prev) {
  const V one = V::set1(typename V::value_type(1));
  LstmGrads<V> r;
  r.ai = sigmoid_grad(dct * g, i);
  r.af = sigmoid_grad(dct * c_prev, f);
  r.ag = dct * i * (one - g * g);
  r.c_prev = dct * f;
  return r;
}

// GRU: r = σ(xr + hr), z = σ(xz + hz), n = tanh(xn + r·hn), h̃ = (1 − z)·n + z·h.
template <typename V>
struct GruGates {
  V r, z, n, h;
};
template <typename V>
NK_HD GruGates<V> gru_gates(V xr, V hr, V xz, V hz, V xn, V hn, V h_prev) {
  GruGates<V> g;
  g.r = vmath::sigmoid(xr + hr);
  g.z = vmath::sigmoid(xz + hz);
  g.n = vmath::tanh(V::fmadd(g.r, hn, xn));
  g.h = V::fmadd(g.z, h_prev - g.n, g.n);
  return g;
}

// Given dh̃: the gradients of the r, z, n pre-activations (ar, az, an; gh_n's is an·r) and
// the direct part of dh_prev (dh̃·z).
template <typename V>
struct GruGrads {
  V ar, az, an, h_prev;
};
template <typename V>
NK_HD GruGrads<V> gru_gate_grads(V dh, V r, V z, V n, V hn, V h_prev) {
  const V one = V::set1(typename V::value_type(1));
  GruGrads<V> d;
  d.an = dh * (one - z) * (one - n * n);
  d.ar = sigmoid_grad(d.an * hn, r);
  d.az = sigmoid_grad(dh * (h_prev - n), z);
  d.h_prev = dh * z;
  return d;
}

}  // namespace normkit::detail::rnn
