// Internal: test hooks that evaluate the Vec math functions (common/vec_math.hpp) and the Vec
// primitives they stand on, of one ISA, over arrays, so that cpp/tests/test_vec_math.cpp can
// check each ISA's error bounds against std:: and the ISAs against each other in one process.
// Both kernels (cpu/vec_math_kernel.cpp) run full vectors and one zero-padded partial last
// vector, storing only n lanes.
#pragma once

#include <cstdint>

namespace normkit::cpu {

struct VecMathEval {
  enum Fn : int { Exp = 0, Tanh = 1, Sigmoid = 2, TanhFast = 3 };
  Fn fn = Exp;
  bool f64 = false;         // double (in/out are double*) or float (float*)
  const void* in = nullptr;  // [n]
  void* out = nullptr;       // [n]
  int64_t n = 0;
};

// out[i] = op(a[i], b[i]) with one Vec primitive (b unused by the unary ones). Mask results
// (Lt ... Signbit) come back as select(mask, 1, 0); Select is select(lt(a, b), b, a).
struct VecPrimEval {
  enum Op : int {
    Div = 0, Min, Max, Abs, Neg, Lt, Le, Gt, Ge, Eq, Signbit, Select, Round, Pow2i
  };
  Op op = Div;
  bool f64 = false;          // double (a/b/out are double*) or float (float*)
  const void* a = nullptr;   // [n]
  const void* b = nullptr;   // [n]
  void* out = nullptr;       // [n]
  int64_t n = 0;
};

// The 16-bit conversions of Vec<float>, over arrays: To* reads n floats at `in` and writes n
// 16-bit values at `out` with store() (and, when `stream`, with stream() into `out`, which
// must then be aligned to 32 bytes); From* reads n 16-bit values and writes n floats.
struct VecConvEval {
  enum Op : int { ToBf16 = 0, ToHalf, FromBf16, FromHalf };
  Op op = ToBf16;
  bool stream = false;
  // Narrowing through the kernels' row loop (map_vectors: two vectors per conversion and
  // store where the ISA pairs them, whole lines streamed, the ends in pieces) instead of one
  // Vec at a time.
  bool rows = false;
  const void* in = nullptr;  // [n]
  void* out = nullptr;       // [n]
  int64_t n = 0;
};

}  // namespace normkit::cpu
