// cuda/row_norm.cu — layer norm, RMS norm, fused residual add + norm and AdaNorm on the GPU
// (SPEC §1–3, §8). The math is cpp/src/common/row_norm_math.hpp; this file only decides which
// thread computes what, and in which order.
//
// Shapes (see row_norm_problem.hpp): x, residual, y, residual_out, dy, ds, dx, dresidual are
// [rows, H] with a RowIndex per array (any row strides, rows contiguous inside); weight,
// bias, x_bias, dweight, dbias, dx_bias are [H]; mean, rstd are [rows] of C = compute_t<T>.
//
// Note [Row groups and segments]: a "row group" is the blockDim.x threads sharing a
// threadIdx.y. It handles one *segment* of one row: thread tx owns chunks
// c_begin + i·tpr + tx (i < kItems) and keeps them in registers between the reduction and
// the elementwise pass. When the row fits in one segment (H ≤ kSegElems) the whole
// computation is one kernel (Stage::Whole). Wider rows are cut into segments of kSegElems:
// Stage::SegPartials writes each segment's partial sums to scratch memory, a small combine
// kernel reduces each row's partials in a fixed order, and Stage::SegApply re-reads the
// segment and finishes, so that a single very wide row still spreads over every SM.
//
// Note [Batch invariance on the GPU]: tpr, kItems, the segment size and every reduction tree
// are functions of H and the dtype only — never of rows, of the grid size or of the device —
// so a row's y, mean and rstd have the same bits whatever else is in the batch (SPEC §0).
//
// Note [Deterministic parameter gradients]: dweight, dbias and dx_bias are column sums over
// rows. A column kernel gives each (32-column tile, row split) block a fixed row range and
// writes one partial per split in compute type; a second kernel adds the splits in order.
// The number of splits depends on `rows` only, so the bits do not depend on the GPU model.
// No floating-point atomics anywhere.
#include <cstdint>
#include <string>

#include "common.cuh"
#include "common/backends.hpp"
#include "common/row_norm_math.hpp"
#include "common/row_norm_problem.hpp"

namespace normkit::detail::cuda {
namespace {

// ---------------------------------------------------------------------------------------
// Traits and launch plan
// ---------------------------------------------------------------------------------------

template <typename T>
struct RowTraits {
  using C = compute_t<T>;
  static constexpr int kVec = VecTraits<T>::kVec;  // elements per 16-byte chunk
  // Threads of one row group for wide rows, and the most any block has. 512 (not 1024) so
  // that ptxas may give each thread up to 128 registers: the backward keeps two cached
  // arrays (x̂ and g) of 32 registers each.
  static constexpr int kMaxThreads = 512;
  // Chunks per thread kept in registers: 64 bytes of C = 16 registers per cached array.
  // Why not more: at 32 registers per array the fully unrolled kernels need ~128 registers
  // (the backward spilled) and ptxas took ~5× longer; rows wider than kSegElems cost one
  // extra read of the row instead (Note [Row groups and segments]).
  static constexpr int kCacheBytes = 64;
  static constexpr int kItems = kCacheBytes / (kVec * int(sizeof(C)));
  // The widest row one row group holds; also the segment size of wider rows.
  static constexpr int64_t kSegElems = int64_t(kMaxThreads) * kItems * kVec;
  // Block size aimed at for narrow rows (several rows per block): 8 warps keeps blocks
  // small enough for full occupancy on every SM generation (sm_75 allows 16 blocks/SM)
  // while amortising the per-block scheduling cost over several rows.
  static constexpr int kBlockTarget = 256;

