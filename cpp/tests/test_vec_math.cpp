// common/vec_math.hpp (exp, tanh, sigmoid) and the Vec primitives under it, on every ISA
// this CPU runs, through the test hooks of cpu/vec_math_prep.hpp:
//   * the maximum error in ULP against std:: in a wider type (double for float, long double
//     for double), over every 97th float bit pattern, every 29th with 2^-12 ≤ |x| < 2, the
//     neighbourhoods of every branch, clamp and saturation point, and the special values;
//     asserted against the bounds documented in vec_math.hpp, and printed for quoting;
//   * each SIMD ISA against the scalar path (detail::Lane, the executable specification),
//     within the same bound, and the scalar ISA bit-identical to Lane called from here;
//   * every element through the same instructions: a value's result does not depend on its
//     position in the array (partial last vectors), and nothing past n is written;
//   * the primitives: IEEE division, min/max's NaN and signed-zero rule, abs/neg on the sign
//     bit, ordered comparisons (false on NaN), signbit, select, round (ties to even, −0),
//     pow2i — bit for bit against a plain C++ statement of each;
//   * the 16-bit conversions (Vec<float> load / store / stream of bfloat16 and float16), bit
//     for bit against normkit/dtype.hpp's scalar ones: every 16-bit pattern widened, and
//     every 61st float pattern plus every float denormal, tie and special value narrowed
//     (the AVX512_BF16 ISA's hardware rounding flushes denormals; Note [Hardware bf16
//     rounding] in vec_avx512.hpp).
#include <algorithm>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "common/lane.hpp"
#include "common/vec_math.hpp"
#include "cpu/dispatch.hpp"
#include "cpu/vec_math_prep.hpp"
#include "nk_test.hpp"
#include "reference.hpp"

namespace {

using normkit::cpu::IsaTable;
using normkit::cpu::VecMathEval;
using normkit::cpu::VecConvEval;
using normkit::cpu::VecPrimEval;
using Fn = VecMathEval::Fn;

const char* fn_name(Fn f) {
  return f == Fn::Exp ? "exp" : f == Fn::Tanh ? "tanh" : f == Fn::TanhFast ? "tanh_fast" : "sigmoid";
}

constexpr Fn kAll[] = {Fn::Exp, Fn::Tanh, Fn::Sigmoid, Fn::TanhFast};

// The bounds documented in common/vec_math.hpp (ULP, all finite inputs).
double bound(Fn f, bool f64) {
  switch (f) {
    case Fn::Exp: return 1.5;
    case Fn::Tanh: return 2.0;
    case Fn::Sigmoid: return 2.5;
    case Fn::TanhFast: return f64 ? 2.0 : 7.0;  // double: tanh itself
  }
  return 0.0;
}

// How far (in values of T) a SIMD ISA may be from the scalar path: within the bound, except
// tanh_fast in float, where the unfused scalar fmadd and the FMA ISAs err in opposite
// directions by up to 6.2 and 4.7 ULP (documented in vec_math.hpp).
double scalar_diff_bound(Fn f, bool f64) { return f == Fn::TanhFast && !f64 ? 11.0 : bound(f, f64); }

// The runnable ISAs, scalar (the Lane path) first.
std::vector<const IsaTable*> isas() {
  std::vector<const IsaTable*> v;
  for (const std::string& name : normkit::cpu::isa_names(true)) {
    const IsaTable* t = normkit::cpu::find_isa_table(name);
    if (t != nullptr) v.push_back(t);
  }
  return v;
}

template <typename T>
constexpr bool is_f64() {
  return sizeof(T) == 8;
}
// The reference's type: wider than T.
template <typename T>
using Wide = std::conditional_t<is_f64<T>(), long double, double>;

template <typename T>
Wide<T> reference(Fn f, T x) {
  using W = Wide<T>;
  const W w = W(x);
  switch (f) {
    case Fn::Exp: return std::exp(w);
    case Fn::Tanh:
    case Fn::TanhFast: return std::tanh(w);
    case Fn::Sigmoid: return W(1) / (W(1) + std::exp(-w));
  }
  return W(0);
}

// One unit in the last place of T at the magnitude of r (denormal spacing below the normal
// range; the top binade's spacing from the largest finite value on).
template <typename T>
Wide<T> ulp_at(Wide<T> r) {
  using L = std::numeric_limits<T>;
  const Wide<T> a = std::fabs(r);
  if (a < Wide<T>(L::min())) return Wide<T>(L::denorm_min());
  if constexpr (is_f64<T>()) {
    const int e = std::min(std::ilogb(a), L::max_exponent - 1);
    return std::ldexp(1.0L, e - (L::digits - 1));
  } else {  // the exponent field of the double a (a normal double here): no libm calls
    const int e = std::min(int((normkit::f64_bits(a) >> 52) & 0x7ff) - 1023, L::max_exponent - 1);
    return normkit::bits_f64(uint64_t(e - (L::digits - 1) + 1023) << 52);
  }
}

// 2^max_exponent: the value after T's largest finite one.
template <typename T>
constexpr Wide<T> kTop = is_f64<T>() ? Wide<T>(0x1p1024L) : Wide<T>(0x1p128);

// y, with ±Inf as ±kTop.
template <typename T>
Wide<T> widen(T y) {
  return std::isinf(y) ? (y > 0 ? kTop<T> : -kTop<T>) : Wide<T>(y);
}

// |y − ref| in ULP of T at ref, ±Inf results and references beyond T's range counting as
// ±kTop (so an overflow to Inf where the exact value rounds to Inf costs 0). NaN against
// NaN is 0, NaN against a number +Inf.
template <typename T>
double ulp_error(T y, Wide<T> ref) {
  if (std::isnan(y) || std::isnan(ref))
    return std::isnan(y) && std::isnan(ref) ? 0.0 : std::numeric_limits<double>::infinity();
  const Wide<T> r = std::fmax(-kTop<T>, std::fmin(kTop<T>, ref));
  return double(std::fabs(widen(y) - r) / ulp_at<T>(r));
}

template <typename T>
std::vector<T> run_math(const IsaTable* isa, Fn f, const std::vector<T>& x) {
  std::vector<T> y(x.size(), std::numeric_limits<T>::quiet_NaN());
  VecMathEval e;
  e.fn = f;
  e.f64 = is_f64<T>();
  e.in = x.data();
  e.out = y.data();
  e.n = int64_t(x.size());
  isa->vec_math_eval(e);
  return y;
}

template <typename T>
std::string hex(T x) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%a", double(x));
  return buf;
}

