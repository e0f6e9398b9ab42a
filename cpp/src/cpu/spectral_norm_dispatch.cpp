// Spectral norm's CPU dispatch (SPEC §10): the passes of cpu/spectral_norm_kernel.cpp composed
// into the forward (power iterations, σ, W/σ) and the backward, with the vector arithmetic
// between them (norms, normalization, the blocks' partials added in block order) done here in
// double. Compiled without ISA flags.
#include <cmath>
#include <string>
#include <vector>

#include "common/backends.hpp"
#include "cpu/dispatch.hpp"
#include "cpu/kernels.hpp"
#include "normkit/error.hpp"

namespace normkit::cpu {
namespace {

using detail::SnProblem;

double read_at(const void* p, DType dt, int64_t i) {
  switch (dt) {
    case DType::Float32: return double(static_cast<const float*>(p)[i]);
    case DType::Float64: return static_cast<const double*>(p)[i];
    case DType::Float16: return double(half_to_float(static_cast<const half_t*>(p)[i]));
    case DType::BFloat16: return double(bf16_to_float(static_cast<const bfloat16_t*>(p)[i]));
  }
  return 0.0;
}

void write_at(void* p, DType dt, int64_t i, double v) {
  switch (dt) {
    case DType::Float32: static_cast<float*>(p)[i] = float(v); break;
    case DType::Float64: static_cast<double*>(p)[i] = v; break;
    case DType::Float16: static_cast<half_t*>(p)[i] = float_to_half(float(v)); break;
    case DType::BFloat16: static_cast<bfloat16_t*>(p)[i] = float_to_bf16(float(v)); break;
  }
}

template <typename C>
struct Dispatch {
  const SnProblem& p;
  const Blocks bl = block_layout(p.rows, p.cols);
  const int threads = threads_for(p.rows * p.cols, bl.nblocks);
  // The vectors as the kernel reads them (C: each iteration's u, v are rounded to C, as
  // torch stores them), and as p's dtype holds them.
  std::vector<C> u, v, a;

  explicit Dispatch(const SnProblem& prob) : p(prob) {
    u.resize(size_t(p.rows)), v.resize(size_t(p.cols)), a.resize(size_t(p.rows));
    for (int64_t i = 0; i < p.rows; ++i) u[size_t(i)] = C(read_at(p.u, p.vec_dtype, i));
    for (int64_t j = 0; j < p.cols; ++j) v[size_t(j)] = C(read_at(p.v, p.vec_dtype, j));
  }

  SnPass pass(SnPassKind kind) const {
    SnPass s;
    s.kind = kind;
    s.threads = threads;
    s.nblocks = bl.nblocks;
    s.rows_per_block = bl.rows_per_block;
    s.v = v.data();
    s.u = u.data();
    s.a = const_cast<C*>(a.data());
    return s;
  }

  static double norm(const std::vector<double>& x) {
    double s = 0.0;
    for (double e : x) s += e * e;
    return std::sqrt(s);
  }

  void fail_sigma(double sigma) const {
    throw Error(ErrorKind::Value,
                "spectral_norm: sigma = " + std::to_string(sigma) +
                    ": W v is zero (W is zero, or u / v have zero norm): W/σ is undefined");
  }