  static_assert(kVec * sizeof(T) == 16, "a chunk is one 16-byte access");
  static_assert(kItems >= 1 && kItems * kVec * sizeof(C) == kCacheBytes, "whole chunks");
  static_assert(kMaxThreads % 32 == 0 && kMaxThreads <= 1024, "row groups are whole warps");
  static_assert(kBlockTarget <= kMaxThreads, "blocks never exceed the launch bound");
};

// What one launch of a row kernel does (warp-uniform, so one kernel per dtype serves all three).
enum class Stage : int {
  Whole = 0,        // nseg == 1: statistics, then the elementwise output, in one pass
  SegPartials = 1,  // this segment's partial sums -> part[row·nseg + seg] (nseg > 1; the
                    // backward also for nseg == 1, Note [Order of the backward passes])
  SegApply = 2,     // per-row results from stats[row] (the combine kernel), output
};

struct RowPlan {
  int tpr = 32;           // threads per row group (blockDim.x), a multiple of 32
  int rpb = 1;            // row groups per block (blockDim.y)
  int64_t nchunks = 0;    // ceil(H / kVec)
  int64_t nseg = 1;       // segments per row
  int seg_chunks = 0;     // chunks per segment (the last one may be shorter)
};

// Depends on H and T only (Note [Batch invariance on the GPU]).
template <typename T>
RowPlan plan_rows(int64_t H) {
  using Tr = RowTraits<T>;
  RowPlan pl;
  pl.nchunks = ceil_div(H, Tr::kVec);
  if (H <= Tr::kSegElems) {
    // Fewest threads that hold the row in kItems chunks each: every thread then has
    // kItems independent 16-byte loads in flight, which is what hides DRAM latency.
    const int64_t threads = ceil_div(pl.nchunks, Tr::kItems);
    pl.tpr = int(ceil_div(threads, 32) * 32);
    pl.rpb = pl.tpr >= Tr::kBlockTarget ? 1 : Tr::kBlockTarget / pl.tpr;
    pl.nseg = 1;
    pl.seg_chunks = pl.tpr * Tr::kItems;
  } else {
    pl.tpr = Tr::kMaxThreads;
    pl.rpb = 1;
    pl.seg_chunks = Tr::kMaxThreads * Tr::kItems;
    pl.nseg = ceil_div(pl.nchunks, pl.seg_chunks);
  }
  return pl;
}

// ---------------------------------------------------------------------------------------
// Forward
// ---------------------------------------------------------------------------------------

struct FwdArgs {
  int64_t rows = 0, H = 0, nchunks = 0, nseg = 1;
  int seg_chunks = 0;
  bool vec = false;
  // The norm (uniform over the grid; a template parameter would triple the kernels).
  NormKind kind = NormKind::Layer;
  double eps = 0, weight_offset = 0, residual_scale = 1;
  double ada_k = 0, ada_scale = 1;  // AdaNorm
  const void* x = nullptr;
  RowIndex x_idx;
  const void* residual = nullptr;
  RowIndex r_idx;
  void* y = nullptr;
  RowIndex y_idx;
  void* s = nullptr;  // residual_out
  RowIndex s_idx;
  ParamPtr x_bias, weight, bias;
  void* mean = nullptr;  // C[rows]
  void* rstd = nullptr;  // C[rows]
  Stage stage = Stage::Whole;
  void* part = nullptr;   // C[rows·nseg][3]: per-segment (m, Σ(s−m), Σ(s−m)²), or (Σs², ·, ·) for RMS
  void* stats = nullptr;  // C[rows][3]: (mean hi, mean lo, rstd) of each row, for Stage::SegApply
};

// A row's mean (as hi + lo in C) and rstd from its exact moments (Note [Corrected two-pass]
// in row_norm_math.hpp): the same steps as the CPU's forward_impl.
template <typename C>
struct RowStats {
  C hi, lo, rstd;
};
// AdaNorm's rstd is 1/(s + eps) of the unbiased s (ada_inv_std).
template <typename C>
__device__ __forceinline__ RowStats<C> layer_row_stats(const Moments<double>& m, int64_t H,
                                                       C eps, bool ada) {
  const SplitMean<C> sm = split_mean<C>(m.mean);
  return RowStats<C>{sm.hi, sm.lo,
                     ada ? ada_inv_std<C>(C(m.m2 / double(H - 1)), eps)
                         : inv_std<C>(C(m.m2 / double(H)), eps)};
}

// A parameter pointer advanced to element e_begin (a segment start: a multiple of 32 chunks,
// so 16-byte alignment is kept).
template <typename T>
__device__ __forceinline__ ParamPtr shifted(ParamPtr p, int64_t e_begin) {
  if (p.ptr == nullptr) return p;
  const size_t bytes = size_t(e_begin) * (p.f32 ? sizeof(float) : sizeof(T));
  return ParamPtr{static_cast<const char*>(p.ptr) + bytes, p.f32};
}

// s for the chunk at e0 of the segment (SPEC §3): x, or (x + x_bias) + residual_scale·residual
// computed in C and rounded to T, so that y normalizes exactly the s that is stored.
template <typename T, typename C, int V>
__device__ __forceinline__ void load_s(const FwdArgs& a, const T* x, const T* r,
                                       int64_t e_begin, int e0, int len, C scale, C (&v)[V]) {
  load_vec(x, e0, len, a.vec, v);
  if (a.x_bias.ptr == nullptr && r == nullptr) return;
  if (a.x_bias.ptr != nullptr) {
    C b[V];
    load_param<T>(shifted<T>(a.x_bias, e_begin), e0, len, a.vec, b);
#pragma unroll
    for (int j = 0; j < V; ++j) v[j] += b[j];
  }
  if (r != nullptr) {
    C rv[V];
    load_vec(r, e0, len, a.vec, rv);
#pragma unroll
    for (int j = 0; j < V; ++j) v[j] += scale * rv[j];
  }
#pragma unroll
  for (int j = 0; j < V; ++j) v[j] = C(to_c(from_c<T>(v[j])));
}

// Assumptions: blockDim = (plan.tpr, plan.rpb); a.part holds rows·nseg triples when
// a.nseg > 1; y may alias x and residual_out may alias residual exactly (each element is read
// and then written by the same thread).
// Stage::SegPartials stores the segment's (m, Σ(s − m), Σ(s − m)²) — m its rounded mean, the
// pivot of the corrected two-pass — or (Σs², 0, 0) for RMS; Stage::SegApply reads
// (mean hi, mean lo, rstd) of the row from a.stats.
template <typename T>
__global__ void __launch_bounds__(RowTraits<T>::kMaxThreads, 1)
    row_norm_forward_kernel(const __grid_constant__ FwdArgs a) {
  using Tr = RowTraits<T>;
  using C = typename Tr::C;
  constexpr int V = Tr::kVec;
  constexpr int K = Tr::kItems;
  __shared__ C red[Tr::kMaxThreads / 32][2];

  const int tx = int(threadIdx.x);
  const int tpr = int(blockDim.x);
  const C eps = C(a.eps), offset = C(a.weight_offset), scale = C(a.residual_scale);
  const bool rms = a.kind == NormKind::RMS, ada = a.kind == NormKind::Ada;
  const AdaCoeffs<C> ac = ada_coeffs<C>(a.ada_k, a.ada_scale);
  const int64_t tasks = a.rows * a.nseg;
  const int64_t seg_elems = int64_t(a.seg_chunks) * V;
  const bool whole = a.stage == Stage::Whole;
  const bool apply = a.stage == Stage::SegApply;
  C* part = static_cast<C*>(a.part);

  // Grid-stride over tasks (row, segment); the loop bound is uniform over the block because
  // group_sum synchronizes the whole block.
  for (int64_t first = int64_t(blockIdx.x) * blockDim.y; first < tasks;
       first += int64_t(gridDim.x) * blockDim.y) {
    const int64_t task = first + threadIdx.y;
    const bool active = task < tasks;
    const int64_t row = !active ? 0 : (whole ? task : task / a.nseg);
    const int64_t seg = active ? task - row * a.nseg : 0;  // 0 when whole
    // Everything below addresses the segment [e_begin, e_begin + len) of the row, so the
    // per-chunk index arithmetic is 32-bit.
    const int64_t e_begin = seg * seg_elems;
    const int len = active ? int(min(seg_elems, a.H - e_begin)) : 0;
    const T* x = static_cast<const T*>(a.x) + a.x_idx.offset(row) + e_begin;
    const T* r = a.residual ? static_cast<const T*>(a.residual) + a.r_idx.offset(row) + e_begin
                            : nullptr;
    T* s = a.s ? static_cast<T*>(a.s) + a.s_idx.offset(row) + e_begin : nullptr;

    // Load s (and, on the first pass over the data, store it).
    C v[K][V];
#pragma unroll
    for (int i = 0; i < K; ++i) {
      const int e0 = (i * tpr + tx) * V;
      if (e0 < len) {
        if (apply && s != nullptr) {
          load_vec(static_cast<const T*>(s), e0, len, a.vec, v[i]);  // s as stored
        } else {
          load_s(a, x, r, e_begin, e0, len, scale, v[i]);
          if (!apply && s != nullptr) store_vec(s, e0, len, a.vec, v[i]);
        }
      } else {
#pragma unroll
        for (int j = 0; j < V; ++j) v[i][j] = C(0);
      }
    }

    // The row's mean as hi + lo (0 for RMS) and rstd.
    C mean_hi = C(0), mean_lo = C(0), rstd = C(1);
    if (apply) {
      mean_hi = static_cast<const C*>(a.stats)[3 * row];
      mean_lo = static_cast<const C*>(a.stats)[3 * row + 1];
      rstd = static_cast<const C*>(a.stats)[3 * row + 2];
    } else {
      // This segment's statistics over the registers. Padding is 0.
      C acc[1] = {C(0)};
      if (rms) {
#pragma unroll
        for (int i = 0; i < K; ++i)
#pragma unroll
          for (int j = 0; j < V; ++j) acc[0] += v[i][j] * v[i][j];
        group_sum(acc, red);
        if (!whole) {
          if (active && tx == 0) {
            part[3 * task] = acc[0];
            part[3 * task + 1] = C(0);
            part[3 * task + 2] = C(0);
          }
          continue;
        }
        rstd = inv_std(acc[0] / C(a.H), eps);
      } else {
        // Corrected two-pass (Note [Corrected two-pass] in row_norm_math.hpp): pass 1 gives
        // the segment's mean m in C; pass 2 sums d = s − m and d² (padding excluded); the
        // exact moments are corrected_moments(len, m, Σd, Σd²) in double.
#pragma unroll
        for (int i = 0; i < K; ++i)
#pragma unroll
          for (int j = 0; j < V; ++j) acc[0] += v[i][j];
        group_sum(acc, red);
        const int n = len > 0 ? len : 1;  // inactive groups (len = 0) write nothing
        const C m = acc[0] / C(n);
        C ds[2] = {C(0), C(0)};  // Σd, Σd²
#pragma unroll
        for (int i = 0; i < K; ++i) {
          const int e0 = (i * tpr + tx) * V;
#pragma unroll
          for (int j = 0; j < V; ++j) {
            const C d = v[i][j] - m;
            if (e0 + j < len) {  // padding excluded
              ds[0] += d;
              ds[1] += d * d;
            }
          }
        }
        group_sum(ds, red);
        if (!whole) {
          if (active && tx == 0) {
            part[3 * task] = m;
            part[3 * task + 1] = ds[0];
            part[3 * task + 2] = ds[1];
          }
          continue;
        }
        // One segment is the whole row (len == H).
        const RowStats<C> st =
            layer_row_stats<C>(corrected_moments<C>(n, m, ds[0], ds[1]), a.H, eps, ada);
        mean_hi = st.hi;
        mean_lo = st.lo;
        rstd = st.rstd;
      }
    }
    if (active && whole && tx == 0) {
      if (a.mean != nullptr) static_cast<C*>(a.mean)[row] = mean_hi;  // the saved mean is hi
      if (a.rstd != nullptr) static_cast<C*>(a.rstd)[row] = rstd;
    }

    // y = norm_affine(s, hi, lo, rstd, w + offset, b); w = 1 and b = 0 when absent.
    // AdaNorm: y = ada_phi(x̂)·x̂ (no parameters).
    T* y = static_cast<T*>(a.y) + a.y_idx.offset(row) + e_begin;
    if (ada) {
#pragma unroll
      for (int i = 0; i < K; ++i) {
        const int e0 = (i * tpr + tx) * V;
        if (e0 >= len) continue;
        C out[V];
#pragma unroll
        for (int j = 0; j < V; ++j) {
          const C xh = ((v[i][j] - mean_hi) - mean_lo) * rstd;
          out[j] = ada_phi(xh, ac.a, ac.nb) * xh;
        }
        store_vec(y, e0, len, a.vec, out);
      }
      continue;
    }
    const ParamPtr weight = shifted<T>(a.weight, e_begin), bias = shifted<T>(a.bias, e_begin);
#pragma unroll
    for (int i = 0; i < K; ++i) {
      const int e0 = (i * tpr + tx) * V;
      if (e0 >= len) continue;
      C w[V], b[V], out[V];
      if (weight.ptr != nullptr) {
        load_param<T>(weight, e0, len, a.vec, w);
      } else {
#pragma unroll
        for (int j = 0; j < V; ++j) w[j] = C(1);
      }
      if (bias.ptr != nullptr) {
        load_param<T>(bias, e0, len, a.vec, b);
      } else {
#pragma unroll
        for (int j = 0; j < V; ++j) b[j] = C(0);
      }
#pragma unroll
      for (int j = 0; j < V; ++j)
        out[j] = norm_affine(v[i][j], mean_hi, mean_lo, rstd, w[j] + offset, b[j]);
      store_vec(y, e0, len, a.vec, out);
    }
  }
}

// H == 0: every row is empty; SPEC's formulas give mean = 0 and rstd = 1/sqrt(0 + eps).
template <typename C>
__global__ void fill_empty_stats_kernel(int64_t rows, C* mean, C* rstd, C rstd_value) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < rows;
       i += int64_t(gridDim.x) * blockDim.x) {
    if (mean != nullptr) mean[i] = C(0);
    if (rstd != nullptr) rstd[i] = rstd_value;
  }
}