// How many values of T lie from a to b (+0 and −0 count as one; ±Inf follow ±max).
template <typename T>
uint64_t ulps_apart(T a, T b) {
  const auto ordered = [](T v) {
    if constexpr (is_f64<T>()) {
      const uint64_t u = normkit::f64_bits(v);
      const int64_t m = int64_t(u & 0x7fffffffffffffffu);
      return u >> 63 ? -m : m;
    } else {
      const uint32_t u = normkit::f32_bits(v);
      const int64_t m = int64_t(u & 0x7fffffffu);
      return u >> 31 ? -m : m;
    }
  };
  const int64_t x = ordered(a), y = ordered(b);  // the difference (< 2^64) in unsigned
  return x >= y ? uint64_t(x) - uint64_t(y) : uint64_t(y) - uint64_t(x);
}

// The running maxima of one function on one ISA.
struct Stat {
  double err = 0.0;   // vs the reference
  double x_err = 0.0;
  double diff = 0.0;  // vs the scalar ISA (values of T apart)
  int64_t n = 0;
};

template <typename T>
struct Sweep {
  Fn f;
  std::vector<const IsaTable*> isa = isas();
  std::vector<Stat> stat = std::vector<Stat>(isa.size());

  // Adds one batch of inputs.
  void add(const std::vector<T>& x) {
    if (x.empty()) return;
    std::vector<Wide<T>> ref(x.size());
    for (size_t i = 0; i < x.size(); ++i) ref[i] = reference(f, x[i]);
    std::vector<T> lane;
    for (size_t k = 0; k < isa.size(); ++k) {
      const std::vector<T> y = run_math(isa[k], f, x);
      if (k == 0) lane = y;
      Stat& s = stat[k];
      for (size_t i = 0; i < x.size(); ++i) {
        const double e = ulp_error(y[i], ref[i]);
        if (e > s.err) {
          s.err = e;
          s.x_err = double(x[i]);
        }
        if (k > 0) {
          const bool same = std::memcmp(&y[i], &lane[i], sizeof(T)) == 0 ||
                            (std::isnan(y[i]) && std::isnan(lane[i]));
          if (!same)
            s.diff = std::max(s.diff, std::isnan(y[i]) || std::isnan(lane[i])
                                          ? std::numeric_limits<double>::infinity()
                                          : double(ulps_apart(y[i], lane[i])));
        }
      }
      s.n += int64_t(x.size());
    }
  }

