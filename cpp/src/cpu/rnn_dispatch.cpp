// The recurrent sequences on the CPU (SPEC §12): the input projection of all T steps as one
// blocked BLAS product, then per step the recurrent product and the fused step kernel of the
// selected ISA (cpu/rnn_kernel.cpp); the backward's step kernels, the per-step product
// dh += dph·W_hh, and after the loop the weight and input gradients as three large products.
// Compiled without ISA flags.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "common/backends.hpp"
#include "cpu/dispatch.hpp"
#include "cpu/gemm.hpp"
#include "normkit/error.hpp"

namespace normkit::cpu {
namespace {

using detail::BatchRows;
using detail::RnnShape;
using detail::SeqRows;

// Note [RNN profile]: with profiling on (rnn_profile(true), the benchmark's --profile), the
// dispatcher adds the wall time of its BLAS products and of its fused step kernels to two
// counters, read back by rnn_profile_read(); off, a relaxed atomic load per phase.
std::atomic<bool> g_profile{false};
std::atomic<int64_t> g_ns_gemm{0}, g_ns_step{0};

class Phase {
 public:
  explicit Phase(std::atomic<int64_t>& into)
      : into_(g_profile.load(std::memory_order_relaxed) ? &into : nullptr) {
    if (into_) t0_ = std::chrono::steady_clock::now();
  }
  ~Phase() {
    if (into_)
      into_->fetch_add(std::chrono::duration_cast<std::chrono::nanoseconds>(
                           std::chrono::steady_clock::now() - t0_)
                           .count());
  }

 private:
  std::atomic<int64_t>* into_;
  std::chrono::steady_clock::time_point t0_;
};

// Note [Kept scratch]: a sequence's scratch is large (the input projections of all steps:
// T·B·G·H elements, 52 MB for the LSTM; twice that in the backward) and freshly
// mapped memory costs a page fault per 4 KB on first touch — tens of milliseconds per call,
// a fifth of a whole training step. So when the caller passes no workspace, the buffer is
// kept between calls, one per calling thread (grow-only; rnn_release_scratch() frees the
// calling thread's). A caller that passes its own workspace pays nothing of this.
struct KeptScratch {
  std::unique_ptr<char[]> buf;
  size_t bytes = 0;
};
thread_local KeptScratch t_scratch;

void* kept_scratch(void* given, size_t given_bytes, size_t need, const char* op) {
  if (given != nullptr) {
    if (given_bytes < need)
      throw Error(ErrorKind::Value, std::string(op) + ": workspace: expected at least " +
                                        std::to_string(need) + " bytes, got " +
                                        std::to_string(given_bytes));
    return given;
  }
  if (need == 0) return nullptr;
  if (t_scratch.bytes < need) {
    t_scratch.buf.reset();  // free the old one first: never both at once
    t_scratch.bytes = 0;
    t_scratch.buf.reset(new char[need]);
    t_scratch.bytes = need;
  }
  return t_scratch.buf.get();
}

// Scratch carved from one buffer, each piece 64-byte aligned (sizes in elements of C).
class Carve {
 public:
  explicit Carve(size_t esize) : esize_(esize) {}
  size_t take(int64_t elems) {
    const size_t at = bytes_;
    bytes_ += (size_t(elems) * esize_ + 63) / 64 * 64;
    return at;
  }
  size_t bytes() const { return bytes_ == 0 ? 0 : bytes_ + 64; }  // + alignment slack