// The combine kernels reduce each row's segment partials in a fixed order — lane-strided,
// then a warp tree — one warp per row (the loop bound is warp-uniform; no block barrier).
// Assumptions: blockDim = (32, kCombineRows); part as written by Stage::SegPartials.
constexpr int kCombineRows = 8;  // rows (warps) per block

// The backward's per-row terms (corr, mean(g), mean(g·x̂)) come from row_norm_math.hpp:
// backward_terms over the row's (Σe, Σg, Σg·e), e = x − mean (the saved mean), or
// ada_backward_terms over AdaNorm's five sums (Note [AdaNorm backward]) — the CPU's
// expressions. kBwdSums: the most sums per segment (AdaNorm's five; the others use three).
constexpr int kBwdSums = 5;
template <typename C>
__device__ __forceinline__ BackwardTerms<C> row_terms(const C (&s)[kBwdSums], int64_t H, C rstd,
                                                      NormKind kind, AdaCoeffs<C> ac) {
  if (kind == NormKind::Ada) return ada_backward_terms<C>(AdaSums<C>{s[0], s[1], s[2], s[3], s[4]}, H, rstd, ac);
  return backward_terms<C>(s[0], s[1], s[2], H, rstd, kind == NormKind::RMS);
}
// Sums per segment of each kind: layer / RMS (Σe, Σg, Σg·e), AdaNorm (Σe, Σe², Σdy, Σdy·e, Σdy·e²).
__host__ __device__ __forceinline__ int bwd_sums(NormKind kind) {
  return kind == NormKind::Ada ? 5 : 3;
}

// Forward: turns each segment's (m, Σd, Σd²) into its exact moments (corrected_moments) and
// Chan-merges them in double (RMS: adds Σs²) into the row's (mean hi, mean lo, rstd) -> stats,
// and writes the mean (hi) / rstd outputs.
template <typename C>
__global__ void __launch_bounds__(32 * kCombineRows)
    forward_combine_kernel(int64_t rows, int64_t nseg, int64_t seg_elems, int64_t H, double eps_d,
                           NormKind kind, const C* part, C* stats, C* mean_out, C* rstd_out) {
  const int lane = int(threadIdx.x);
  const C eps = C(eps_d);
  for (int64_t row = int64_t(blockIdx.x) * blockDim.y + threadIdx.y; row < rows;
       row += int64_t(gridDim.x) * blockDim.y) {
    const C* rp = part + 3 * row * nseg;
    RowStats<C> st{C(0), C(0), C(1)};
    if (kind == NormKind::RMS) {
      C ss = C(0);
      for (int64_t k = lane; k < nseg; k += 32) ss += rp[3 * k];
      st.rstd = inv_std(warp_sum(ss) / C(H), eps);
    } else {
      Moments<double> m{0.0, 0.0, 0.0};
      for (int64_t k = lane; k < nseg; k += 32) {
        const int64_t cnt = min((k + 1) * seg_elems, H) - k * seg_elems;
        m = merge_moments(m, corrected_moments<C>(cnt, rp[3 * k], rp[3 * k + 1], rp[3 * k + 2]));
      }
      m = warp_merge(m);
      st = layer_row_stats<C>(m, H, eps, kind == NormKind::Ada);
    }
    if (lane == 0) {
      stats[3 * row] = st.hi;
      stats[3 * row + 1] = st.lo;
      stats[3 * row + 2] = st.rstd;
      if (mean_out != nullptr) mean_out[row] = st.hi;
      if (rstd_out != nullptr) rstd_out[row] = st.rstd;
    }
  }
}

