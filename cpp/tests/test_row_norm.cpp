// Layer norm, RMS norm, the fused residual add and AdaNorm (SPEC §1–3, §8) against the
// float64 reference: every dtype × every ISA this CPU runs × odd hidden sizes × strided,
// padded and misaligned layouts × the optional features, forward and backward.
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include <sys/mman.h>
#include <unistd.h>

#include "nk_test.hpp"
#include "normkit/normkit.hpp"
#include "reference.hpp"
#include "row_norm_case.hpp"

namespace {

using namespace nk_case;
using normkit::DType;
using normkit::NormKind;

// Odd sizes and vector width ± 1 for every width in use (4, 8, 16 floats; 8, 16, 32 halves).
const std::vector<int64_t> kHs = {1, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 1000, 4097};

// The variants each (kind, dtype, H) is run in; together they cover every optional input
// and output, padded and multi-dim leading dims, misaligned starts, and both workspace modes.
std::vector<Case> ada_variants(DType dt, int64_t H);

std::vector<Case> variants(NormKind kind, DType dt, int64_t H) {
  if (kind == NormKind::Ada) return ada_variants(dt, H);
  const bool low = dt == DType::Float16 || dt == DType::BFloat16;
  const DType mixed = low ? DType::Float32 : dt;
  std::vector<Case> v;
  Case base;
  base.kind = kind;
  base.dt = dt;
  base.pdt = mixed;
  base.row = {H};
  base.eps = kind == NormKind::Layer ? 1e-5 : 1e-6;

  Case a = base;  // plain, affine, contiguous
  a.lead = {5};
  v.push_back(a);

  Case b = base;  // no affine, padded rows, misaligned, caller's workspace
  b.lead = {3};
  b.weight = b.bias = false;
  b.pad = 3;
  b.misalign = 1;
  b.user_workspace = true;
  v.push_back(b);

  Case c = base;  // fused add with everything, two padded lead dims, DeepNet-style scale
  c.lead = {2, 3};
  c.pad = 2;
  c.misalign = 1;
  c.fused = c.x_bias = c.store_s = c.ds = true;
  c.residual_scale = 2.0;
  v.push_back(c);

  Case d = base;  // fused add without s; RMS zero-centred weight; layer bias only; no stats
  d.lead = {4};
  d.fused = true;
  d.stats = false;
  if (kind == NormKind::RMS) {
    d.bias = false;
    d.weight_offset = 1.0;
  } else {
    d.weight = false;
  }
  d.user_workspace = true;
  v.push_back(d);

  if (low) {  // parameters in the activation dtype (not mixed)
    Case e = base;
    e.pdt = dt;
    e.lead = {3};
    e.fused = e.x_bias = e.store_s = true;
    v.push_back(e);
  }
  return v;
}

// AdaNorm has no parameters and no fused add: its variants differ in layout, k, scale, eps
// and whether the backward gets the forward's statistics. H = 1 has no unbiased std (an error,
// test_errors).
std::vector<Case> ada_variants(DType dt, int64_t H) {
  std::vector<Case> v;
  if (H < 2) return v;
  Case base;
  base.ada();
  base.dt = dt;
  base.row = {H};

  Case a = base;  // the paper's defaults, contiguous
  a.lead = {5};
  v.push_back(a);

  Case b = base;  // padded, misaligned rows; other k, scale and eps; stats from the reference
  b.lead = {3};
  b.pad = 3;
  b.misalign = 1;
  b.stats = false;
  b.ada_k = -0.3;
  b.ada_scale = 0.7;
  b.eps = 1e-2;
  b.x_mean = 3.0;
  b.x_sd = 2.0;
  v.push_back(b);

  Case c = base;  // two padded lead dims, k = 0 (a plain normalization by the unbiased std)
  c.lead = {2, 3};
  c.pad = 2;
  c.ada_k = 0.0;
  c.ada_scale = 1.0;
  c.user_workspace = true;
  v.push_back(c);
  return v;
}

const NormKind kKinds[] = {NormKind::Layer, NormKind::RMS, NormKind::Ada};

void sweep(DType dt, bool cuda) {
  RuntimeGuard guard;
  uint64_t seed = 1000 + uint64_t(dt);
  for (const Target& t : targets(cuda)) {
    t.use();
    for (NormKind kind : kKinds)
      for (int64_t H : kHs)
        for (Case c : variants(kind, dt, H)) {
          c.cuda = t.cuda;
          Run run;
          run_case(c, ++seed, run);
          check_run(c, run);
        }
  }
}

void extreme_shapes(bool cuda);
void two_normalized_dims(bool cuda);
void in_place(bool cuda);
void zero_rows(bool cuda);
void backward_in_place(bool cuda);
void large_mean_float32(bool cuda);
void nan_propagates_within_its_row(bool cuda);
void ada_constant_rows(bool cuda);

}  // namespace