 private:
  size_t esize_;
  size_t bytes_ = 0;
};

char* aligned(void* p) {
  const uintptr_t u = reinterpret_cast<uintptr_t>(p);
  return reinterpret_cast<char*>((u + 63) / 64 * 64);
}

// A [T, B, W] array as a matrix of T·B rows (row t·B + b) when its strides allow: the leading
// dimension, or 0 (it must be packed first).
int64_t matrix_ld(const SeqRows& r, int64_t T, int64_t B, int64_t W) {
  int64_t ld = -1;
  if (B == 1) ld = r.st;
  else if (T == 1 || r.st == B * r.sb) ld = r.sb;
  return ld >= W && ld > 0 ? ld : 0;
}

// Rows of a [B, H] array <-> contiguous [B, H].
template <typename C>
void gather_rows(const BatchRows& src, int64_t B, int64_t H, C* dst) {
  for (int64_t b = 0; b < B; ++b)
    std::memcpy(dst + b * H, static_cast<const C*>(src.p) + b * src.sb, size_t(H) * sizeof(C));
}
template <typename C>
void scatter_rows(const C* src, int64_t B, int64_t H, const BatchRows& dst) {
  for (int64_t b = 0; b < B; ++b)
    std::memcpy(static_cast<C*>(dst.p) + b * dst.sb, src + b * H, size_t(H) * sizeof(C));
}
template <typename C>
void pack_seq(const SeqRows& src, int64_t T, int64_t B, int64_t W, C* dst) {
  for (int64_t t = 0; t < T; ++t)
    for (int64_t b = 0; b < B; ++b)
      std::memcpy(dst + (t * B + b) * W, static_cast<const C*>(src.p) + t * src.st + b * src.sb,
                  size_t(W) * sizeof(C));
}
template <typename C>
void unpack_seq(const C* src, int64_t T, int64_t B, int64_t W, const SeqRows& dst) {
  for (int64_t t = 0; t < T; ++t)
    for (int64_t b = 0; b < B; ++b)
      std::memcpy(static_cast<C*>(dst.p) + t * dst.st + b * dst.sb, src + (t * B + b) * W,
                  size_t(W) * sizeof(C));
}

// Chunks of rows (cpu/rnn_prep.hpp): about 16, by B alone.
void set_chunks(RnnStepPrep& s, const RnnShape& sh) {
  s.chunk_rows = std::max<int64_t>(1, (sh.B + 15) / 16);
  s.nchunks = std::max<int64_t>(1, (sh.B + s.chunk_rows - 1) / s.chunk_rows);
  s.threads = threads_for(sh.B * sh.N * 4, s.nchunks);
}

// The parameters as arrays of C: the caller's, or defaults (γ = 1, β = 0, b = 0) and LSTM /
// Elman's b_ih + b_hh, in `buf` (N·8 elements).
template <typename C>
void set_params(RnnStepPrep& s, const RnnShape& sh, const detail::RnnParams& p, C* buf) {
  const int64_t N = sh.N, H = sh.H;
  C* ones = buf;
  C* zeros = buf + N;
  C* bsum = buf + 2 * N;
  std::fill(ones, ones + N, C(1));
  std::fill(zeros, zeros + N, C(0));
  auto or_ = [](const void* a, const C* d) -> const void* { return a ? a : d; };
  s.lnx_w = or_(p.lnx_w, ones);
  s.lnx_b = or_(p.lnx_b, zeros);
  s.lnh_w = or_(p.lnh_w, ones);
  s.lnh_b = or_(p.lnh_b, zeros);
  s.lnc_w = or_(p.lnc_w, ones);
  s.lnc_b = or_(p.lnc_b, zeros);
  const C* bi = static_cast<const C*>(p.b_ih);
  const C* bh = static_cast<const C*>(p.b_hh);
  if (sh.gru()) {
    s.bias = or_(bi, zeros);
    s.bias_h = or_(bh, zeros);
  } else {
    const int64_t n = sh.elman() ? H : N;
    for (int64_t j = 0; j < n; ++j) bsum[j] = (bi ? bi[j] : C(0)) + (bh ? bh[j] : C(0));
    s.bias = bsum;
    s.bias_h = zeros;
  }
  s.mask_h = p.mask_h;
  s.mask_c = p.mask_c;
  s.zo_h = p.zo_h;
  s.zo_c = p.zo_c;
}

// Forward scratch (elements): PX [T, B, N], PH [B, N], h / c states 2 × [B, H] each, packed
// x [T, B, I] when x is no matrix, parameters 8·N.
struct FwdLayout {
  size_t px, ph, h, c, xpack, params, bytes;
  bool pack;
};
FwdLayout fwd_layout(const detail::RnnProblem& p) {
  Carve cv(size_t(dtype_size(p.dtype)));
  FwdLayout L{};
  L.px = cv.take(p.T * p.B * p.N);
  L.ph = cv.take(p.B * p.N);
  L.h = cv.take(2 * p.B * p.H);
  L.c = cv.take(2 * p.B * p.H);
  L.pack = matrix_ld(p.x, p.T, p.B, p.I) == 0 && p.I > 0;
  L.xpack = cv.take(L.pack ? p.T * p.B * p.I : 0);
  L.params = cv.take(8 * p.N);
  L.bytes = cv.bytes();
  return L;
}

template <typename C>
void forward(const detail::RnnProblem& p) {
  const char* op = "rnn_forward";
  const int64_t T = p.T, B = p.B, H = p.H, N = p.N, I = p.I;
  const FwdLayout L = fwd_layout(p);
  char* w = aligned(kept_scratch(p.workspace, p.workspace_bytes, L.bytes, op));
  C* PX = reinterpret_cast<C*>(w + L.px);
  C* PH = reinterpret_cast<C*>(w + L.ph);
  C* Hs = reinterpret_cast<C*>(w + L.h);
  C* Cs = reinterpret_cast<C*>(w + L.c);
  RnnStepPrep s;
  s.shape = &p;
  set_params<C>(s, p, p, reinterpret_cast<C*>(w + L.params));
  set_chunks(s, p);
  s.reserve = p.reserve;
  s.y = p.y;
  if (p.h0.p) gather_rows<C>(p.h0, B, H, Hs); else std::fill(Hs, Hs + B * H, C(0));
  if (p.c0.p) gather_rows<C>(p.c0, B, H, Cs); else std::fill(Cs, Cs + B * H, C(0));
  if (T > 0) {
    const C* X = static_cast<const C*>(p.x.p);
    int64_t ldx = matrix_ld(p.x, T, B, I);
    if (L.pack) {
      C* Xp = reinterpret_cast<C*>(w + L.xpack);
      pack_seq<C>(p.x, T, B, I, Xp);
      X = Xp;
      ldx = I;
    }
    if (ldx == 0) ldx = std::max<int64_t>(I, 1);
    const Phase ph(g_ns_gemm);
    gemm<C>(op, Trans::No, Trans::Yes, T * B, N, I, C(1), X, ldx,
            static_cast<const C*>(p.w_ih), p.w_ih_ld, C(0), PX, N);
  }
  int cur = 0;
  for (int64_t step = 0; step < T; ++step) {
    const int64_t t = p.reverse ? T - 1 - step : step;
    C* hp = Hs + cur * B * H;
    C* cp = Cs + cur * B * H;
    {
      const Phase ph(g_ns_gemm);
      gemm<C>(op, Trans::No, Trans::Yes, B, N, H, C(1), hp, H, static_cast<const C*>(p.w_hh),
              p.w_hh_ld, C(0), PH, N);
    }
    s.t = t;
    s.px = PX + t * B * N;
    s.ph = PH;
    s.h_prev = hp;
    s.c_prev = cp;
    s.h_next = Hs + (1 - cur) * B * H;
    s.c_next = Cs + (1 - cur) * B * H;
    {
      const Phase ph(g_ns_step);
      current().rnn_step_forward(s);
    }
    cur = 1 - cur;
  }
  if (p.h_n.p) scatter_rows<C>(Hs + cur * B * H, B, H, p.h_n);
  if (p.c_n.p) scatter_rows<C>(Cs + cur * B * H, B, H, p.c_n);
}

// Backward scratch (elements): dPX, dPH [T, B, N] (Elman: one), dh / dc 2 × [B, H] each,
// packed x and dx when they are no matrices, partials, parameters 8·N.
struct BwdLayout {
  size_t dpx, dph, dh, dc, xpack, dxpack, partials, params, bytes;
  bool pack_x, pack_dx;
  int64_t nchunks;
};
BwdLayout bwd_layout(const detail::RnnBackwardProblem& p) {
  Carve cv(size_t(dtype_size(p.dtype)));
  BwdLayout L{};
  L.dpx = cv.take(p.T * p.B * p.N);
  L.dph = cv.take(p.elman() ? 0 : p.T * p.B * p.N);
  L.dh = cv.take(2 * p.B * p.H);
  L.dc = cv.take(2 * p.B * p.H);
  const bool need_x = p.dw_ih != nullptr;
  L.pack_x = need_x && p.I > 0 && matrix_ld(p.x, p.T, p.B, p.I) == 0;
  L.xpack = cv.take(L.pack_x ? p.T * p.B * p.I : 0);
  L.pack_dx = p.dx.p != nullptr && p.I > 0 && matrix_ld(p.dx, p.T, p.B, p.I) == 0;
  L.dxpack = cv.take(L.pack_dx ? p.T * p.B * p.I : 0);
  RnnStepPrep s;
  set_chunks(s, p);
  L.nchunks = s.nchunks;
  L.partials = cv.take(s.nchunks * rnn_partial_width(p));
  L.params = cv.take(8 * p.N);
  L.bytes = cv.bytes();
  return L;
}

template <typename C>
void store_or_zero(void* out, const C* v, int64_t n) {
  if (out == nullptr) return;
  if (v) std::memcpy(out, v, size_t(n) * sizeof(C));
  else std::memset(out, 0, size_t(n) * sizeof(C));
}

template <typename C>
void backward(const detail::RnnBackwardProblem& p) {
  const char* op = "rnn_backward";
  const int64_t T = p.T, B = p.B, H = p.H, N = p.N, I = p.I;
  const BwdLayout L = bwd_layout(p);
  char* w = aligned(kept_scratch(p.workspace, p.workspace_bytes, L.bytes, op));
  C* dPX = reinterpret_cast<C*>(w + L.dpx);
  C* dPH = p.elman() ? dPX : reinterpret_cast<C*>(w + L.dph);
  C* dHs = reinterpret_cast<C*>(w + L.dh);
  C* dCs = reinterpret_cast<C*>(w + L.dc);
  C* partials = reinterpret_cast<C*>(w + L.partials);
  RnnStepPrep s;
  s.shape = &p;
  set_params<C>(s, p, p, reinterpret_cast<C*>(w + L.params));
  set_chunks(s, p);
  s.reserve = const_cast<void*>(p.reserve);
  s.dy = p.dy;
  s.partials = partials;
  s.partial_width = rnn_partial_width(p);
  std::fill(partials, partials + L.nchunks * s.partial_width, C(0));
  if (p.dh_n.p) gather_rows<C>(p.dh_n, B, H, dHs); else std::fill(dHs, dHs + B * H, C(0));
  if (p.dc_n.p) gather_rows<C>(p.dc_n, B, H, dCs); else std::fill(dCs, dCs + B * H, C(0));
  if (T > 0) require_cpu_blas(op);
  int cur = 0;
  for (int64_t step = T - 1; step >= 0; --step) {
    const int64_t t = p.reverse ? T - 1 - step : step;
    s.t = t;
    s.dh_in = dHs + cur * B * H;
    s.dc_in = dCs + cur * B * H;
    C* dh_out = dHs + (1 - cur) * B * H;
    s.dh_out = dh_out;
    s.dc_out = dCs + (1 - cur) * B * H;
    s.dpx = dPX + t * B * N;
    s.dph = dPH + t * B * N;
    {
      const Phase ph(g_ns_step);
      current().rnn_step_backward(s);
    }
    const Phase ph(g_ns_gemm);
    gemm<C>(op, Trans::No, Trans::No, B, H, N, C(1), dPH + t * B * N, N,
            static_cast<const C*>(p.w_hh), p.w_hh_ld, C(1), dh_out, H);
    cur = 1 - cur;
  }
  if (p.dh0.p) scatter_rows<C>(dHs + cur * B * H, B, H, p.dh0);
  if (p.dc0.p) scatter_rows<C>(dCs + cur * B * H, B, H, p.dc0);
  const int64_t M = T * B;
  {
  const Phase ph(g_ns_gemm);
  if (p.dw_ih) {
    if (M == 0 || I == 0) {
      std::memset(p.dw_ih, 0, size_t(N * I) * sizeof(C));
    } else {
      const C* X = static_cast<const C*>(p.x.p);
      int64_t ldx = matrix_ld(p.x, T, B, I);
      if (L.pack_x) {
        C* Xp = reinterpret_cast<C*>(w + L.xpack);
        pack_seq<C>(p.x, T, B, I, Xp);
        X = Xp;
        ldx = I;
      }
      gemm<C>(op, Trans::Yes, Trans::No, N, I, M, C(1), dPX, N, X, ldx, C(0),
              static_cast<C*>(p.dw_ih), I);
    }
  }
  if (p.dw_hh) {
    if (M == 0) {
      std::memset(p.dw_hh, 0, size_t(N * H) * sizeof(C));
    } else {
      const detail::RnnReserve R = detail::rnn_reserve_layout(p.cell, H);
      const C* Hprev = static_cast<const C*>(p.reserve) + R.offset[detail::RnnReserve::HPrev] * M;
      gemm<C>(op, Trans::Yes, Trans::No, N, H, M, C(1), dPH, N, Hprev, H, C(0),
              static_cast<C*>(p.dw_hh), H);
    }
  }
  if (p.dx.p && M > 0 && I > 0) {
    C* DX = static_cast<C*>(p.dx.p);
    int64_t lddx = matrix_ld(p.dx, T, B, I);
    if (L.pack_dx) DX = reinterpret_cast<C*>(w + L.dxpack), lddx = I;
    gemm<C>(op, Trans::No, Trans::No, M, I, N, C(1), dPX, N, static_cast<const C*>(p.w_ih),
            p.w_ih_ld, C(0), DX, lddx);
    if (L.pack_dx) unpack_seq<C>(DX, T, B, I, p.dx);
  }
  }
  // The chunks' partial sums, added in chunk order.
  const int64_t W = s.partial_width;
  for (int64_t c = 1; c < L.nchunks; ++c)
    for (int64_t j = 0; j < W; ++j) partials[j] += partials[c * W + j];
  const C* P = partials;
  if (p.lstm()) {
    for (void* o : {p.db_ih, p.db_hh, p.dlnx_b, p.dlnh_b}) store_or_zero<C>(o, P, N);
    store_or_zero<C>(p.dlnx_w, P + N, N);
    store_or_zero<C>(p.dlnh_w, P + 2 * N, N);
    store_or_zero<C>(p.dlnc_w, P + 3 * N, H);
    store_or_zero<C>(p.dlnc_b, P + 3 * N + H, H);
  } else if (p.gru()) {
    for (void* o : {p.db_ih, p.dlnx_b}) store_or_zero<C>(o, P, N);
    for (void* o : {p.db_hh, p.dlnh_b}) store_or_zero<C>(o, P + N, N);
    store_or_zero<C>(p.dlnx_w, P + 2 * N, N);
    store_or_zero<C>(p.dlnh_w, P + 3 * N, N);
  } else {
    for (void* o : {p.db_ih, p.db_hh}) store_or_zero<C>(o, P, H);
    store_or_zero<C>(p.dlnx_w, P + H, H);
    store_or_zero<C>(p.dlnx_b, P + 2 * H, H);
  }
}

}  // namespace
}  // namespace normkit::cpu