// Backward: adds the segments' sums (bwd_sums(kind) of them) and forms the row's (corr,
// mean(g), mean(g·x̂)) -> stats with row_terms, as the row kernel does for a whole row.
// The sums start from −0, the exact identity of IEEE addition (+0 would turn a −0 into +0),
// so for nseg == 1 they are the row kernel's sums bit for bit and the split path gives the
// bits of Stage::Whole (backward_impl takes it for single-segment rows too when dx or
// dresidual overwrites dy or x).
template <typename C>
__global__ void __launch_bounds__(32 * kCombineRows)
    backward_combine_kernel(int64_t rows, int64_t nseg, int64_t H, NormKind kind, double ada_k,
                            double ada_scale, const C* rstd, const C* part, C* stats) {
  const int lane = int(threadIdx.x);
  const int ns = bwd_sums(kind);
  const AdaCoeffs<C> ac = ada_coeffs<C>(ada_k, ada_scale);
  for (int64_t row = int64_t(blockIdx.x) * blockDim.y + threadIdx.y; row < rows;
       row += int64_t(gridDim.x) * blockDim.y) {
    const C* rp = part + ns * row * nseg;
    C sum[kBwdSums];
#pragma unroll
    for (int n = 0; n < kBwdSums; ++n) sum[n] = C(-0.0);
    for (int64_t k = lane; k < nseg; k += 32) {
#pragma unroll
      for (int n = 0; n < kBwdSums; ++n)
        if (n < ns) sum[n] += rp[ns * k + n];
    }
#pragma unroll
    for (int n = 0; n < kBwdSums; ++n) sum[n] = warp_sum(sum[n]);
    if (lane == 0) {
      const BackwardTerms<C> t = row_terms(sum, H, rstd[row], kind, ac);
      stats[3 * row] = t.corr;
      stats[3 * row + 1] = t.mean_g;
      stats[3 * row + 2] = t.mean_gx;
    }
  }
}

template <typename Kernel, typename... Args>
void launch_combine(Kernel kernel, int64_t rows, int device, cudaStream_t st, Args... args) {
  const dim3 block(32, kCombineRows);
  const int grid = grid_size(kernel, 32 * kCombineRows, ceil_div(rows, kCombineRows), device);
  launch("row norm combine kernel", kernel, grid, block, 0, st, rows, args...);
}

template <typename T>
void launch_forward_kernel(const FwdArgs& a, const RowPlan& pl, int device, cudaStream_t st) {
  const auto kernel = row_norm_forward_kernel<T>;
  const dim3 block(unsigned(pl.tpr), unsigned(pl.rpb));
  const int grid = grid_size(kernel, pl.tpr * pl.rpb, ceil_div(a.rows * a.nseg, pl.rpb), device);
  launch("row_norm_forward_kernel", kernel, grid, block, 0, st, a);
}

template <typename T>
void forward_impl(const RowNormProblem& p, cudaStream_t st) {
  const bool rms = p.kind == NormKind::RMS;
  using Tr = RowTraits<T>;
  using C = typename Tr::C;
  const RowPlan pl = plan_rows<T>(p.H);

  FwdArgs a;
  a.rows = p.rows;
  a.H = p.H;
  a.nchunks = pl.nchunks;
  a.nseg = pl.nseg;
  a.seg_chunks = pl.seg_chunks;
  a.eps = p.eps;
  a.weight_offset = p.weight_offset;
  a.residual_scale = p.residual_scale;
  a.x = p.x;
  a.x_idx = p.x_idx;
  a.residual = p.residual;
  a.r_idx = p.r_idx;
  a.y = p.y;
  a.y_idx = p.y_idx;
  a.s = p.residual_out;
  a.s_idx = p.s_idx;
  a.x_bias = param(p.x_bias, p.x_bias_dtype);
  a.weight = param(p.weight, p.weight_dtype);
  a.bias = param(p.bias, p.bias_dtype);
  a.kind = p.kind;
  a.ada_k = p.ada_k;
  a.ada_scale = p.ada_scale;
  a.mean = rms ? nullptr : p.mean;  // RMS has no mean (the problem passes null anyway)
  a.rstd = p.rstd;
  a.vec = rows_vectorizable(p.x, p.x_idx, p.rows, Tr::kVec) &&
          rows_vectorizable(p.residual, p.r_idx, p.rows, Tr::kVec) &&
          rows_vectorizable(p.y, p.y_idx, p.rows, Tr::kVec) &&
          rows_vectorizable(p.residual_out, p.s_idx, p.rows, Tr::kVec) &&
          param_vectorizable(p.x_bias) && param_vectorizable(p.weight) &&
          param_vectorizable(p.bias);

  if (pl.nseg == 1) {
    a.stage = Stage::Whole;
    launch_forward_kernel<T>(a, pl, p.device_index, st);
    return;
  }
  // Wide rows: partials per segment, combine per row, then y per segment. Scratch:
  // part [rows·nseg][3] followed by stats [rows][3].
  const size_t part_bytes = align_up(size_t(p.rows * pl.nseg) * 3 * sizeof(C));
  StreamScratch scratch(part_bytes + size_t(p.rows) * 3 * sizeof(C), st);
  a.part = scratch.get();
  a.stats = static_cast<char*>(scratch.get()) + part_bytes;
  a.stage = Stage::SegPartials;
  launch_forward_kernel<T>(a, pl, p.device_index, st);
  launch_combine(forward_combine_kernel<C>, p.rows, p.device_index, st, a.nseg,
                 int64_t(a.seg_chunks) * Tr::kVec, a.H, a.eps, p.kind,
                 static_cast<const C*>(a.part), static_cast<C*>(a.stats),
                 static_cast<C*>(a.mean), static_cast<C*>(a.rstd));
  a.stage = Stage::SegApply;
  launch_forward_kernel<T>(a, pl, p.device_index, st);
}

// ---------------------------------------------------------------------------------------
// Backward: dx (row kernels)
// ---------------------------------------------------------------------------------------