  // Asserts the bound and prints one line per ISA.
  void finish(const char* set) {
    const double b = bound(f, is_f64<T>());
    for (size_t k = 0; k < isa.size(); ++k) {
      const Stat& s = stat[k];
      std::printf("  %-8s %-7s %s %-6s max %.3f ulp at %s (%" PRId64
                  " inputs), %.0f ulp from scalar\n",
                  isa[k]->name, fn_name(f), is_f64<T>() ? "f64" : "f32", set, s.err,
                  hex(T(s.x_err)).c_str(), s.n, s.diff);
      NK_CHECK(s.err <= b) << isa[k]->name << " " << fn_name(f) << ": " << s.err
                           << " ulp at " << hex(T(s.x_err)) << " > bound " << b;
      NK_CHECK(s.diff <= scalar_diff_bound(f, is_f64<T>())) << isa[k]->name << " " << fn_name(f) << " differs from scalar by "
                            << s.diff << " ulp";
    }
    std::fflush(stdout);
  }
};

float f32_from(uint32_t u) { return normkit::bits_f32(u); }
double f64_from(uint64_t u) { return normkit::bits_f64(u); }

// Every value of T within `k` bit patterns of p (same sign), p included.
template <typename T>
void around(std::vector<T>& out, T p, int k) {
  if constexpr (is_f64<T>()) {
    const int64_t u = int64_t(normkit::f64_bits(p) & 0x7fffffffffffffffu);
    const uint64_t sign = normkit::f64_bits(p) & 0x8000000000000000u;
    for (int64_t d = -k; d <= k; ++d)
      if (u + d >= 0) out.push_back(f64_from(uint64_t(u + d) | sign));
  } else {
    const int64_t u = int64_t(normkit::f32_bits(p) & 0x7fffffffu);
    const uint32_t sign = normkit::f32_bits(p) & 0x80000000u;
    for (int64_t d = -k; d <= k; ++d)
      if (u + d >= 0) out.push_back(f32_from(uint32_t(u + d) | sign));
  }
}

template <typename T>
std::vector<T> finite_only(std::vector<T> v) {
  std::vector<T> r;
  for (T x : v)
    if (std::isfinite(x)) r.push_back(x);
  return r;
}

// The points where the implementation changes regime (clamps, branch thresholds, overflow,
// the start of the denormal results, the last nonzero result, saturation), each with the
// number of bit patterns to take on either side.
template <typename T>
std::vector<std::pair<T, int>> edge_points(Fn f) {
  using K = normkit::detail::vmath::impl::Consts<T>;
  using L = std::numeric_limits<T>;
  const long double ln2 = 0.693147180559945309417232121458176568L;
  std::vector<std::pair<T, int>> p;
  const auto both = [&](long double v, int r) {
    p.push_back({T(v), r});
    p.push_back({T(-v), r});
  };
  switch (f) {
    case Fn::Exp:
    case Fn::Sigmoid: {  // sigmoid's exp(−|x|) meets exp's edges at ±x
      both(std::log((long double)L::max()), 2048);
      both(std::log((long double)L::min()), 2048);
      both(std::log((long double)L::denorm_min() / 2), 2048);
      both(K::kExpLo, 2048);
      both(K::kExpHi, 2048);
      if (f == Fn::Sigmoid) both(is_f64<T>() ? 36.7 : 16.6, 2048);  // 1 + e^-x rounds to 1
      // Where n = round(x·log2e) steps: r = ±ln2/2, the ends of the polynomial's range.
      for (int k = int(K::kExpLo / ln2) - 1; k <= int(K::kExpHi / ln2) + 1; ++k)
        p.push_back({T((k + 0.5L) * ln2), is_f64<T>() ? 8 : 64});
      break;
    }
    case Fn::Tanh: {
      both(K::kTanhSmall, 2048);
      both(K::kTanhClamp, 2048);
      both(is_f64<T>() ? 19.0615474653984960L : 9.01091333982870837L, 2048);  // saturation
      both(0.54930614433405484570L, 2048);  // tanh = 1/2
      for (int k = 1; k <= 56; ++k) both((k + 0.5L) * ln2 / 2, 256);  // n = round(−2|x|·log2e)
      break;
    }
    case Fn::TanhFast: {
      if constexpr (!is_f64<T>()) both(K::kTanhFastClamp, 1 << 16);  // clamp and saturation
      both(is_f64<T>() ? 19.0615474653984960L : 9.01091333982870837L, 2048);
      both(1.0L, 1 << 14);
      break;
    }
  }
  both(L::min(), 64);
  both(L::max(), 64);
  return p;
}

