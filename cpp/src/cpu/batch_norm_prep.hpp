// Internal: what the batch-norm dispatcher (cpu/batch_norm_dispatch.cpp) hands to the per-ISA
// kernel (cpu/batch_norm_kernel.cpp), and the per-channel finish both of them use.
//
// One kernel serves every batch-norm call: an optional per-channel reduction (the moments of
// x, or the backward's sums), then an optional elementwise pass whose per-channel
// coefficients either are given or follow from the reduction (`fused`: bn_finish_channel
// right after the channel's reduction — for channels-first data a thread then takes whole
// channels, and the elementwise pass finds the channel's planes still in cache).
#pragma once

#include <cstdint>

#include "common/batch_norm_math.hpp"
#include "common/batch_norm_problem.hpp"

namespace normkit::cpu {

enum class BnReduce {
  None,
  Moments,  // r0 = mean, r1 = M2 (exact moments, Chan-merged in a fixed order)
  Sums,     // r0 = Σdy, r1 = Σdy·(x − hi), r2 = Σ(x − hi)
};

// How `fused` computes a channel's coefficients from its reduction.
struct BnFinish {
  bool backward = false;  // false: forward from moments; true: backward from sums
  bool weight_norm = false;  // weight norm's coefficients (rstd: the norms, as C)
  bool training = true;
  double eps = 0, M = 0;
  const void* weight = nullptr;  // [C] compute type, or null (1)
  const void* bias = nullptr;    // [C] compute type, or null (0)
  const void* rstd = nullptr;    // backward: [C] compute type
  const double* lo = nullptr;    // backward: r per channel; null: r = Σ(x − hi)/M
};

struct BnPrep {
  BnReduce reduce = BnReduce::None;
  double* r0 = nullptr;  // [C] each, written by the reduction
  double* r1 = nullptr;
  double* r2 = nullptr;
  bool backward = false;  // elementwise pass: false y = (x − hi)·a + b; true dx = a·dy + b·(x − hi) + c
  // [C] compute-type coefficients: read by the elementwise pass; hi is read by a Sums
  // reduction; a, b, c are written first when fused.
  void* hi = nullptr;
  void* a = nullptr;
  void* b = nullptr;
  void* c = nullptr;
  bool fused = false;
  BnFinish finish;
  int threads = 1;
  bool nontemporal = false;     // stream the elementwise pass's output
  bool channel_major = false;   // channels first: threads take whole channels
  // Scratch, allocated by the dispatcher: channels first, plane-parallel: [rows][3] double;
  // channels last: [nblocks][3][C] double block partials, then [threads][3][C] compute type.
  void* partials = nullptr;
  int64_t nblocks = 1, rows_per_block = 0;
};

// A channel's coefficients from its reduction (r0, r1, r2 as BnReduce says).
template <typename C>
inline void bn_finish_channel(const BnFinish& f, int64_t ch, double r0, double r1, double r2,
                              C* hi, C* a, C* b, C* c) {
  const C w = f.weight ? static_cast<const C*>(f.weight)[ch] : C(1);
  if (f.weight_norm) {  // hi = 0 throughout
    hi[ch] = C(0);
    if (!f.backward) {
      a[ch] = C(double(w) / detail::wn_norm(r0, r1, f.M)), b[ch] = C(0);
    } else {
      const detail::WnBackward<C> g = detail::wn_backward<C>(r1, w, double(static_cast<const C*>(f.rstd)[ch]));
      a[ch] = g.a, b[ch] = g.bd, c[ch] = C(0);
    }
    return;
  }
  if (!f.backward) {
    const detail::BnChannel<C> s = detail::bn_batch_channel<C>(r0, r1, f.M, f.eps);
    const detail::BnAffine<C> aff =
        detail::bn_affine<C>(s, w, f.bias ? static_cast<const C*>(f.bias)[ch] : C(0));
    hi[ch] = aff.hi, a[ch] = aff.a, b[ch] = aff.b;
    return;
  }
  const C rstd = static_cast<const C*>(f.rstd)[ch];
  const double r = f.lo ? f.lo[ch] : r2 / f.M;
  const double sdx = detail::bn_sum_dy_xhat<C>(r0, r1, r, rstd);
  const detail::BnBackward<C> g = detail::bn_backward<C>(f.training, hi[ch], r, rstd, w, r0, sdx, f.M);
  a[ch] = g.a, b[ch] = g.bd, c[ch] = g.c;
}

}  // namespace normkit::cpu