struct BwdArgs {
  int64_t rows = 0, H = 0, nchunks = 0, nseg = 1;
  int seg_chunks = 0;
  bool vec = false;
  NormKind kind = NormKind::Layer;
  double weight_offset = 0, residual_scale = 1;
  double ada_k = 0, ada_scale = 1;  // AdaNorm
  const void* dy = nullptr;
  RowIndex dy_idx;
  const void* ds = nullptr;
  RowIndex ds_idx;
  const void* x = nullptr;
  RowIndex x_idx;
  const void* mean = nullptr;  // C[rows]; null for RMS
  const void* rstd = nullptr;  // C[rows]
  ParamPtr weight;
  void* dx = nullptr;
  RowIndex dx_idx;
  void* dr = nullptr;  // dresidual
  RowIndex dr_idx;
  Stage stage = Stage::Whole;
  // C[rows·nseg][bwd_sums(kind)]: per-segment (Σe, Σg, Σg·e), e = x − mean, or AdaNorm's
  // (Σe, Σe², Σdy, Σdy·e, Σdy·e²)
  void* part = nullptr;
  // C[rows][3]: (corr, mean(g), mean(g·x̂)) of each row (row_terms). SegApply reads
  // it; Stage::Whole writes it when non-null (the dweight column pass needs corr).
  void* stats = nullptr;
};

// Assumptions: as the forward kernel; dx may alias dy or x exactly (each element is read
// and then written by the same thread; backward_impl orders the column pass that reads dy
// and x before any write to them).
// Stage::SegPartials stores the segment's sums (row_terms); Stage::SegApply reads
// (corr, mean(g), mean(g·x̂)) of the row from a.stats. AdaNorm has no weight (g holds dy
// until the terms are known, then dy·φ(x̂), Note [AdaNorm backward]).
template <typename T>
__global__ void __launch_bounds__(RowTraits<T>::kMaxThreads, 1)
    row_norm_backward_kernel(const __grid_constant__ BwdArgs a) {
  using Tr = RowTraits<T>;
  using C = typename Tr::C;
  constexpr int V = Tr::kVec;
  constexpr int K = Tr::kItems;
  __shared__ C red[Tr::kMaxThreads / 32][kBwdSums];

  const int tx = int(threadIdx.x);
  const int tpr = int(blockDim.x);
  const C offset = C(a.weight_offset), scale = C(a.residual_scale);
  const bool ada = a.kind == NormKind::Ada;
  const int ns = bwd_sums(a.kind);
  const AdaCoeffs<C> ac = ada_coeffs<C>(a.ada_k, a.ada_scale);
  const int64_t tasks = a.rows * a.nseg;
  const int64_t seg_elems = int64_t(a.seg_chunks) * V;
  const bool whole = a.stage == Stage::Whole;
  const bool apply = a.stage == Stage::SegApply;
  C* part = static_cast<C*>(a.part);

  for (int64_t first = int64_t(blockIdx.x) * blockDim.y; first < tasks;
       first += int64_t(gridDim.x) * blockDim.y) {
    const int64_t task = first + threadIdx.y;
    const bool active = task < tasks;
    const int64_t row = !active ? 0 : (whole ? task : task / a.nseg);
    const int64_t seg = active ? task - row * a.nseg : 0;
    const int64_t e_begin = seg * seg_elems;
    const int len = active ? int(min(seg_elems, a.H - e_begin)) : 0;
    const T* x = static_cast<const T*>(a.x) + a.x_idx.offset(row) + e_begin;
    const T* dy = static_cast<const T*>(a.dy) + a.dy_idx.offset(row) + e_begin;
    const C mean = a.mean == nullptr || !active ? C(0) : static_cast<const C*>(a.mean)[row];
    const C rstd = active ? static_cast<const C*>(a.rstd)[row] : C(0);
    const ParamPtr weight = shifted<T>(a.weight, e_begin);

    // e = x − mean (x for RMS) and g = dy·(w + offset); x̂ = (e − corr)·rstd once corr is
    // known. Padding is 0 in both, so it adds nothing to the sums.
    C e[K][V], g[K][V];
#pragma unroll
    for (int i = 0; i < K; ++i) {
      const int e0 = (i * tpr + tx) * V;
      if (e0 < len) {
        C xv[V], w[V];
        load_vec(x, e0, len, a.vec, xv);
        load_vec(dy, e0, len, a.vec, g[i]);
        if (weight.ptr != nullptr) {
          load_param<T>(weight, e0, len, a.vec, w);
        } else {
#pragma unroll
          for (int j = 0; j < V; ++j) w[j] = C(1);
        }
#pragma unroll
        for (int j = 0; j < V; ++j) {
          e[i][j] = e0 + j < len ? xv[j] - mean : C(0);
          g[i][j] *= w[j] + offset;
        }
      } else {
#pragma unroll
        for (int j = 0; j < V; ++j) e[i][j] = g[i][j] = C(0);
      }
    }

    BackwardTerms<C> t;
    if (apply) {
      t.corr = static_cast<const C*>(a.stats)[3 * row];
      t.mean_g = static_cast<const C*>(a.stats)[3 * row + 1];
      t.mean_gx = static_cast<const C*>(a.stats)[3 * row + 2];
    } else {
      C acc[kBwdSums] = {C(0), C(0), C(0), C(0), C(0)};
      if (ada) {  // Σe, Σe², Σdy, Σdy·e, Σdy·e² (g holds dy)
#pragma unroll
        for (int i = 0; i < K; ++i)
#pragma unroll
          for (int j = 0; j < V; ++j) {
            const C de = g[i][j] * e[i][j];
            acc[0] += e[i][j];
            acc[1] += e[i][j] * e[i][j];
            acc[2] += g[i][j];
            acc[3] += de;
            acc[4] += de * e[i][j];
          }
        group_sum(acc, red);
      } else {  // Σe, Σg, Σg·e
        C acc3[3] = {C(0), C(0), C(0)};
#pragma unroll
        for (int i = 0; i < K; ++i)
#pragma unroll
          for (int j = 0; j < V; ++j) {
            acc3[0] += e[i][j];
            acc3[1] += g[i][j];
            acc3[2] += g[i][j] * e[i][j];
          }
        group_sum(acc3, red);
#pragma unroll
        for (int n = 0; n < 3; ++n) acc[n] = acc3[n];
      }
      if (!whole) {
        if (active && tx == 0) {
#pragma unroll
          for (int n = 0; n < kBwdSums; ++n)
            if (n < ns) part[ns * task + n] = acc[n];
        }
        continue;
      }
      // RMS: corr = mean(g) = 0 (row_norm_math.hpp, backward_terms).
      t = row_terms(acc, a.H, rstd, a.kind, ac);
      if (active && tx == 0 && a.stats != nullptr) {
        C* sp = static_cast<C*>(a.stats) + 3 * row;
        sp[0] = t.corr;
        sp[1] = t.mean_g;
        sp[2] = t.mean_gx;
      }
    }

    // dx = norm_dx(...) (+ ds); dresidual = residual_scale·dx.
    T* dx = static_cast<T*>(a.dx) + a.dx_idx.offset(row) + e_begin;
    const T* ds = a.ds ? static_cast<const T*>(a.ds) + a.ds_idx.offset(row) + e_begin : nullptr;
    T* dr = a.dr ? static_cast<T*>(a.dr) + a.dr_idx.offset(row) + e_begin : nullptr;
#pragma unroll
    for (int i = 0; i < K; ++i) {
      const int e0 = (i * tpr + tx) * V;
      if (e0 >= len) continue;
      C out[V];
#pragma unroll
      for (int j = 0; j < V; ++j) {
        const C xh = (e[i][j] - t.corr) * rstd;
        const C gj = ada ? g[i][j] * ada_phi(xh, ac.a, ac.nb) : g[i][j];
        out[j] = norm_dx(rstd, gj, t.mean_g, xh, t.mean_gx);
      }
      if (ds != nullptr) {
        C dsv[V];
        load_vec(ds, e0, len, a.vec, dsv);
#pragma unroll
        for (int j = 0; j < V; ++j) out[j] += dsv[j];
      }
      store_vec(dx, e0, len, a.vec, out);
      if (dr != nullptr) {
#pragma unroll
        for (int j = 0; j < V; ++j) out[j] *= scale;
        store_vec(dr, e0, len, a.vec, out);
      }
    }
  }
}

