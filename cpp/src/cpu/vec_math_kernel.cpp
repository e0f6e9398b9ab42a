// Test hooks (cpu/vec_math_prep.hpp): common/vec_math.hpp's functions and the Vec primitives
// of this ISA over arrays, compiled once per ISA like every kernel file (see vec/vec.hpp).
//
// Assumptions: in/out hold n >= 0 elements of the compute type the call names. Every element
// goes through the same vector instructions: the last n % L elements as one zero-padded
// vector, of which n % L lanes are stored (Note [One code path per element] in
// cpu/vec/loops.hpp). No static initializers in this file (it is compiled with ISA flags).
#include <cstdint>
#include <cstring>

#include "common/vec_math.hpp"
#include "cpu/kernels.hpp"
#include "cpu/vec/loops.hpp"
#include "cpu/vec/vec.hpp"

namespace normkit::cpu::NK_CPU_ISA {
namespace {

// out[i] = f(a[i], b[i]) for i < n, one Vec at a time (b may be null: zeros).
template <typename C, typename F>
void eval_vectors(const C* a, const C* b, C* out, int64_t n, F f) {
  using V = Vec<C>;
  constexpr int64_t L = V::size;
  int64_t j = 0;
  for (; j + L <= n; j += L) f(V::load(a + j), b ? V::load(b + j) : V::zero()).store(out + j);
  if (j < n) {
    const size_t bytes = size_t(n - j) * sizeof(C);
    C pa[L] = {}, pb[L] = {}, po[L];
    std::memcpy(pa, a + j, bytes);
    if (b) std::memcpy(pb, b + j, bytes);
    f(V::load(pa), V::load(pb)).store(po);
    std::memcpy(out + j, po, bytes);
  }
}

template <typename C>
void math_typed(const VecMathEval& e) {
  using V = Vec<C>;
  const C* in = static_cast<const C*>(e.in);
  C* out = static_cast<C*>(e.out);
  switch (e.fn) {
    case VecMathEval::Exp:
      return eval_vectors(in, static_cast<const C*>(nullptr), out, e.n,
                         [](V x, V) { return detail::vmath::exp(x); });
    case VecMathEval::Tanh:
      return eval_vectors(in, static_cast<const C*>(nullptr), out, e.n,
                         [](V x, V) { return detail::vmath::tanh(x); });
    case VecMathEval::TanhFast:
      return eval_vectors(in, static_cast<const C*>(nullptr), out, e.n,
                         [](V x, V) { return detail::vmath::tanh_fast(x); });
    case VecMathEval::Sigmoid:
      return eval_vectors(in, static_cast<const C*>(nullptr), out, e.n,
                         [](V x, V) { return detail::vmath::sigmoid(x); });
  }
}

template <typename C>
void prim_typed(const VecPrimEval& e) {
  using V = Vec<C>;
  using P = VecPrimEval;
  const C* a = static_cast<const C*>(e.a);
  const C* b = static_cast<const C*>(e.b);
  C* out = static_cast<C*>(e.out);
  const auto mask = [](typename V::Mask m) { return V::select(m, V::set1(C(1)), V::zero()); };
  switch (e.op) {
    case P::Div: return eval_vectors(a, b, out, e.n, [](V x, V y) { return x / y; });
    case P::Min: return eval_vectors(a, b, out, e.n, [](V x, V y) { return V::min(x, y); });
    case P::Max: return eval_vectors(a, b, out, e.n, [](V x, V y) { return V::max(x, y); });
    case P::Abs: return eval_vectors(a, b, out, e.n, [](V x, V) { return V::abs(x); });
    case P::Neg: return eval_vectors(a, b, out, e.n, [](V x, V) { return -x; });
    case P::Lt: return eval_vectors(a, b, out, e.n, [&](V x, V y) { return mask(V::lt(x, y)); });
    case P::Le: return eval_vectors(a, b, out, e.n, [&](V x, V y) { return mask(V::le(x, y)); });
    case P::Gt: return eval_vectors(a, b, out, e.n, [&](V x, V y) { return mask(V::gt(x, y)); });
    case P::Ge: return eval_vectors(a, b, out, e.n, [&](V x, V y) { return mask(V::ge(x, y)); });
    case P::Eq: return eval_vectors(a, b, out, e.n, [&](V x, V y) { return mask(V::eq(x, y)); });
    case P::Signbit:
      return eval_vectors(a, b, out, e.n, [&](V x, V) { return mask(V::signbit(x)); });
    case P::Select:
      return eval_vectors(a, b, out, e.n, [](V x, V y) { return V::select(V::lt(x, y), y, x); });
    case P::Round: return eval_vectors(a, b, out, e.n, [](V x, V) { return V::round(x); });
    case P::Pow2i: return eval_vectors(a, b, out, e.n, [](V x, V) { return V::pow2i(x); });
  }
}

// 16-bit storage type S <-> float, n elements, one Vec at a time (the partial last vector
// through ld/st as in the kernels, cpu/vec/loops.hpp) — or, narrowing with `rows`, through
// the kernels' map_vectors (Note [Paired stores]).
template <typename S>
void conv_to(const float* in, S* out, int64_t n, bool stream, bool rows) {
  using V = Vec<float>;
  constexpr int64_t L = V::size;
  if (rows) {
    map_vectors<S, float>(n, out, stream,
                          [&](int64_t j, int64_t k) NK_INLINE_LAMBDA { return ld<float, V>(in + j, k); });
    if (stream) stream_fence();
    return;
  }
  int64_t j = 0;
  for (; j + L <= n; j += L) st<S, V>(V::load(in + j), out + j, L, stream);
  if (j < n) st<S, V>(ld<float, V>(in + j, n - j), out + j, n - j, false);
}
template <typename S>
void conv_from(const S* in, float* out, int64_t n) {
  using V = Vec<float>;
  constexpr int64_t L = V::size;
  int64_t j = 0;
  for (; j + L <= n; j += L) ld<S, V>(in + j, L).store(out + j);
  if (j < n) st<float, V>(ld<S, V>(in + j, n - j), out + j, n - j, false);
}

}  // namespace

void vec_conv_eval(const VecConvEval& e) {
  using E = VecConvEval;
  switch (e.op) {
    case E::ToBf16:
      return conv_to(static_cast<const float*>(e.in), static_cast<bfloat16_t*>(e.out), e.n,
                     e.stream, e.rows);
    case E::ToHalf:
      return conv_to(static_cast<const float*>(e.in), static_cast<half_t*>(e.out), e.n,
                     e.stream, e.rows);
    case E::FromBf16:
      return conv_from(static_cast<const bfloat16_t*>(e.in), static_cast<float*>(e.out), e.n);
    case E::FromHalf:
      return conv_from(static_cast<const half_t*>(e.in), static_cast<float*>(e.out), e.n);
  }
}

void vec_math_eval(const VecMathEval& e) {
  if (e.f64)
    math_typed<double>(e);
  else
    math_typed<float>(e);
}

void vec_prim_eval(const VecPrimEval& e) {
  if (e.f64)
    prim_typed<double>(e);
  else
    prim_typed<float>(e);
}

}  // namespace normkit::cpu::NK_CPU_ISA