template <typename T>
void near_edges(Sweep<T>& s) {
  std::vector<T> x;
  for (const auto& [at, radius] : edge_points<T>(s.f)) around(x, at, radius);
  around(x, T(0), 4096);  // ±0 and the smallest denormals
  around(x, -T(0), 4096);
  s.add(finite_only(std::move(x)));
}

// Sanitizer builds (Debug, ASan) sweep every 16th of the inputs: the full sweep is a
// Release-build measurement (~13 s), the sanitized run checks memory and UB, not ULPs.
#if defined(NORMKIT_TEST_THIN_SWEEPS)
constexpr uint64_t kThin = 16;
#else
constexpr uint64_t kThin = 1;
#endif

void accuracy_f32(Fn f) {
  Sweep<float> sweep{f};
  std::vector<float> x;
  x.reserve(1 << 20);
  // Every 97th bit pattern (both signs, all binades).
  for (uint64_t u = 0; u < (uint64_t(1) << 32); u += 97 * kThin) {
    const float v = f32_from(uint32_t(u));
    if (std::isfinite(v)) x.push_back(v);
    if (x.size() == (1 << 20)) {
      sweep.add(x);
      x.clear();
    }
  }
  // Every 29th pattern with 2^-12 ≤ |x| < 2 (where DyT's α·x lives).
  for (uint32_t sign : {0u, 0x80000000u})
    for (uint32_t u = normkit::f32_bits(0x1p-12f); u < normkit::f32_bits(2.0f); u += uint32_t(29 * kThin)) {
      x.push_back(f32_from(u | sign));
      if (x.size() == (1 << 20)) {
        sweep.add(x);
        x.clear();
      }
    }
  sweep.add(x);
  near_edges(sweep);
  sweep.finish("sweep");
}

void accuracy_f64(Fn f) {
  if (std::numeric_limits<long double>::digits < 64)
    NK_SKIP("long double is not wider than double: no reference");
  Sweep<double> sweep{f};
  nk_ref::Rng rng(0x5eed0000u + uint64_t(f));
  std::vector<double> x;
  // 2^21 bit patterns spread over all of them (both signs, all binades).
  for (uint64_t i = 0; i < (uint64_t(1) << 21); i += kThin) {
    const double v = f64_from(i * ((uint64_t(1) << 43) + 0x9e3779b97u));
    if (std::isfinite(v)) x.push_back(v);
  }
  sweep.add(x);
  x.clear();
  // Uniform over the range where the function is not saturated, and log-uniform near 0.
  const bool tanh = f == Fn::Tanh || f == Fn::TanhFast;
  const double lo = tanh ? -20.0 : -750.0;
  const double hi = f == Fn::Exp ? 712.0 : tanh ? 20.0 : 40.0;
  for (int i = 0; i < int((1 << 20) / kThin); ++i) x.push_back(lo + (hi - lo) * rng.uniform());
  for (int i = 0; i < int((1 << 19) / kThin); ++i) {
    const double m = 1.0 + rng.uniform();  // (two statements: a fixed order of the draws)
    const double v = std::ldexp(m, -int(rng.next() % 40));
    x.push_back(i % 2 ? v : -v);
  }
  sweep.add(x);
  near_edges(sweep);
  sweep.finish("sweep");
}

