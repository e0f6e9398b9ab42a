// Vec<C> for the scalar ISA: one lane. This is the executable specification the SIMD layers
// must agree with (to rounding), and the path NORMKIT_CPU_ISA=scalar selects.
#pragma once

#include <cmath>

#include "normkit/dtype.hpp"

namespace normkit::cpu::NK_CPU_ISA {

template <typename C>
struct Vec {
  static constexpr int size = 1;
  C v;

  static Vec zero() { return {C(0)}; }
  static Vec set1(C a) { return {a}; }
  template <typename T>
  static Vec load(const T* p) {
    return {C(to_compute(*p))};
  }
  template <typename T>
  void store(T* p) const {
    *p = from_compute<T>(v);
  }
  template <typename T>
  void stream(T* p) const {
    store(p);
  }
  friend Vec operator+(Vec a, Vec b) { return {a.v + b.v}; }
  friend Vec operator-(Vec a, Vec b) { return {a.v - b.v}; }
  friend Vec operator*(Vec a, Vec b) { return {a.v * b.v}; }
  static Vec fmadd(Vec a, Vec b, Vec c) { return {a.v * b.v + c.v}; }
  C sum() const { return v; }
};

// Streaming stores need this alignment (bytes) for T; 0 = no streaming stores.
template <typename T>
constexpr int stream_alignment() {
  return 0;
}
inline void stream_fence() {}

}  // namespace normkit::cpu::NK_CPU_ISA