template <typename T>
void launch_backward_kernel(const BwdArgs& a, const RowPlan& pl, int device, cudaStream_t st) {
  const auto kernel = row_norm_backward_kernel<T>;
  const dim3 block(unsigned(pl.tpr), unsigned(pl.rpb));
  const int grid = grid_size(kernel, pl.tpr * pl.rpb, ceil_div(a.rows * a.nseg, pl.rpb), device);
  launch("row_norm_backward_kernel", kernel, grid, block, 0, st, a);
}

// ---------------------------------------------------------------------------------------
// Backward: parameter gradients (column sums, Note [Deterministic parameter gradients])
// ---------------------------------------------------------------------------------------

constexpr int kColTile = 32;  // columns per block: one per lane, so a warp reads a row segment
constexpr int kColRows = 8;   // row lanes per block: 256 threads
constexpr int64_t kRowsPerSplitMin = 64;  // ≥ 8 rows per thread amortise the partial's write
constexpr int64_t kMaxSplits = 256;  // bounds scratch (256·H per gradient) and the final sum

struct ColArgs {
  int64_t rows = 0, H = 0, rows_per_split = 0;
  const void* a = nullptr;  // dy (pass before dx) or dx (pass after)
  RowIndex a_idx;
  // Sum the unrounded dx (+ ds) instead of `a` (Note [dx_bias of 16-bit data]): a = dy, and
  // x, ds, weight, mean, rstd, stats are the row kernel's inputs.
  bool recompute_dx = false;
  bool rms = false;
  double weight_offset = 0;
  const void* ds = nullptr;
  RowIndex ds_idx;
  ParamPtr weight;
  const void* x = nullptr;  // only when out_ax is wanted
  RowIndex x_idx;
  const void* mean = nullptr;  // C[rows]; null for RMS
  const void* rstd = nullptr;  // C[rows]
  const void* stats = nullptr;  // C[rows][3], corr first (the row kernels'); null for RMS
  void* out_ax = nullptr;      // C[nsplit][H]: Σ a·x̂ over the split's rows; null: not wanted
  void* out_a = nullptr;       // C[nsplit][H]: Σ a; null: not wanted
};

// Note [dx_bias of 16-bit data]: dx_bias = Σ_rows (dx + ds) of the float32 values, before dx
// is rounded to the 16-bit storage type (SPEC §0: 16-bit data accumulated in float32; the
// CPU's backward sums the same unrounded values). Summing the stored dx instead is off by up
// to half an ulp of bf16 per row — far over the float32 tolerance. So for 16-bit x the column
// pass recomputes each row's dx from dy, x, ds, the weight and the row's (corr, mean_g,
// mean_gx) with the row kernel's expressions; for float32/float64 the stored dx is exact and
// is what is summed.

// Assumptions: blockDim = (kColTile, kColRows); gridDim = (ceil(H / kColTile), nsplit).
template <typename T>
__global__ void __launch_bounds__(kColTile* kColRows, 1)
    column_partials_kernel(const __grid_constant__ ColArgs p) {
  using C = compute_t<T>;
  __shared__ C red[2][kColRows][kColTile];
  const int tx = int(threadIdx.x), ty = int(threadIdx.y);
  const int64_t col = int64_t(blockIdx.x) * kColTile + tx;
  const int64_t r0 = int64_t(blockIdx.y) * p.rows_per_split;
  const int64_t r1 = min(r0 + p.rows_per_split, p.rows);
  const bool want_ax = p.out_ax != nullptr;

  C acc_ax = C(0), acc_a = C(0);
  if (col < p.H && p.recompute_dx) {
    const C w = param_at<T, C>(p.weight, col) + C(p.weight_offset);
    for (int64_t r = r0 + ty; r < r1; r += kColRows) {
      const C* st = static_cast<const C*>(p.stats) + 3 * r;  // (corr, mean_g, mean_gx)
      const C mean = p.mean != nullptr ? static_cast<const C*>(p.mean)[r] : C(0);
      const C rstd = static_cast<const C*>(p.rstd)[r];
      const C e = to_c(static_cast<const T*>(p.x)[p.x_idx.offset(r) + col]) - mean;
      const C g = to_c(static_cast<const T*>(p.a)[p.a_idx.offset(r) + col]) * w;
      C v = norm_dx(rstd, g, p.rms ? C(0) : st[1], (e - (p.rms ? C(0) : st[0])) * rstd, st[2]);
      if (p.ds != nullptr) v += to_c(static_cast<const T*>(p.ds)[p.ds_idx.offset(r) + col]);
      acc_a += v;
    }
  } else if (col < p.H) {
    for (int64_t r = r0 + ty; r < r1; r += kColRows) {
      const C av = to_c(static_cast<const T*>(p.a)[p.a_idx.offset(r) + col]);
      acc_a += av;
      if (want_ax) {
        const C xv = to_c(static_cast<const T*>(p.x)[p.x_idx.offset(r) + col]);
        const C mean = p.mean != nullptr ? static_cast<const C*>(p.mean)[r] : C(0);
        const C corr = p.stats != nullptr ? static_cast<const C*>(p.stats)[3 * r] : C(0);
        const C rstd = static_cast<const C*>(p.rstd)[r];
        acc_ax += av * (((xv - mean) - corr) * rstd);  // the row kernel's x̂, bit for bit
      }
    }
  }
  red[0][ty][tx] = acc_ax;
  red[1][ty][tx] = acc_a;
  __syncthreads();
  if (ty == 0 && col < p.H) {
    C sax = red[0][0][tx], sa = red[1][0][tx];
#pragma unroll
    for (int k = 1; k < kColRows; ++k) {  // fixed order over the row lanes
      sax += red[0][k][tx];
      sa += red[1][k][tx];
    }
    const int64_t o = int64_t(blockIdx.y) * p.H + col;
    if (want_ax) static_cast<C*>(p.out_ax)[o] = sax;
    if (p.out_a != nullptr) static_cast<C*>(p.out_a)[o] = sa;
  }
}