// Each test runs on every CPU ISA (group row_norm) and on the CUDA backend (row_norm_cuda).
#define ROW_NORM_TEST(name, call)                   \
  NK_TEST(row_norm, name) { call(false); }          \
  NK_TEST(row_norm_cuda, name) {                    \
    require_cuda();                                 \
    call(true);                                     \
  }

ROW_NORM_TEST(float32, [](bool cuda) { sweep(DType::Float32, cuda); })
ROW_NORM_TEST(float64, [](bool cuda) { sweep(DType::Float64, cuda); })
ROW_NORM_TEST(float16, [](bool cuda) { sweep(DType::Float16, cuda); })
ROW_NORM_TEST(bfloat16, [](bool cuda) { sweep(DType::BFloat16, cuda); })
ROW_NORM_TEST(extreme_shapes, extreme_shapes)
ROW_NORM_TEST(two_normalized_dims, two_normalized_dims)
ROW_NORM_TEST(in_place, in_place)
ROW_NORM_TEST(zero_rows, zero_rows)
ROW_NORM_TEST(backward_in_place, backward_in_place)
ROW_NORM_TEST(large_mean_float32, large_mean_float32)
ROW_NORM_TEST(nan_propagates_within_its_row, nan_propagates_within_its_row)
ROW_NORM_TEST(ada_constant_rows, ada_constant_rows)