// Exact expectations for special values, on every ISA.
template <typename T>
void special_values() {
  using L = std::numeric_limits<T>;
  const T inf = L::infinity(), nan = L::quiet_NaN(), tiny = L::denorm_min();
  const T sat = T(is_f64<T>() ? 19.1 : 9.1);  // the clamp: ±1 exactly (from ~8.66 / 18.7 on)
  struct Case {
    Fn f;
    T x, want;
  };
  const Case cases[] = {
      {Fn::Exp, T(0), T(1)},          {Fn::Exp, -T(0), T(1)},
      {Fn::Exp, inf, inf},            {Fn::Exp, -inf, T(0)},
      {Fn::Exp, L::max(), inf},       {Fn::Exp, -L::max(), T(0)},
      {Fn::Exp, T(1000), inf},        {Fn::Exp, T(-1000), T(0)},
      {Fn::Exp, tiny, T(1)},          {Fn::Exp, -tiny, T(1)},
      {Fn::Exp, nan, nan},            {Fn::Tanh, T(0), T(0)},
      {Fn::Tanh, -T(0), -T(0)},       {Fn::Tanh, inf, T(1)},
      {Fn::Tanh, -inf, T(-1)},        {Fn::Tanh, tiny, tiny},
      {Fn::Tanh, -tiny, -tiny},       {Fn::Tanh, L::min(), L::min()},
      {Fn::Tanh, sat, T(1)},          {Fn::Tanh, -sat, T(-1)},
      {Fn::Tanh, T(100), T(1)},       {Fn::Tanh, -L::max(), T(-1)},
      {Fn::Tanh, nan, nan},           {Fn::Sigmoid, T(0), T(0.5)},
      {Fn::Sigmoid, -T(0), T(0.5)},   {Fn::Sigmoid, inf, T(1)},
      {Fn::Sigmoid, -inf, T(0)},      {Fn::Sigmoid, T(100), T(1)},
      {Fn::Sigmoid, -L::max(), T(0)}, {Fn::Sigmoid, L::max(), T(1)},
      {Fn::Sigmoid, nan, nan},        {Fn::TanhFast, T(0), T(0)},
      {Fn::TanhFast, -T(0), -T(0)},   {Fn::TanhFast, inf, T(1)},
      {Fn::TanhFast, -inf, T(-1)},    {Fn::TanhFast, tiny, tiny},
      {Fn::TanhFast, -tiny, -tiny},   {Fn::TanhFast, L::min(), L::min()},
      {Fn::TanhFast, sat, T(1)},      {Fn::TanhFast, -sat, T(-1)},
      {Fn::TanhFast, T(100), T(1)},   {Fn::TanhFast, -L::max(), T(-1)},
      {Fn::TanhFast, nan, nan},
  };
  for (const IsaTable* isa : isas()) {
    for (const Case& c : cases) {
      const T y = run_math(isa, c.f, std::vector<T>{c.x})[0];
      const bool ok = std::isnan(c.want) ? std::isnan(y)
                                         : std::memcmp(&y, &c.want, sizeof(T)) == 0;
      NK_CHECK(ok) << isa->name << " " << fn_name(c.f) << "(" << hex(c.x) << ") = " << hex(y)
                   << ", expected " << hex(c.want);
    }
    // Gradual underflow: e^x for x a little above the zero threshold is a denormal, and so
    // is sigmoid there; tanh is odd bit for bit.
    const T deep = T(is_f64<T>() ? -740.0 : -100.0);
    for (Fn f : {Fn::Exp, Fn::Sigmoid}) {
      const T y = run_math(isa, f, std::vector<T>{deep})[0];
      NK_CHECK(y > T(0) && y < L::min()) << isa->name << " " << fn_name(f) << "(" << deep
                                         << ") = " << hex(y) << ", expected a denormal";
    }
    std::vector<T> x;
    for (int i = 0; i < 4000; ++i) x.push_back(T(std::ldexp(1.0 + i / 4000.0, i % 40 - 30)));
    for (Fn f : {Fn::Tanh, Fn::TanhFast}) {
      const std::vector<T> yp = run_math(isa, f, x);
      std::vector<T> xn = x;
      for (T& v : xn) v = -v;
      const std::vector<T> yn = run_math(isa, f, xn);
      int odd_fail = 0;
      for (size_t i = 0; i < x.size(); ++i) odd_fail += !(yn[i] == -yp[i]);
      NK_CHECK(odd_fail == 0) << isa->name << ": " << fn_name(f) << "(-x) != -" << fn_name(f)
                              << "(x) for " << odd_fail << " x";
    }
  }
}

// A value's result does not depend on where it sits (full vector or padded tail), and only
// n elements are written.
template <typename T>
void position_independent() {
  std::vector<T> x;
  for (int i = 0; i < 37; ++i) x.push_back(T(-9.0 + 0.47 * i));
  for (const IsaTable* isa : isas()) {
    for (Fn f : kAll) {
      std::vector<T> alone(x.size());
      for (size_t i = 0; i < x.size(); ++i) alone[i] = run_math(isa, f, std::vector<T>{x[i]})[0];
      for (size_t n = 1; n <= x.size(); ++n) {
        std::vector<T> y(x.size(), std::numeric_limits<T>::quiet_NaN());
        VecMathEval e;
        e.fn = f;
        e.f64 = is_f64<T>();
        e.in = x.data();
        e.out = y.data();
        e.n = int64_t(n);
        isa->vec_math_eval(e);
        int bad = 0, written = 0;
        for (size_t i = 0; i < n; ++i) bad += std::memcmp(&y[i], &alone[i], sizeof(T)) != 0;
        for (size_t i = n; i < x.size(); ++i) written += !std::isnan(y[i]);
        NK_CHECK(bad == 0 && written == 0) << isa->name << " " << fn_name(f) << " n=" << n
                                           << ": " << bad << " differ, " << written
                                           << " written past n";
      }
    }
  }
}