// Scratch layout and kernel order of the backward; the same function sizes and carves the
// workspace.
//
// Note [Order of the backward passes]: the dweight column pass needs each row's corr
// (row_terms), which only the row kernels compute, and it reads dy and x, which dx
// (or dresidual) may overwrite (exact aliases are allowed). So, for layer norm with dweight:
//  - one segment per row and nothing aliased: Stage::Whole writes dx and the per-row stats,
//    then the column pass runs (dy and x are intact);
//  - otherwise the split path: SegPartials (writes no user array), combine -> stats, column
//    pass, SegApply. For one-segment rows that costs one extra read of x and dy, and gives
//    the bits of Stage::Whole (backward_combine_kernel).
// Without dweight (or for RMS, corr = 0) the column pass needs no stats and runs first, as
// it always did. Every order gives the same bits.
struct BwdPlan {
  RowPlan rows;
  int64_t nsplit = 0, rows_per_split = 0;
  bool need_corr = false;  // layer norm with dweight: the column pass reads stats
  bool dxb_recompute = false;  // dx_bias from the unrounded dx (Note [dx_bias of 16-bit data])
  bool need_stats = false;     // need_corr || dxb_recompute: the row kernels write stats
  bool split = false;      // SegPartials + combine + SegApply (also for nseg == 1)
  size_t off_dw = 0, off_db = 0, off_dxb = 0, off_seg = 0, off_stats = 0, bytes = 0;
};

template <typename T>
BwdPlan plan_backward(const RowNormBackwardProblem& p) {
  using C = compute_t<T>;
  BwdPlan b;
  if (p.rows == 0 || p.H == 0) return b;  // nothing but memsets
  b.rows = plan_rows<T>(p.H);
  // Splits depend on `rows` only (Note [Deterministic parameter gradients]).
  b.nsplit = ceil_div(p.rows, kRowsPerSplitMin);
  if (b.nsplit > kMaxSplits) b.nsplit = kMaxSplits;
  b.rows_per_split = ceil_div(p.rows, b.nsplit);
  const size_t grad_bytes = align_up(size_t(b.nsplit) * size_t(p.H) * sizeof(C));
  size_t off = 0;
  if (p.dweight != nullptr) { b.off_dw = off; off += grad_bytes; }
  if (p.dbias != nullptr) { b.off_db = off; off += grad_bytes; }
  if (p.dx_bias != nullptr) { b.off_dxb = off; off += grad_bytes; }
  b.need_corr = p.kind != NormKind::RMS && p.dweight != nullptr;
  b.dxb_recompute = p.dx_bias != nullptr && sizeof(T) == 2;
  b.need_stats = b.need_corr || b.dxb_recompute;
  const bool overwrites_input =
      p.dx == p.dy || p.dx == p.x ||
      (p.dresidual != nullptr && (p.dresidual == p.dy || p.dresidual == p.x)) ||
      (p.ds != nullptr && (p.dx == p.ds || p.dresidual == p.ds));
  b.split = b.rows.nseg > 1 || (b.need_stats && overwrites_input);
  // Per-segment partials and per-row stats. Sized whenever the split path *could* be taken
  // for these shapes (not only when aliasing makes it so), so that a workspace sized for
  // one call also fits the same call with dx aliasing dy.
  if (b.rows.nseg > 1 || b.need_stats) {
    b.off_seg = off;
    off += align_up(size_t(p.rows * b.rows.nseg) * size_t(bwd_sums(p.kind)) * sizeof(C));
    b.off_stats = off;
    off += align_up(size_t(p.rows) * 3 * sizeof(C));
  }
  b.bytes = off;
  return b;
}

template <typename T>
void launch_columns(const ColArgs& c, int64_t nsplit, cudaStream_t st) {
  const dim3 grid(unsigned(ceil_div(c.H, kColTile)), unsigned(nsplit));
  launch("column_partials_kernel", column_partials_kernel<T>, grid, dim3(kColTile, kColRows), 0,
         st, c);
}