namespace normkit {

void rnn_profile(bool on) {
  cpu::g_profile.store(on);
  cpu::g_ns_gemm.store(0);
  cpu::g_ns_step.store(0);
}

void rnn_release_scratch() {
  cpu::t_scratch.buf.reset();
  cpu::t_scratch.bytes = 0;
}

RnnProfile rnn_profile_read() {
  return {double(cpu::g_ns_gemm.load()) * 1e-9, double(cpu::g_ns_step.load()) * 1e-9};
}

}  // namespace normkit

namespace normkit::detail {

size_t cpu_rnn_forward_workspace_size(const RnnProblem& p) {
  return cpu::fwd_layout(p).bytes;
}
size_t cpu_rnn_backward_workspace_size(const RnnBackwardProblem& p) {
  return cpu::bwd_layout(p).bytes;
}

void cpu_rnn_forward(const RnnProblem& p) {
  if (p.T > 0 && p.B > 0) cpu::require_cpu_blas("rnn_forward");
  if (p.B == 0) return;
  if (p.dtype == DType::Float64) cpu::forward<double>(p);
  else cpu::forward<float>(p);
}

void cpu_rnn_backward(const RnnBackwardProblem& p) {
  if (p.dtype == DType::Float64) cpu::backward<double>(p);
  else cpu::backward<float>(p);
}

}  // namespace normkit::detail