// The scalar ISA's Vec is detail::Lane: called from here (another translation unit, no ISA
// flags) it gives the same bits.
template <typename T>
void lane_matches_scalar_isa() {
  using V = normkit::detail::Lane<T>;
  const IsaTable* scalar = normkit::cpu::find_isa_table("scalar");
  NK_REQUIRE(scalar != nullptr);
  std::vector<T> x;
  nk_ref::Rng rng(42);
  for (int i = 0; i < 20000; ++i) x.push_back(T(rng.normal() * (i % 3 == 0 ? 40.0 : 3.0)));
  for (Fn f : kAll) {
    const std::vector<T> y = run_math(scalar, f, x);
    int bad = 0;
    for (size_t i = 0; i < x.size(); ++i) {
      const V v = V::set1(x[i]);
      const T l = (f == Fn::Exp    ? normkit::detail::vmath::exp(v)
                   : f == Fn::Tanh     ? normkit::detail::vmath::tanh(v)
                   : f == Fn::TanhFast ? normkit::detail::vmath::tanh_fast(v)
                                       : normkit::detail::vmath::sigmoid(v))
                      .v;
      bad += std::memcmp(&l, &y[i], sizeof(T)) != 0;
    }
    NK_CHECK(bad == 0) << fn_name(f) << ": Lane and the scalar ISA differ on " << bad;
  }
}

// ---------------------------------------------------------------------------------------
// Primitives
// ---------------------------------------------------------------------------------------

template <typename T>
bool same_bits(T a, T b) {
  return std::memcmp(&a, &b, sizeof(T)) == 0;
}

template <typename T>
T neg_bits(T a) {
  if constexpr (is_f64<T>())
    return f64_from(normkit::f64_bits(a) ^ 0x8000000000000000u);
  else
    return f32_from(normkit::f32_bits(a) ^ 0x80000000u);
}

template <typename T>
bool sign_bit(T a) {
  if constexpr (is_f64<T>())
    return (normkit::f64_bits(a) >> 63) != 0;
  else
    return (normkit::f32_bits(a) >> 31) != 0;
}

// The primitive's meaning, in plain C++ (Lane states the same; the hook gives masks as 1/0).
template <typename T>
T expected(VecPrimEval::Op op, T a, T b) {
  using P = VecPrimEval;
  switch (op) {
    case P::Div: return a / b;
    case P::Min: return a < b ? a : b;
    case P::Max: return a > b ? a : b;
    case P::Abs: return sign_bit(a) ? neg_bits(a) : a;
    case P::Neg: return neg_bits(a);
    case P::Lt: return a < b ? T(1) : T(0);
    case P::Le: return a <= b ? T(1) : T(0);
    case P::Gt: return a > b ? T(1) : T(0);
    case P::Ge: return a >= b ? T(1) : T(0);
    case P::Eq: return a == b ? T(1) : T(0);
    case P::Signbit: return sign_bit(a) ? T(1) : T(0);
    case P::Select: return a < b ? b : a;
    case P::Round: return std::nearbyint(a);  // the default mode: nearest, ties to even
    case P::Pow2i: return std::ldexp(T(1), int(a));
  }
  return T(0);
}

const char* op_name(VecPrimEval::Op op) {
  static const char* const names[] = {"div", "min", "max", "abs", "neg", "lt", "le",
                                      "gt", "ge", "eq", "signbit", "select", "round", "pow2i"};
  return names[int(op)];
}

