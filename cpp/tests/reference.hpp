// reference.hpp — what the C++ tests compare the kernels with:
//   * Ref*: float64 implementations of SPEC §1–3 written straight from the equations
//     (two passes per row, no tricks), on dense row-major [rows, H] arrays of double;
//   * HostArray: a typed host buffer with a TensorView over it, in any of the four dtypes,
//     with padded/strided leading dims and a misaligned start, pre-filled with NaN so that
//     unwritten elements and writes outside the view are caught;
//   * Rng: a small deterministic generator (the tests must not depend on the platform's
//     std:: distributions, which differ between standard libraries).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "normkit/normkit.hpp"

#if NORMKIT_TEST_WITH_CUDA
#include <cuda_runtime.h>
#endif

namespace nk_ref {

using normkit::DType;
using normkit::NormKind;
using normkit::TensorView;

// ---------------------------------------------------------------------------------------
// Random numbers: splitmix64 + Box–Muller.
// ---------------------------------------------------------------------------------------
class Rng {
 public:
  explicit Rng(uint64_t seed) : s_(seed) {}
  uint64_t next() {
    uint64_t z = (s_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  double uniform() { return double(next() >> 11) * (1.0 / 9007199254740992.0); }  // [0, 1)
  // Box–Muller gives two independent normals per (log, sqrt, sincos): keep the second.
  double normal() {
    if (have_spare_) {
      have_spare_ = false;
      return spare_;
    }
    const double u1 = 1.0 - uniform();  // (0, 1]
    const double u2 = uniform();
    const double r = std::sqrt(-2.0 * std::log(u1)), t = 6.283185307179586 * u2;
    spare_ = r * std::sin(t);
    have_spare_ = true;
    return r * std::cos(t);
  }

 private:
  uint64_t s_;
  double spare_ = 0.0;
  bool have_spare_ = false;
};

// ---------------------------------------------------------------------------------------
// Element access in any dtype, through double.
// ---------------------------------------------------------------------------------------
inline double load(const void* base, DType t, int64_t i) {
  switch (t) {
    case DType::Float32: return double(static_cast<const float*>(base)[i]);
    case DType::Float64: return static_cast<const double*>(base)[i];
    case DType::Float16:
      return double(normkit::half_to_float(static_cast<const normkit::half_t*>(base)[i]));
    case DType::BFloat16:
      return double(normkit::bf16_to_float(static_cast<const normkit::bfloat16_t*>(base)[i]));
  }
  return 0;
}

inline void store(void* base, DType t, int64_t i, double v) {
  switch (t) {
    case DType::Float32: static_cast<float*>(base)[i] = float(v); return;
    case DType::Float64: static_cast<double*>(base)[i] = v; return;
    case DType::Float16:
      static_cast<normkit::half_t*>(base)[i] = normkit::float_to_half(float(v));
      return;
    case DType::BFloat16:
      static_cast<normkit::bfloat16_t*>(base)[i] = normkit::float_to_bf16(float(v));
      return;
  }
}

// Rounds v to the nearest value representable in t (what store() then load() gives).
inline double round_to(DType t, double v) {
  double tmp[1];
  store(tmp, t, 0, v);
  return load(tmp, t, 0);
}

// ---------------------------------------------------------------------------------------
// HostArray: shape = lead dims + row dims; the row dims are compact, the lead dims padded.
// ---------------------------------------------------------------------------------------
struct Layout {
  std::vector<int64_t> lead;  // leading (row) dims; may be empty (a single row)
  std::vector<int64_t> row;   // the normalized dims, product H
  int64_t pad = 0;            // extra elements after each row, and after each outer block
  int64_t misalign = 0;       // elements skipped before the first one (breaks 64 B alignment)
};

class HostArray {
 public:
  HostArray() = default;
  HostArray(const HostArray&) = delete;  // view().data points into mem_
  HostArray& operator=(const HostArray&) = delete;
  HostArray(HostArray&&) = default;  // a moved vector keeps its buffer
  HostArray& operator=(HostArray&&) = default;

  HostArray(DType dtype, const Layout& L) : dtype_(dtype), nrow_(int(L.row.size())) {
    const int nd = int(L.lead.size() + L.row.size());
    view_.dtype = dtype;
    view_.ndim = nd;
    int64_t stride = 1;
    for (int i = int(L.row.size()) - 1; i >= 0; --i) {
      const int d = int(L.lead.size()) + i;
      view_.shape[d] = L.row[size_t(i)];
      view_.strides[d] = stride;
      stride *= L.row[size_t(i)];
    }
    H_ = stride;
    // Each lead dim (innermost first) strides over the previous block plus `pad`.
    int64_t block = H_;
    for (int i = int(L.lead.size()) - 1; i >= 0; --i) {
      const int64_t st = block + L.pad;
      view_.shape[i] = L.lead[size_t(i)];
      view_.strides[i] = st;
      block = st * L.lead[size_t(i)];
    }
    rows_ = 1;
    for (int64_t d : L.lead) rows_ *= d;
    offset_ = L.misalign;
    const int64_t total = offset_ + block + L.pad + 1;
    // double storage keeps the base 8-byte (and, from malloc, 16-byte) aligned; misalign
    // then moves the view off any vector alignment.
    const int64_t esz = normkit::dtype_size(dtype);
    mem_.assign(size_t((total * esz + 7) / 8), 0.0);
    fill_nan();
    view_.data = static_cast<char*>(static_cast<void*>(mem_.data())) + offset_ * esz;
    // Which elements belong to the view: everything else must stay untouched.
    inside_.assign(size_t(total), 0);
    for (int64_t r = 0; r < rows_; ++r) {
      char* p = inside_.data() + offset_ + row_offset(r);
      std::memset(p, 1, size_t(H_));
    }
    total_ = total;
  }

  // A compact array shaped `shape` (parameters, statistics).
  static HostArray compact(DType dtype, const std::vector<int64_t>& shape, int64_t misalign = 0) {
    Layout L;
    L.row = shape;
    L.misalign = misalign;
    return HostArray(dtype, L);
  }

  DType dtype() const { return dtype_; }
  int64_t rows() const { return rows_; }
  int64_t H() const { return H_; }
  TensorView& view() { return view_; }
  const TensorView* ptr() const { return &view_; }

  // Element offset of row r from view().data, computed independently of the core.
  int64_t row_offset(int64_t r) const {
    const int nlead = view_.ndim - nrow_;
    int64_t off = 0;
    for (int d = nlead - 1; d >= 0; --d) {
      const int64_t q = r / view_.shape[d];
      off += (r - q * view_.shape[d]) * view_.strides[d];
      r = q;
    }
    return off;
  }

  double get(int64_t r, int64_t j) const { return load(view_.data, dtype_, row_offset(r) + j); }
  void set(int64_t r, int64_t j, double v) { store(view_.data, dtype_, row_offset(r) + j, v); }

  // Dense [rows, H] copy of the view's values.
  std::vector<double> values() const {
    std::vector<double> v(size_t(rows_ * H_));
    for (int64_t r = 0; r < rows_; ++r) {
      const int64_t base = row_offset(r);
      for (int64_t j = 0; j < H_; ++j) v[size_t(r * H_ + j)] = load(view_.data, dtype_, base + j);
    }
    return v;
  }
  // Fills the view with values from f(r, j), rounded to the dtype; returns the stored values.
  template <typename F>
  std::vector<double> fill(F f) {
    std::vector<double> v(size_t(rows_ * H_));
    for (int64_t r = 0; r < rows_; ++r) {
      const int64_t base = row_offset(r);
      for (int64_t j = 0; j < H_; ++j) {
        store(view_.data, dtype_, base + j, f(r, j));
        v[size_t(r * H_ + j)] = load(view_.data, dtype_, base + j);
      }
    }
    return v;
  }
  std::vector<double> fill_normal(Rng& rng, double mean = 0.0, double sd = 1.0) {
    return fill([&](int64_t, int64_t) { return mean + sd * rng.normal(); });
  }

  // Every element (inside and outside the view) becomes NaN.
  void fill_nan() {
    const size_t esz = size_t(normkit::dtype_size(dtype_));
    alignas(8) unsigned char nan_bytes[8];
    store(nan_bytes, dtype_, 0, std::nan(""));
    unsigned char* p = static_cast<unsigned char*>(static_cast<void*>(mem_.data()));
    const size_t n = mem_.size() * 8 / esz;
    for (size_t i = 0; i < n; ++i) std::memcpy(p + i * esz, nan_bytes, esz);
  }

  // True when no element outside the view was modified since construction (they are NaN
  // with the canonical bit pattern that fill_nan() wrote).
  bool padding_intact(std::string* where = nullptr) const {
    const int64_t esz = normkit::dtype_size(dtype_);
    alignas(8) unsigned char probe[8];
    store(probe, dtype_, 0, std::nan(""));
    const char* base = static_cast<const char*>(static_cast<const void*>(mem_.data()));
    for (int64_t i = 0; i < total_; ++i) {
      if (inside_[size_t(i)]) continue;
      if (std::memcmp(base + i * esz, probe, size_t(esz)) != 0) {
        if (where) *where = "element " + std::to_string(i - offset_) + " outside the view";
        return false;
      }
    }
    return true;
  }

  // The CUDA backend (real or emulated): the whole buffer — the view and the NaN around it —
  // moves to device memory (same offset, so the same alignment modulo 16 bytes), the view
  // then points there with device = CUDA; to_host() copies it back and points the view at
  // the host buffer again, so every check of this class works unchanged on a device result.
  bool on_device() const { return dev_ != nullptr; }
  void to_device() {
    if (view_.data == nullptr || dev_ != nullptr) return;
#if NORMKIT_TEST_WITH_CUDA
    const size_t n = mem_.size() * sizeof(double);
    void* d = nullptr;
    require(cudaMalloc(&d, n), "cudaMalloc");
    dev_.reset(d);
    require(cudaMemcpy(d, mem_.data(), n, cudaMemcpyHostToDevice), "cudaMemcpy to the device");
    view_.data = static_cast<char*>(d) + offset_ * normkit::dtype_size(dtype_);
    view_.device = normkit::DeviceType::CUDA;
    view_.device_index = 0;
#else
    throw normkit::Error(normkit::ErrorKind::Runtime, "HostArray::to_device: built without CUDA");
#endif
  }
  void to_host() {
    if (dev_ == nullptr) return;
#if NORMKIT_TEST_WITH_CUDA
    require(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
    require(cudaMemcpy(mem_.data(), dev_.get(), mem_.size() * sizeof(double),
                       cudaMemcpyDeviceToHost),
            "cudaMemcpy to the host");
#endif
    dev_.reset();
    view_.data = static_cast<char*>(static_cast<void*>(mem_.data())) +
                 offset_ * normkit::dtype_size(dtype_);
    view_.device = normkit::DeviceType::CPU;
  }

  // Raw bytes of the view's elements, row by row (for bitwise comparisons).
  std::vector<unsigned char> bytes() const {
    const int64_t esz = normkit::dtype_size(dtype_);
    std::vector<unsigned char> b;
    b.reserve(size_t(rows_ * H_ * esz));
    // On the device: read the host buffer after a copy back (the device copy stays).
    std::vector<double> host;
    const unsigned char* base = static_cast<const unsigned char*>(view_.data);
    if (dev_ != nullptr) {
#if NORMKIT_TEST_WITH_CUDA
      host.resize(mem_.size());
      require(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
      require(cudaMemcpy(host.data(), dev_.get(), host.size() * sizeof(double),
                         cudaMemcpyDeviceToHost),
              "cudaMemcpy to the host");
#endif
      base = static_cast<const unsigned char*>(static_cast<const void*>(host.data())) +
             offset_ * esz;
    }
    for (int64_t r = 0; r < rows_; ++r) {
      const unsigned char* p = base + row_offset(r) * esz;
      b.insert(b.end(), p, p + H_ * esz);
    }
    return b;
  }

 private:
#if NORMKIT_TEST_WITH_CUDA
  static void require(cudaError_t e, const char* what) {
    if (e != cudaSuccess)
      throw normkit::Error(normkit::ErrorKind::Runtime,
                           std::string("test arrays: ") + what + ": " + cudaGetErrorString(e));
  }
  struct DeviceFree {
    void operator()(void* p) const { (void)cudaFree(p); }
  };
#else
  struct DeviceFree {
    void operator()(void*) const {}
  };
#endif
  std::unique_ptr<void, DeviceFree> dev_;  // the device copy while on_device()
  DType dtype_ = DType::Float32;
  int nrow_ = 0;  // trailing dims that form a row
  TensorView view_;
  std::vector<double> mem_;
  std::vector<char> inside_;
  int64_t rows_ = 0, H_ = 0, offset_ = 0, total_ = 0;
};

// ---------------------------------------------------------------------------------------
// The float64 reference (SPEC §1–3, §8). Arrays are dense [rows, H]; [H] for parameters.
// ---------------------------------------------------------------------------------------
struct RefForward {
  NormKind kind = NormKind::Layer;
  int64_t rows = 0, H = 0;
  double eps = 1e-5, weight_offset = 0.0, residual_scale = 1.0;
  double ada_k = 0.1, ada_scale = 2.0;  // AdaNorm: y = scale·(1 − k·ŷ)·ŷ
  const std::vector<double>* x = nullptr;
  const std::vector<double>* residual = nullptr;  // enables s = x + x_bias + scale·r
  const std::vector<double>* x_bias = nullptr;
  const std::vector<double>* weight = nullptr;
  const std::vector<double>* bias = nullptr;
};

struct RefForwardOut {
  std::vector<double> y, s, mean, rstd;
};

inline RefForwardOut ref_forward(const RefForward& a) {
  const int64_t H = a.H;
  RefForwardOut o;
  o.y.resize(size_t(a.rows * H));
  o.s.resize(size_t(a.rows * H));
  o.mean.resize(size_t(a.rows));
  o.rstd.resize(size_t(a.rows));
  for (int64_t r = 0; r < a.rows; ++r) {
    double* s = &o.s[size_t(r * H)];
    for (int64_t j = 0; j < H; ++j) {
      double v = (*a.x)[size_t(r * H + j)];
      if (a.residual) {
        if (a.x_bias) v += (*a.x_bias)[size_t(j)];
        v += a.residual_scale * (*a.residual)[size_t(r * H + j)];
      }
      s[j] = v;
    }
    double mu = 0.0, var = 0.0, rstd;
    if (a.kind == NormKind::RMS) {
      for (int64_t j = 0; j < H; ++j) var += s[j] * s[j];  // mean(x²)
      rstd = 1.0 / std::sqrt(var / double(H) + a.eps);
    } else {
      for (int64_t j = 0; j < H; ++j) mu += s[j];
      mu /= double(H);
      for (int64_t j = 0; j < H; ++j) var += (s[j] - mu) * (s[j] - mu);
      rstd = a.kind == NormKind::Ada ? 1.0 / (std::sqrt(var / double(H - 1)) + a.eps)  // unbiased std + eps
                                     : 1.0 / std::sqrt(var / double(H) + a.eps);
    }
    o.mean[size_t(r)] = mu;
    o.rstd[size_t(r)] = rstd;
    for (int64_t j = 0; j < H; ++j) {
      const double xhat = (s[j] - mu) * rstd;
      if (a.kind == NormKind::Ada) {
        o.y[size_t(r * H + j)] = a.ada_scale * (1.0 - a.ada_k * xhat) * xhat;
        continue;
      }
      double w = a.weight ? (*a.weight)[size_t(j)] : 1.0;
      if (a.kind == NormKind::RMS && a.weight) w += a.weight_offset;
      const double b = a.bias ? (*a.bias)[size_t(j)] : 0.0;
      o.y[size_t(r * H + j)] = xhat * w + b;
    }
  }
  return o;
}

struct RefBackward {
  NormKind kind = NormKind::Layer;
  int64_t rows = 0, H = 0;
  double eps = 1e-5, weight_offset = 0.0, residual_scale = 1.0;
  double ada_k = 0.1, ada_scale = 2.0;
  const std::vector<double>* s = nullptr;   // the normalized input (x, or s of the fused add)
  const std::vector<double>* dy = nullptr;
  const std::vector<double>* ds = nullptr;  // optional gradient arriving on s
  const std::vector<double>* weight = nullptr;
};

struct RefBackwardOut {
  std::vector<double> dx, dresidual, dweight, dbias, dx_bias;
  // The size of what each result is a sum or difference of (Σ|terms|): the rounding error
  // of any implementation is relative to these, not to the result, which may cancel to ~0
  // (dx of a one-element row is exactly 0; dweight sums terms of both signs over rows).
  // A layer-norm x̂ = (x − μ)·rstd is itself a difference: its error is relative to the
  // row's spread (1 in x̂ units) and to |μ|·rstd, not to |x̂| — so its magnitude is
  // |x̂| + 1 + |μ|·rstd. RMS norm's x̂ = x·rrms has a relative error: magnitude |x̂|.
  std::vector<double> dx_mag, dresidual_mag, dweight_mag, dbias_mag, dx_bias_mag;
};

// AdaNorm (SPEC §8), one row, by the chain rule as written (not the kernels' κ form): with
// φ = scale·(1 − k·ŷ) held constant, g = dy·φ, u = x − μ, ŷ = u·rstd, rstd = 1/(s + eps),
// ∂s/∂x_i = u_i/((H−1)·s):  dx_i = rstd·(g_i − mean(g)) − rstd²·Σ_j(g_j·u_j)·u_i/((H−1)·s).
// A constant row (s = 0) drops the second term (s held constant there). mag: the size of the
// terms, with ŷ's own error relative to 1 + |ŷ| + |μ|·rstd (as for layer norm).
inline void ref_ada_row(const RefBackward& a, const double* x, const double* dy, double* dx,
                        double* mag) {
  const int64_t H = a.H;
  double mu = 0.0, m2 = 0.0;
  for (int64_t j = 0; j < H; ++j) mu += x[j];
  mu /= double(H);
  for (int64_t j = 0; j < H; ++j) m2 += (x[j] - mu) * (x[j] - mu);
  const double sd = std::sqrt(m2 / double(H - 1)), rstd = 1.0 / (sd + a.eps);
  std::vector<double> g(static_cast<size_t>(H)), gmag(static_cast<size_t>(H)),
      umag(static_cast<size_t>(H));
  double sum_g = 0, sum_gu = 0, sum_abs_g = 0, sum_abs_gu = 0;
  for (int64_t j = 0; j < H; ++j) {
    const double u = x[j] - mu, xhat = u * rstd;
    const double xmag = std::fabs(xhat) + 1.0 + std::fabs(mu) * rstd;
    g[size_t(j)] = dy[j] * a.ada_scale * (1.0 - a.ada_k * xhat);
    gmag[size_t(j)] = std::fabs(dy[j]) * std::fabs(a.ada_scale) * (1.0 + std::fabs(a.ada_k) * xmag);
    umag[size_t(j)] = xmag / rstd;
    sum_g += g[size_t(j)];
    sum_gu += g[size_t(j)] * u;
    sum_abs_g += gmag[size_t(j)];
    sum_abs_gu += gmag[size_t(j)] * umag[size_t(j)];
  }
  const double c = sd > 0 ? rstd * rstd / (double(H - 1) * sd) : 0.0;
  for (int64_t j = 0; j < H; ++j) {
    dx[j] = rstd * (g[size_t(j)] - sum_g / double(H)) - c * sum_gu * (x[j] - mu);
    mag[j] = rstd * (gmag[size_t(j)] + sum_abs_g / double(H)) + c * sum_abs_gu * umag[size_t(j)];
  }
}

// g = dy·w; dx = rstd·(g − mean(g) − x̂·mean(g·x̂)) (+ ds); RMS drops the mean(g) term.
// dresidual = scale·dx; dweight = Σ dy·x̂; dbias = Σ dy; dx_bias = Σ dx. AdaNorm: ref_ada_row.
inline RefBackwardOut ref_backward(const RefBackward& a) {
  const int64_t H = a.H;
  const size_t n = size_t(a.rows * H);
  RefBackwardOut o;
  o.dx.resize(n);
  o.dresidual.resize(n);
  o.dx_mag.resize(n);
  o.dresidual_mag.resize(n);
  for (std::vector<double>* v : {&o.dweight, &o.dbias, &o.dx_bias, &o.dweight_mag, &o.dbias_mag,
                                 &o.dx_bias_mag})
    v->assign(size_t(H), 0.0);
  std::vector<double> xhat(static_cast<size_t>(H)), g(static_cast<size_t>(H)),
      xmag(static_cast<size_t>(H));
  const bool layer = a.kind == NormKind::Layer;
  for (int64_t r = 0; r < a.rows; ++r) {
    const double* s = &(*a.s)[size_t(r * H)];
    const double* dy = &(*a.dy)[size_t(r * H)];
    if (a.kind == NormKind::Ada) {
      ref_ada_row(a, s, dy, &o.dx[size_t(r * H)], &o.dx_mag[size_t(r * H)]);
      continue;
    }
    double mu = 0.0, var = 0.0;
    if (layer) {
      for (int64_t j = 0; j < H; ++j) mu += s[j];
      mu /= double(H);
      for (int64_t j = 0; j < H; ++j) var += (s[j] - mu) * (s[j] - mu);
    } else {
      for (int64_t j = 0; j < H; ++j) var += s[j] * s[j];
    }
    var /= double(H);
    const double rstd = 1.0 / std::sqrt(var + a.eps);
    double mean_g = 0.0, mean_gx = 0.0, mean_abs_g = 0.0, mean_abs_gx = 0.0;
    for (int64_t j = 0; j < H; ++j) {
      xhat[size_t(j)] = (s[j] - mu) * rstd;
      xmag[size_t(j)] = layer ? std::fabs(xhat[size_t(j)]) + 1.0 + std::fabs(mu) * rstd
                              : std::fabs(xhat[size_t(j)]);
      double w = a.weight ? (*a.weight)[size_t(j)] : 1.0;
      if (!layer && a.weight) w += a.weight_offset;
      g[size_t(j)] = dy[j] * w;
      mean_g += g[size_t(j)];
      mean_gx += g[size_t(j)] * xhat[size_t(j)];
      mean_abs_g += std::fabs(g[size_t(j)]);
      mean_abs_gx += std::fabs(g[size_t(j)]) * xmag[size_t(j)];
    }
    mean_g /= double(H);
    mean_gx /= double(H);
    mean_abs_g /= double(H);
    mean_abs_gx /= double(H);
    if (!layer) mean_g = mean_abs_g = 0.0;
    for (int64_t j = 0; j < H; ++j) {
      const size_t i = size_t(r * H + j);
      double dx = rstd * (g[size_t(j)] - mean_g - xhat[size_t(j)] * mean_gx);
      double mag = rstd * (std::fabs(g[size_t(j)]) + mean_abs_g + xmag[size_t(j)] * mean_abs_gx);
      if (a.ds) {
        dx += (*a.ds)[i];
        mag += std::fabs((*a.ds)[i]);
      }
      o.dx[i] = dx;
      o.dx_mag[i] = mag;
      o.dresidual[i] = a.residual_scale * dx;
      o.dresidual_mag[i] = std::fabs(a.residual_scale) * mag;
      o.dweight[size_t(j)] += dy[j] * xhat[size_t(j)];
      o.dweight_mag[size_t(j)] += std::fabs(dy[j]) * xmag[size_t(j)];
      o.dbias[size_t(j)] += dy[j];
      o.dbias_mag[size_t(j)] += std::fabs(dy[j]);
      o.dx_bias[size_t(j)] += dx;
      o.dx_bias_mag[size_t(j)] += mag;
    }
  }
  return o;
}

// ---------------------------------------------------------------------------------------
// Comparison with a tolerance: |got − ref| ≤ tol·(|ref| + mag), where mag is the size of
// the terms each result was computed from (mag[i] when given, else max|ref| of the array:
// a normalized output's error is relative to the row's magnitude, not to the element's).
// NaN where the reference has none (an unwritten element) fails. Returns "" or a report.
// ---------------------------------------------------------------------------------------
inline std::string compare(const char* what, const std::vector<double>& got,
                           const std::vector<double>& ref, double tol,
                           const std::vector<double>* mag = nullptr) {
  if (got.size() != ref.size())
    return std::string(what) + ": size " + std::to_string(got.size()) + " vs reference " +
           std::to_string(ref.size());
  double scale = 0.0;
  for (double v : ref)
    if (!std::isnan(v)) scale = std::max(scale, std::fabs(v));
  size_t bad = 0, first = 0;
  double worst = 0.0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double m = mag ? (*mag)[i] : scale;
    const double err = std::fabs(got[i] - ref[i]);
    const double lim = tol * (std::fabs(ref[i]) + m);
    const bool ok = std::isnan(ref[i]) ? std::isnan(got[i]) : (err <= lim);
    if (!ok) {
      if (bad == 0) first = i;
      ++bad;
    }
    if (!std::isnan(err) && m > 0) worst = std::max(worst, err / m);
  }
  if (bad == 0) return "";
  std::ostringstream os;
  os << what << ": " << bad << " of " << got.size() << " elements off (tol " << tol
     << "); first at " << first << ": got " << got[first] << ", reference " << ref[first]
     << " (magnitude " << (mag ? (*mag)[first] : scale) << "); worst error/magnitude " << worst;
  return os.str();
}

}  // namespace nk_ref