namespace {

// Rows longer than any cache-sized chunk, and the single-row / many-tiny-rows extremes.
void extreme_shapes(bool cuda) {
  RuntimeGuard guard;
  uint64_t seed = 77;
  for (const Target& t : targets(cuda)) {
    t.use();
    for (DType dt : {DType::Float32, DType::Float64, DType::Float16, DType::BFloat16})
      for (NormKind kind : kKinds) {
        Case c;
        c.cuda = t.cuda;
        c.kind = kind;
        c.dt = dt;
        c.pdt = (dt == DType::Float64) ? dt : DType::Float32;
        c.lead = {2};
        c.row = {65536};
        c.fused = c.store_s = true;
        // AdaNorm: rstd = 1/(s + eps) reaches 1/eps on rows of equal values (frequent among
        // 1000 rows of two 16-bit elements); eps = 1e-3 keeps dx inside float16's range.
        if (kind == NormKind::Ada) c.ada().eps = 1e-3;
        Run r1;
        run_case(c, ++seed, r1);
        check_run(c, r1);

        Case one = c;  // a single row with no leading dims at all
        one.lead = {};
        one.row = {33};
        Run r2;
        run_case(one, ++seed, r2);
        check_run(one, r2);

        Case tiny = c;  // many rows of H = 1 (AdaNorm: 2) and H = 3
        tiny.fused = tiny.store_s = false;
        tiny.lead = {1000};
        for (int64_t H : {kind == NormKind::Ada ? 2 : 1, 3}) {
          tiny.row = {H};
          Run r3;
          run_case(tiny, ++seed, r3);
          check_run(tiny, r3);
        }
      }
  }
}

// normalized_ndim = 2: the row is [4, 25] and the parameters are shaped [4, 25].
void two_normalized_dims(bool cuda) {
  RuntimeGuard guard;
  uint64_t seed = 500;
  for (const Target& t : targets(cuda)) {
    t.use();
    for (DType dt : {DType::Float32, DType::BFloat16})
      for (NormKind kind : kKinds) {
        Case c;
        c.cuda = t.cuda;
        c.kind = kind;
        c.dt = dt;
        c.lead = {3, 2};
        c.row = {4, 25};
        c.pad = 5;
        c.fused = c.x_bias = c.store_s = c.ds = true;
        if (kind == NormKind::Ada) c.ada();
        Run run;
        run_case(c, ++seed, run);
        check_run(c, run);
      }
  }
}

// y written over x, and s over the residual (exact aliasing is allowed).
void in_place(bool cuda) {
  RuntimeGuard guard;
  uint64_t seed = 900;
  for (const Target& t : targets(cuda)) {
    t.use();
    for (DType dt : {DType::Float32, DType::Float64, DType::Float16, DType::BFloat16})
      for (NormKind kind : kKinds)
        for (bool fused : {false, true}) {
          if (kind == NormKind::Ada && fused) continue;
          Case c;
          c.cuda = t.cuda;
          c.kind = kind;
          c.dt = dt;
          c.pdt = (dt == DType::Float64) ? dt : DType::Float32;
          c.lead = {3};
          c.row = {67};
          c.pad = 1;
          c.in_place = true;
          c.fused = c.store_s = fused;
          if (kind == NormKind::Ada) c.ada();
          Run run;
          run_case(c, ++seed, run);
          check_run(c, run);
        }
  }
}

// dx written over dy, or over x (exact aliases are allowed): the parameter gradients, which
// read dy and x, must still see them (the CUDA backward then takes its split path, also for
// rows of one segment; Note [Order of the backward passes] in cuda/row_norm.cu).
void backward_in_place(bool cuda) {
  RuntimeGuard guard;
  uint64_t seed = 1300;
  for (const Target& t : targets(cuda)) {
    t.use();
    for (DType dt : {DType::Float32, DType::Float64, DType::Float16, DType::BFloat16})
      for (NormKind kind : kKinds)
        for (int alias : {1, 2})
          for (int64_t H : {33, 1000, 9000}) {
            Case c;
            c.cuda = t.cuda;
            c.kind = kind;
            c.dt = dt;
            c.pdt = (dt == DType::Float64) ? dt : DType::Float32;
            c.lead = {3};
            c.row = {H};
            c.pad = 1;
            c.fused = c.x_bias = c.ds = true;  // dresidual and dx_bias too
            if (kind == NormKind::Ada) c.ada();
            c.dx_alias = alias;
            Run run;
            run_case(c, ++seed, run);
            check_run(c, run);
          }
  }
}

// Zero rows: nothing to do, nothing written, no error.
void zero_rows(bool cuda) {
  for (DType dt : {DType::Float32, DType::BFloat16}) {
    Case c;
    c.cuda = cuda;
    c.dt = dt;
    c.lead = {0};
    c.row = {8};
    c.fused = c.x_bias = c.store_s = c.ds = true;
    Run run;
    run_case(c, 1, run);
    check_run(c, run);
  }
}

// SPEC §0: x = 1e4 + N(0, 1) in float32 must give the float64 answer to 1e-4 relative
// (here: max |y − y64| ≤ 1e-4·max |y64|). E[x²] − E[x]² in float32 gets garbage here, and
// even a plain (x − mean)·rstd with a float32 mean is off by up to its half-ulp, 4.9e-4.
void large_mean_float32(bool cuda) {
  RuntimeGuard guard;
  for (const Target& t : targets(cuda)) {
    t.use();
    for (NormKind kind : {NormKind::Layer, NormKind::Ada})
    for (int64_t H : {17, 1000, 4097}) {
      Case c;
      c.cuda = t.cuda;
      c.kind = kind;
      c.dt = DType::Float32;
      c.lead = {4};
      c.row = {H};
      c.weight = c.bias = false;
      c.backward = false;
      c.x_mean = 1e4;
      Run run;
      run_case(c, uint64_t(H), run);
      RefForward rf;
      rf.kind = kind;
      rf.rows = c.rows();
      rf.H = H;
      rf.eps = c.eps;
      rf.x = &run.vx;
      const RefForwardOut fo = ref_forward(rf);
      const std::vector<double> y = run.y.values();
      double worst = 0, scale = 0;
      for (size_t i = 0; i < y.size(); ++i) {
        worst = std::max(worst, std::fabs(y[i] - fo.y[i]));
        scale = std::max(scale, std::fabs(fo.y[i]));
      }
      NK_CHECK(worst <= 1e-4 * scale) << "max |y - y_ref| = " << worst << " > 1e-4 * "
                                      << scale << " [" << c.describe() << "]";
      // And the statistics: the saved float32 mean within an ulp of 1e4 (9.8e-4).
      const std::vector<double> rstd = run.rstd.values(), mean = run.mean.values();
      for (size_t r = 0; r < rstd.size(); ++r) {
        NK_CHECK(std::fabs(mean[r] - fo.mean[r]) <= 9.8e-4)
            << "mean row " << r << ": " << mean[r] << " vs " << fo.mean[r] << " ["
            << c.describe() << "]";
        NK_CHECK(std::fabs(rstd[r] - fo.rstd[r]) <= 1e-5 * fo.rstd[r])
            << "rstd row " << r << ": " << rstd[r] << " vs " << fo.rstd[r] << " ["
            << c.describe() << "]";
      }
    }
  }
}

// NaN and Inf in x are data: they make their own row NaN and leave the other rows alone.
void nan_propagates_within_its_row(bool cuda) {
  RuntimeGuard guard;
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  for (const Target& t : targets(cuda)) {
    t.use();
    for (DType dt : {DType::Float32, DType::Float64, DType::Float16, DType::BFloat16})
      for (NormKind kind : kKinds)
        for (int64_t H : {5, 33, 1000}) {
          Layout L;
          L.lead = {4};
          L.row = {H};
          HostArray x(dt, L), y(dt, L);
          Rng rng(uint64_t(H) * 7 + uint64_t(dt));
          std::vector<double> vx = x.fill([&](int64_t r, int64_t j) {
            if (r == 1 && j == H / 2) return nan;
            if (r == 2 && j == H - 1) return inf;
            return rng.normal();
          });
          normkit::RowNormForwardArgs f;
          f.kind = kind;
          f.eps = 1e-5;
          f.x = x.ptr();
          f.y = y.ptr();
          {
            OnDevice dev(cuda, {&x, &y});
            normkit::row_norm_forward(f);
          }
          RefForward rf;
          rf.kind = kind;
          rf.rows = 4;
          rf.H = H;
          rf.eps = 1e-5;
          rf.x = &vx;
          const RefForwardOut fo = ref_forward(rf);
          const std::vector<double> vy = y.values();
          const std::string desc = std::string(normkit::dtype_name(dt)) + " H=" +
                                   std::to_string(H) + " on=" + t.name() +
                                   (kind == NormKind::RMS ? " rms" : kind == NormKind::Ada ? " ada" : " layer");
          for (int64_t r : {1, 2}) {
            int64_t not_nan = 0;
            for (int64_t j = 0; j < H; ++j) not_nan += std::isnan(vy[size_t(r * H + j)]) ? 0 : 1;
            // An Inf in an RMS row gives mean(x²) = Inf, rrms = 0: x̂ = Inf·0 = NaN at that
            // element and 0 elsewhere, as IEEE arithmetic says (checked with the reference
            // below); a layer-norm (or AdaNorm) row goes all NaN (mean = Inf).
            if (kind != NormKind::RMS || r == 1) {
              NK_CHECK(not_nan == 0) << "row " << r << ": " << not_nan << " non-NaN outputs ["
                                     << desc << "]";
            }
          }
          // Rows 0 and 3 are unaffected (and the RMS row with an Inf is IEEE's answer).
          for (int64_t r : {0, 2, 3}) {
            if (r == 2 && kind != NormKind::RMS) continue;
            std::vector<double> got(vy.begin() + r * H, vy.begin() + (r + 1) * H);
            std::vector<double> ref(fo.y.begin() + r * H, fo.y.begin() + (r + 1) * H);
            NK_CHECK_CLOSE("y", got, ref, tol_for(dt), desc + " row " + std::to_string(r));
          }
        }
  }
}

// AdaNorm of a constant row: s = 0, so ŷ = 0 and y = 0; the std has no derivative there and
// the backward holds it constant (Note [AdaNorm backward]): dx = rstd·(g − mean(g)) with
// rstd = 1/eps and g = scale·dy — finite, not NaN. Rows of other values stay exact.
void ada_constant_rows(bool cuda) {
  RuntimeGuard guard;
  for (const Target& t : targets(cuda)) {
    t.use();
    for (DType dt : {DType::Float32, DType::Float64, DType::BFloat16})
      for (int64_t H : {2, 33, 1000}) {
        Layout L;
        L.lead = {3};
        L.row = {H};
        const normkit::DType sdt = normkit::stat_dtype(dt);
        HostArray x(dt, L), y(dt, L), dy(dt, L), dx(dt, L);
        HostArray mean = HostArray::compact(sdt, {3}), rstd = HostArray::compact(sdt, {3});
        Rng rng(uint64_t(H) + 5);
        const std::vector<double> vx =
            x.fill([&](int64_t r, int64_t) { return r == 0 ? 0.0 : r == 1 ? 1.5 : rng.normal(); });
        std::vector<double> vdy = dy.fill_normal(rng);
        {
          OnDevice dev(cuda, {&x, &y, &mean, &rstd, &dy, &dx});
          normkit::ada_norm_forward(*x.ptr(), 0.1, 2.0, 1e-5, *y.ptr(), mean.ptr(), rstd.ptr());
          normkit::ada_norm_backward(*dy.ptr(), *x.ptr(), *mean.ptr(), *rstd.ptr(), 0.1, 2.0,
                                     *dx.ptr());
        }
        RefBackward rb;
        rb.kind = NormKind::Ada;
        rb.rows = 3;
        rb.H = H;
        rb.eps = 1e-5;
        rb.s = &vx;
        rb.dy = &vdy;
        const RefBackwardOut bo = ref_backward(rb);
        const std::string desc = std::string(normkit::dtype_name(dt)) + " H=" + std::to_string(H) +
                                 " on=" + t.name();
        const std::vector<double> vy = y.values(), vdx = dx.values();
        for (int64_t r : {0, 1}) {
          for (int64_t j = 0; j < H; ++j) NK_CHECK(vy[size_t(r * H + j)] == 0.0) << desc;
          double mean_dy = 0;
          for (int64_t j = 0; j < H; ++j) mean_dy += vdy[size_t(r * H + j)];
          mean_dy /= double(H);
          std::vector<double> got(vdx.begin() + r * H, vdx.begin() + (r + 1) * H), ref;
          for (int64_t j = 0; j < H; ++j) {
            ref.push_back(2.0 / 1e-5 * (vdy[size_t(r * H + j)] - mean_dy));
            NK_CHECK(std::fabs(ref.back() - bo.dx[size_t(r * H + j)]) <= 1e-9 * (std::fabs(ref.back()) + 1))
                << "the reference's constant row [" << desc << "]";
          }
          NK_CHECK_CLOSE("dx", got, ref, tol_for(dt), desc + " row " + std::to_string(r));
        }
        std::vector<double> got(vdx.begin() + 2 * H, vdx.end());
        std::vector<double> ref(bo.dx.begin() + 2 * H, bo.dx.end());
        std::vector<double> mag(bo.dx_mag.begin() + 2 * H, bo.dx_mag.end());
        NK_CHECK_CLOSE_MAG("dx", got, ref, tol_for(dt), &mag, desc + " row 2");
      }
  }
}

}  // namespace