template <typename T>
void primitives() {
  using L = std::numeric_limits<T>;
  using P = VecPrimEval;
  const T vals[] = {T(0), -T(0), T(1), T(-1), T(0.5), T(-0.5), T(1.5), T(2.5), T(-2.5),
                    T(3.7), T(-3.7), T(0.49999997), T(-1e-3),
                    T(std::ldexp(1.0, L::digits - 1)) - T(0.5),  // 2^(p-1) − ½: ties to even
                    T(std::ldexp(1.0, L::digits - 1)) + T(1), T(1e30), T(-1e30),
                    L::denorm_min(), -L::denorm_min(), L::min(), L::max(), -L::max(),
                    L::infinity(), -L::infinity(), L::quiet_NaN(), -L::quiet_NaN()};
  std::vector<T> a, b;
  for (T x : vals)
    for (T y : vals) {
      a.push_back(x);
      b.push_back(y);
    }
  for (const IsaTable* isa : isas()) {
    for (int o = P::Div; o <= P::Pow2i; ++o) {
      const P::Op op = P::Op(o);
      std::vector<T> aa = a, bb = b;
      if (op == P::Pow2i) {  // the domain: every integer exponent of a normal number
        aa.clear();
        for (int e = L::min_exponent - 1; e <= L::max_exponent - 1; ++e) aa.push_back(T(e));
        bb = aa;
      }
      std::vector<T> out(aa.size(), T(-7));
      P e;
      e.op = op;
      e.f64 = is_f64<T>();
      e.a = aa.data();
      e.b = bb.data();
      e.out = out.data();
      e.n = int64_t(aa.size());
      isa->vec_prim_eval(e);
      int bad = 0;
      for (size_t i = 0; i < aa.size(); ++i) {
        const T want = expected(op, aa[i], bb[i]);
        // NaN results: any NaN, except where the rule picks an operand (then its bits).
        const bool picks = op == P::Min || op == P::Max || op == P::Select || op == P::Abs ||
                           op == P::Neg;
        const bool ok = std::isnan(want) && !picks ? std::isnan(out[i]) : same_bits(out[i], want);
        if (!ok && ++bad <= 5) {
          NK_CHECK(false) << isa->name << " " << op_name(op) << "(" << hex(aa[i]) << ", "
                          << hex(bb[i]) << ") = " << hex(out[i]) << ", expected " << hex(want);
        }
      }
      NK_CHECK(bad == 0) << isa->name << " " << op_name(op) << ": " << bad << " wrong";
    }
  }
}

// Float patterns for the narrowing test: a stride over all of them, then every denormal
// (where vcvtneps2bf16 differs), the neighbourhood of every tie of both 16-bit formats near
// 1, and the special values.
std::vector<float> narrowing_inputs() {
  std::vector<uint32_t> bits;
  for (uint64_t u = 0; u <= 0xffffffffull; u += 61) bits.push_back(uint32_t(u));
  for (uint32_t m = 0; m < (1u << 23); m += 7) {
    bits.push_back(m);
    bits.push_back(0x80000000u | m);
  }
  for (uint32_t u = 0x3f800000u - 70000; u < 0x3f800000u + 70000; ++u) bits.push_back(u);
  for (uint32_t u : {0x007fffffu, 0x00800000u, 0x7f7fffffu, 0x7f800000u, 0xff800000u, 0x7fc00000u,
                     0x7f800001u, 0xffc00001u, 0x477fe000u, 0x477fefffu, 0x477ff000u, 0x33000000u,
                     0x33000001u, 0x387fc000u, 0x38800000u})
    bits.push_back(u);
  std::vector<float> v(bits.size());
  for (size_t i = 0; i < bits.size(); ++i) std::memcpy(&v[i], &bits[i], 4);
  return v;
}

uint16_t bits16(normkit::bfloat16_t h) { return h.bits; }
uint16_t bits16(normkit::half_t h) { return h.bits; }