  void forward() {
    const bool nt_out = p.out != nullptr &&
                        p.rows * p.cols * int64_t(dtype_size(p.dtype)) >= nontemporal_threshold();
    double vn = 0.0;
    for (C e : v) vn += double(e) * double(e);
    if (p.n_iter > 0 && vn == 0.0)
      throw Error(ErrorKind::Value,
                  "spectral_norm: v: has norm 0 (the power iteration needs a nonzero start)");
    double sigma = 0.0;
    if (p.n_iter > 0) {
      std::vector<C> partials(size_t(bl.nblocks * p.cols));
      std::vector<double> ad(size_t(p.rows)), t(size_t(p.cols));
      for (int64_t it = 0; it < p.n_iter; ++it) {
        SnPass s = pass(SnPassKind::Power);
        s.partials = partials.data();
        current().spectral_norm_pass(p, s);
        std::fill(t.begin(), t.end(), 0.0);
        for (int64_t b = 0; b < bl.nblocks; ++b)  // blocks in order
          for (int64_t j = 0; j < p.cols; ++j) t[size_t(j)] += double(partials[size_t(b * p.cols + j)]);
        for (int64_t i = 0; i < p.rows; ++i) ad[size_t(i)] = double(a[size_t(i)]);
        // u = normalize(W v); Wᵀu = Wᵀa / max(‖a‖, eps); v = normalize(Wᵀu).
        const double da = std::max(norm(ad), p.eps);
        for (int64_t i = 0; i < p.rows; ++i) u[size_t(i)] = C(ad[size_t(i)] / da);
        for (double& e : t) e /= da;
        const double ns = norm(t), ds = std::max(ns, p.eps);
        for (int64_t j = 0; j < p.cols; ++j) v[size_t(j)] = C(t[size_t(j)] / ds);
        sigma = ns * ns / ds;  // uᵀ W v_new = (Wᵀu)·(Wᵀu)/max(‖Wᵀu‖, eps)
      }
      // A failing call leaves u and v as they were.
      if (!(sigma != 0.0) && (p.sigma != nullptr || p.out != nullptr)) fail_sigma(sigma);
      for (int64_t i = 0; i < p.rows; ++i) write_at(p.u, p.vec_dtype, i, double(u[size_t(i)]));
      for (int64_t j = 0; j < p.cols; ++j) write_at(p.v, p.vec_dtype, j, double(v[size_t(j)]));
    } else if (p.sigma != nullptr || p.out != nullptr) {  // σ = uᵀ W v
      current().spectral_norm_pass(p, pass(SnPassKind::RowDot));
      for (int64_t i = 0; i < p.rows; ++i) sigma += double(u[size_t(i)]) * double(a[size_t(i)]);
    }
    if (p.sigma == nullptr && p.out == nullptr) return;
    if (!(sigma != 0.0)) fail_sigma(sigma);
    if (p.sigma != nullptr) write_at(p.sigma, p.sigma_dtype, 0, sigma);
    if (p.out != nullptr) {
      SnPass s = pass(SnPassKind::Scale);
      s.k = 1.0 / sigma;
      s.nontemporal = nt_out;
      s.threads = threads_for(p.rows * p.cols, p.rows);
      s.nblocks = p.rows, s.rows_per_block = 1;
      current().spectral_norm_pass(p, s);
    }
  }

  void backward() {
    const double sigma = read_at(p.sigma, p.sigma_dtype, 0);
    if (!(sigma != 0.0)) fail_sigma(sigma);
    std::vector<double> dots(size_t(bl.nblocks));
    SnPass s = pass(SnPassKind::Dot);
    s.dots = dots.data();
    current().spectral_norm_pass(p, s);
    double c = 0.0;
    for (double d : dots) c += d;  // blocks in order
    SnPass ap = pass(SnPassKind::BackwardApply);
    ap.k = 1.0 / sigma;
    ap.k2 = c / (sigma * sigma);
    ap.nontemporal = p.rows * p.cols * int64_t(dtype_size(p.dtype)) >= nontemporal_threshold();
    ap.threads = threads_for(p.rows * p.cols, p.rows);
    ap.nblocks = p.rows, ap.rows_per_block = 1;
    current().spectral_norm_pass(p, ap);
  }
};

}  // namespace
}  // namespace normkit::cpu

namespace normkit::detail {

void cpu_spectral_norm(const SnProblem& p) {
  if (p.dtype == DType::Float64) {
    cpu::Dispatch<double> d(p);
    p.backward ? d.backward() : d.forward();
  } else {
    cpu::Dispatch<float> d(p);
    p.backward ? d.backward() : d.forward();
  }
}

}  // namespace normkit::detail