// Note [Masked partial vectors] (cpu/vec/loops.hpp): a row's last partial vector is a
// masked load / store, which must neither read nor write past the row. Every array of a
// one-row layer norm (forward and backward, with weight and bias) ends exactly at a page
// whose successor is PROT_NONE, so one lane too many faults; the results must be the bits of
// the same call on ordinary buffers. Every CPU ISA, every dtype, tails of 1..L-1 lanes.
namespace {

// n bytes ending at the end of a readable page, the next page inaccessible.
class GuardedBytes {
 public:
  explicit GuardedBytes(size_t n) {
    const size_t page = size_t(sysconf(_SC_PAGESIZE));
    span_ = (n + page - 1) / page * page + page;
    base_ = static_cast<char*>(
        mmap(nullptr, span_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    NK_REQUIRE(base_ != MAP_FAILED);
    NK_REQUIRE(mprotect(base_ + span_ - page, page, PROT_NONE) == 0);
    data_ = base_ + span_ - page - n;
  }
  ~GuardedBytes() { munmap(base_, span_); }
  GuardedBytes(const GuardedBytes&) = delete;
  GuardedBytes& operator=(const GuardedBytes&) = delete;
  void* data() const { return data_; }

 private:
  char* base_ = nullptr;
  char* data_ = nullptr;
  size_t span_ = 0;
};

// v stored as element j of a dtype-d buffer (rounded to nearest even for 16-bit).
void put(void* p, DType d, int64_t j, double v) {
  switch (d) {
    case DType::Float32: static_cast<float*>(p)[j] = float(v); break;
    case DType::Float64: static_cast<double*>(p)[j] = v; break;
    case DType::Float16: static_cast<normkit::half_t*>(p)[j] = normkit::float_to_half(float(v)); break;
    case DType::BFloat16:
      static_cast<normkit::bfloat16_t*>(p)[j] = normkit::float_to_bf16(float(v));
      break;
  }
}

}  // namespace

NK_TEST(row_norm, partial_vectors_at_a_guard_page) {
  RuntimeGuard guard;
  for (const Target& t : targets(false)) {
    t.use();
    for (DType dt : {DType::Float32, DType::Float64, DType::Float16, DType::BFloat16}) {
      const DType pdt = dt == DType::Float64 ? DType::Float64 : DType::Float32;
      const size_t es = normkit::dtype_size(dt), ps = normkit::dtype_size(pdt);
      for (int64_t H : {int64_t(1), int64_t(3), int64_t(7), int64_t(15), int64_t(17),
                        int64_t(31), int64_t(33), int64_t(1003)}) {
        const std::string desc = std::string(normkit::dtype_name(dt)) + " H=" +
                                 std::to_string(H) + " isa=" + t.name();
        const size_t xb = size_t(H) * es, pb = size_t(H) * ps;
        // Inputs: the same bytes in ordinary and guarded buffers.
        std::vector<unsigned char> x(xb), dy(xb), w(pb), b(pb);
        Rng rng(uint64_t(H) * 7 + uint64_t(dt));
        auto fill = [&](std::vector<unsigned char>& v, DType d, double lo) {
          for (int64_t j = 0; j < H; ++j) put(v.data(), d, j, lo + rng.normal());
        };
        fill(x, dt, 0.3);
        fill(dy, dt, 0.0);
        fill(w, pdt, 1.0);
        fill(b, pdt, 0.0);
        GuardedBytes gx(xb), gdy(xb), gw(pb), gb(pb), gy(xb), gdx(xb), gdw(pb), gdb(pb);
        std::memcpy(gx.data(), x.data(), xb);
        std::memcpy(gdy.data(), dy.data(), xb);
        std::memcpy(gw.data(), w.data(), pb);
        std::memcpy(gb.data(), b.data(), pb);
        std::vector<unsigned char> y(xb), dx(xb), dw(pb), db(pb);
        float mean = 0, rstd = 0, gmean = 0, grstd = 0;
        double mean64 = 0, rstd64 = 0, gmean64 = 0, grstd64 = 0;
        const DType sdt = pdt;
        void* sm = dt == DType::Float64 ? static_cast<void*>(&mean64) : &mean;
        void* sr = dt == DType::Float64 ? static_cast<void*>(&rstd64) : &rstd;
        void* gsm = dt == DType::Float64 ? static_cast<void*>(&gmean64) : &gmean;
        void* gsr = dt == DType::Float64 ? static_cast<void*>(&grstd64) : &grstd;
        auto run = [&](void* X, void* DY, void* W, void* B, void* Y, void* DX, void* DW,
                       void* DB, void* M, void* S) {
          const int64_t shape[2] = {1, H}, one = 1;
          using normkit::TensorView;
          const TensorView vx = TensorView::contiguous(X, dt, shape, 2);
          const TensorView vdy = TensorView::contiguous(DY, dt, shape, 2);
          const TensorView vy = TensorView::contiguous(Y, dt, shape, 2);
          const TensorView vdx = TensorView::contiguous(DX, dt, shape, 2);
          const TensorView vw = TensorView::contiguous(W, pdt, &H, 1);
          const TensorView vb = TensorView::contiguous(B, pdt, &H, 1);
          const TensorView vdw = TensorView::contiguous(DW, pdt, &H, 1);
          const TensorView vdb = TensorView::contiguous(DB, pdt, &H, 1);
          const TensorView vm = TensorView::contiguous(M, sdt, &one, 1);
          const TensorView vs = TensorView::contiguous(S, sdt, &one, 1);
          normkit::layer_norm_forward(vx, &vw, &vb, 1e-5, vy, &vm, &vs);
          normkit::RowNormBackwardArgs a;
          a.kind = NormKind::Layer;
          a.dy = &vdy;
          a.x = &vx;
          a.mean = &vm;
          a.rstd = &vs;
          a.weight = &vw;
          a.dx = &vdx;
          a.dweight = &vdw;
          a.dbias = &vdb;
          normkit::row_norm_backward(a);
        };
        run(x.data(), dy.data(), w.data(), b.data(), y.data(), dx.data(), dw.data(),
            db.data(), sm, sr);
        run(gx.data(), gdy.data(), gw.data(), gb.data(), gy.data(), gdx.data(), gdw.data(),
            gdb.data(), gsm, gsr);
        NK_CHECK(std::memcmp(gy.data(), y.data(), xb) == 0) << "y " << desc;
        NK_CHECK(std::memcmp(gdx.data(), dx.data(), xb) == 0) << "dx " << desc;
        NK_CHECK(std::memcmp(gdw.data(), dw.data(), pb) == 0) << "dweight " << desc;
        NK_CHECK(std::memcmp(gdb.data(), db.data(), pb) == 0) << "dbias " << desc;
        NK_CHECK(std::memcmp(gsm, sm, ps) == 0 && std::memcmp(gsr, sr, ps) == 0) << desc;
      }
    }
  }
}