void conversions() {
  using E = VecConvEval;
  const std::vector<float> in = narrowing_inputs();
  std::vector<uint16_t> all16(65536);
  for (uint32_t i = 0; i < 65536; ++i) all16[i] = uint16_t(i);
  for (const IsaTable* isa : isas()) {
    for (E::Op op : {E::ToBf16, E::ToHalf}) {
      // One Vec at a time (32-byte aligned output for stream()), and through the kernels'
      // row loop (Note [Paired stores]: pairs in the body, single vectors at the ends; Note
      // [Streaming whole lines]: the ends streamed in 16-byte pieces or stored) from a 64-byte
      // boundary, 32 bytes past one and 6 bytes past one (ends not 16-byte aligned: ordinary
      // stores). n is not a multiple of any vector width.
      for (int rows = 0; rows < 2; ++rows) {
        for (int64_t skip : {0, 16, 3}) {
          if (!rows && skip == 3) continue;  // stream() needs its alignment
          for (bool stream : {false, true}) {
            const int64_t n = int64_t(in.size()) - 3;
            std::vector<uint16_t> buf(size_t(n) + 64);
            uint16_t* out = buf.data();
            while (reinterpret_cast<uintptr_t>(out) % 64 != 0) ++out;
            out += skip;
            std::vector<uint16_t> guard(out + n, buf.data() + buf.size());
            E e;
            e.op = op;
            e.stream = stream;
            e.rows = rows != 0;
            e.in = in.data();
            e.out = out;
            e.n = n;
            isa->vec_conv_eval(e);
            int64_t bad = 0;
            for (int64_t i = 0; i < n; ++i) {
              const uint16_t want = op == E::ToBf16
                                        ? bits16(normkit::float_to_bf16(in[size_t(i)]))
                                        : bits16(normkit::float_to_half(in[size_t(i)]));
              if (out[i] != want && ++bad <= 5) {
                uint32_t u;
                std::memcpy(&u, &in[size_t(i)], 4);
                NK_CHECK(false) << isa->name << (op == E::ToBf16 ? " to bf16" : " to half")
                                << (rows ? " (rows, +" : " (+") << skip << ")"
                                << (stream ? " (stream)" : "") << " of 0x" << std::hex << u
                                << " = 0x" << out[i] << ", expected 0x" << want;
              }
            }
            NK_CHECK(bad == 0) << isa->name << ": " << bad << " wrong narrowings";
            NK_CHECK(std::equal(guard.begin(), guard.end(), out + n))
                << isa->name << ": wrote past n";
          }
        }
      }
    }
    for (E::Op op : {E::FromBf16, E::FromHalf}) {
      std::vector<float> out(65536 + 5, -7.0f);
      E e;
      e.op = op;
      e.in = all16.data();
      e.out = out.data();
      e.n = 65536 - 5;  // a partial last vector
      isa->vec_conv_eval(e);
      int64_t bad = 0;
      for (int64_t i = 0; i < e.n; ++i) {
        const float want = op == E::FromBf16 ? normkit::bf16_to_float(normkit::bfloat16_t{all16[size_t(i)]})
                                             : normkit::half_to_float(normkit::half_t{all16[size_t(i)]});
        if (!same_bits(out[size_t(i)], want) && ++bad <= 5) {
          NK_CHECK(false) << isa->name << " widening 0x" << std::hex << all16[size_t(i)];
        }
      }
      NK_CHECK(bad == 0) << isa->name << ": " << bad << " wrong widenings";
      NK_CHECK(same_bits(out[size_t(e.n)], -7.0f)) << isa->name << ": wrote past n";
    }
  }
}

}  // namespace

NK_TEST(vec_math, conversions_16bit) { conversions(); }
NK_TEST(vec_math, exp_f32) { accuracy_f32(Fn::Exp); }
NK_TEST(vec_math, tanh_f32) { accuracy_f32(Fn::Tanh); }
NK_TEST(vec_math, sigmoid_f32) { accuracy_f32(Fn::Sigmoid); }
NK_TEST(vec_math, tanh_fast_f32) { accuracy_f32(Fn::TanhFast); }
NK_TEST(vec_math, exp_f64) { accuracy_f64(Fn::Exp); }
NK_TEST(vec_math, tanh_f64) { accuracy_f64(Fn::Tanh); }
NK_TEST(vec_math, sigmoid_f64) { accuracy_f64(Fn::Sigmoid); }
NK_TEST(vec_math, tanh_fast_f64) { accuracy_f64(Fn::TanhFast); }
NK_TEST(vec_math, special_values) {
  special_values<float>();
  special_values<double>();
}
NK_TEST(vec_math, position_independent) {
  position_independent<float>();
  position_independent<double>();
}
NK_TEST(vec_math, lane_matches_scalar_isa) {
  lane_matches_scalar_isa<float>();
  lane_matches_scalar_isa<double>();
}
NK_TEST(vec_math, primitives) {
  primitives<float>();
  primitives<double>();
}
NK_TEST(vec_math, isas_listed) {
  // Print which ISAs the numbers above cover (a CPU without AVX-512 cannot check it here).
  std::string s;
  for (const IsaTable* t : isas()) s += std::string(s.empty() ? "" : ", ") + t->name;
  std::printf("  runnable ISAs: %s\n", s.c_str());
  NK_CHECK(!isas().empty());
}