template <typename T>
void backward_impl(const RowNormBackwardProblem& p, cudaStream_t st) {
  const bool rms = p.kind == NormKind::RMS;
  using Tr = RowTraits<T>;
  using C = typename Tr::C;
  const BwdPlan plan = plan_backward<T>(p);
  if (p.workspace != nullptr && p.workspace_bytes < plan.bytes) {
    throw Error(ErrorKind::Value, "workspace: expected at least " + std::to_string(plan.bytes) +
                                      " bytes (row_norm_backward_workspace_size), got " +
                                      std::to_string(p.workspace_bytes));
  }
  StreamScratch own(p.workspace != nullptr ? 0 : plan.bytes, st);
  char* ws = static_cast<char*>(p.workspace != nullptr ? p.workspace : own.get());
  const RowPlan& pl = plan.rows;

  // dweight, dbias partials from dy and x (Note [Order of the backward passes]).
  const auto dw_db_columns = [&]() {
    if (p.dweight == nullptr && p.dbias == nullptr) return;
    ColArgs c;
    c.rows = p.rows;
    c.H = p.H;
    c.rows_per_split = plan.rows_per_split;
    c.a = p.dy;
    c.a_idx = p.dy_idx;
    c.x = p.x;
    c.x_idx = p.x_idx;
    c.mean = rms ? nullptr : p.mean;
    c.rstd = p.rstd;
    c.stats = plan.need_corr ? ws + plan.off_stats : nullptr;
    c.out_ax = p.dweight != nullptr ? ws + plan.off_dw : nullptr;
    c.out_a = p.dbias != nullptr ? ws + plan.off_db : nullptr;
    launch_columns<T>(c, plan.nsplit, st);
  };

  // dx_bias partials: from the stored dx (float32/float64), or recomputed from the inputs
  // and the row stats for 16-bit x (Note [dx_bias of 16-bit data]).
  const auto dxb_columns = [&]() {
    if (p.dx_bias == nullptr) return;
    ColArgs c;
    c.rows = p.rows;
    c.H = p.H;
    c.rows_per_split = plan.rows_per_split;
    c.out_a = ws + plan.off_dxb;
    if (plan.dxb_recompute) {
      c.recompute_dx = true;
      c.rms = rms;
      c.weight_offset = p.weight_offset;
      c.a = p.dy;
      c.a_idx = p.dy_idx;
      c.x = p.x;
      c.x_idx = p.x_idx;
      c.ds = p.ds;
      c.ds_idx = p.ds_idx;
      c.weight = param(p.weight, p.weight_dtype);
      c.mean = rms ? nullptr : p.mean;
      c.rstd = p.rstd;
      c.stats = ws + plan.off_stats;
    } else {
      c.a = p.dx;
      c.a_idx = p.dx_idx;
    }
    launch_columns<T>(c, plan.nsplit, st);
  };
  // The column passes that read the row stats, and so run after the row kernel that writes
  // them but before anything overwrites dy, x or ds (Note [Order of the backward passes]).
  const auto stats_columns = [&]() {
    if (plan.need_corr) dw_db_columns();
    if (plan.dxb_recompute) dxb_columns();
  };

  // 1. Without corr the column pass goes first, before dx is written (dx may alias dy).
  if (!plan.need_corr) dw_db_columns();

  // 2. dx (and dresidual), with the column pass where the stats are ready.
  BwdArgs a;
  a.rows = p.rows;
  a.H = p.H;
  a.nchunks = pl.nchunks;
  a.nseg = pl.nseg;
  a.seg_chunks = pl.seg_chunks;
  a.weight_offset = p.weight_offset;
  a.residual_scale = p.residual_scale;
  a.dy = p.dy;
  a.dy_idx = p.dy_idx;
  a.ds = p.ds;
  a.ds_idx = p.ds_idx;
  a.x = p.x;
  a.x_idx = p.x_idx;
  a.kind = p.kind;
  a.ada_k = p.ada_k;
  a.ada_scale = p.ada_scale;
  a.mean = rms ? nullptr : p.mean;
  a.rstd = p.rstd;
  a.weight = param(p.weight, p.weight_dtype);
  a.dx = p.dx;
  a.dx_idx = p.dx_idx;
  a.dr = p.dresidual;
  a.dr_idx = p.dr_idx;
  a.vec = rows_vectorizable(p.dy, p.dy_idx, p.rows, Tr::kVec) &&
          rows_vectorizable(p.ds, p.ds_idx, p.rows, Tr::kVec) &&
          rows_vectorizable(p.x, p.x_idx, p.rows, Tr::kVec) &&
          rows_vectorizable(p.dx, p.dx_idx, p.rows, Tr::kVec) &&
          rows_vectorizable(p.dresidual, p.dr_idx, p.rows, Tr::kVec) &&
          param_vectorizable(p.weight);
  if (!plan.split) {
    a.stage = Stage::Whole;
    a.stats = plan.need_stats ? ws + plan.off_stats : nullptr;
    launch_backward_kernel<T>(a, pl, p.device_index, st);
    stats_columns();  // nothing aliased: dy, x and ds are intact
  } else {
    a.part = ws + plan.off_seg;
    a.stats = ws + plan.off_stats;
    a.stage = Stage::SegPartials;
    launch_backward_kernel<T>(a, pl, p.device_index, st);
    launch_combine(backward_combine_kernel<C>, p.rows, p.device_index, st, a.nseg, a.H, p.kind,
                   p.ada_k, p.ada_scale, static_cast<const C*>(a.rstd),
                   static_cast<const C*>(a.part),
                   static_cast<C*>(a.stats));
    stats_columns();  // SegPartials wrote no user array
    a.stage = Stage::SegApply;
    launch_backward_kernel<T>(a, pl, p.device_index, st);
  }

  // 3. dx_bias partials from the stored dx (float32 / float64).
  if (!plan.dxb_recompute) dxb_columns();

  // 4. Reduce the partials in split order.
  if (p.dweight != nullptr)
    launch_finalize<C>(ws + plan.off_dw, plan.nsplit, p.H, p.dweight, p.dweight_dtype,
                       p.device_index, st);
  if (p.dbias != nullptr)
    launch_finalize<C>(ws + plan.off_db, plan.nsplit, p.H, p.dbias, p.dbias_dtype,
                       p.device_index, st);
  if (p.dx_bias != nullptr)
    launch_finalize<C>(ws + plan.off_dxb, plan.nsplit, p.H, p.dx_bias, p.dx_bias_dtype,
                       p.device_index, st);
}

}  // namespace

// ---------------------------------------------------------------------------------------
// Entry points (common/backends.hpp)
// ---------------------------------------------------------------------------------------

void row_norm_forward(const RowNormProblem& p, Stream stream) {
  if (p.rows == 0) return;
  DeviceGuard guard(p.device_index);
  const auto st = static_cast<cudaStream_t>(stream);
  if (p.H == 0) {
    if (p.mean == nullptr && p.rstd == nullptr) return;
    constexpr int kThreads = 256;
    const int64_t blocks = ceil_div(p.rows, kThreads);
    if (p.x_dtype == DType::Float64) {
      const auto kernel = fill_empty_stats_kernel<double>;
      const int grid = grid_size(kernel, kThreads, blocks, p.device_index);
      launch("fill_empty_stats_kernel", kernel, grid, kThreads, 0, st, p.rows,
             static_cast<double*>(p.mean), static_cast<double*>(p.rstd), inv_std(0.0, p.eps));
    } else {
      const auto kernel = fill_empty_stats_kernel<float>;
      const int grid = grid_size(kernel, kThreads, blocks, p.device_index);
      launch("fill_empty_stats_kernel", kernel, grid, kThreads, 0, st, p.rows,
             static_cast<float*>(p.mean), static_cast<float*>(p.rstd),
             inv_std(0.0f, float(p.eps)));
    }
    return;
  }
  dispatch_dtype(p.x_dtype, [&](auto tag) {
    forward_impl<decltype(tag)>(p, st);
  });
}

size_t row_norm_backward_workspace_size(const RowNormBackwardProblem& p) {
  size_t bytes = 0;
  dispatch_dtype(p.x_dtype, [&](auto tag) { bytes = plan_backward<decltype(tag)>(p).bytes; });
  return bytes;
}

void row_norm_backward(const RowNormBackwardProblem& p, Stream stream) {
  if (p.H == 0) return;  // every output has a zero-size dim
  DeviceGuard guard(p.device_index);
  const auto st = static_cast<cudaStream_t>(stream);
  if (p.rows == 0) {
    // Sums over no rows: zero. All-zero bytes are +0 in every supported dtype.
    if (p.dweight != nullptr)
      NK_CUDA_CHECK(cudaMemsetAsync(p.dweight, 0, size_t(p.H * dtype_size(p.dweight_dtype)), st));
    if (p.dbias != nullptr)
      NK_CUDA_CHECK(cudaMemsetAsync(p.dbias, 0, size_t(p.H * dtype_size(p.dbias_dtype)), st));
    if (p.dx_bias != nullptr)
      NK_CUDA_CHECK(cudaMemsetAsync(p.dx_bias, 0, size_t(p.H * dtype_size(p.dx_bias_dtype)), st));
    return;
  }
  dispatch_dtype(p.x_dtype, [&](auto tag) {
    backward_impl<decltype(tag)>(p, st);
  });
}

}  // namespace normkit::detail::cuda
