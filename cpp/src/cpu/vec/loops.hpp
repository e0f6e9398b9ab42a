// The CPU kernels' shared row loops and partial-vector IO, on top of Vec<C> (vec.hpp).
// Included by kernel files (compiled once per ISA, into namespace normkit::cpu::<isa>).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <utility>

#include "common/openmp_state.hpp"
#include "cpu/vec/vec.hpp"
#include "normkit/dtype.hpp"

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace normkit::cpu::NK_CPU_ISA {

// Note [No region for one thread]: runs body(thread, begin, end) over [0, n) cut into
// `threads` contiguous ranges, as schedule(static) cuts a loop, each on its own thread of an
// OpenMP parallel region — or, for one thread, body(0, 0, n) directly on the caller. libgomp
// builds a team even for num_threads(1) or if(false) (an allocation and futex wake-ups of the
// pool): about 1 µs per call, as long as a whole [1, 4096] layer norm. (An orphaned `omp for`
// instead would bind to a caller's own parallel region and share our loop out among its
// threads.) Ranges may be empty; the body still runs (a fence of no stores is harmless).
template <typename F>
NK_ALWAYS_INLINE void parallel_ranges(int threads, int64_t n, F&& body) {
#if defined(_OPENMP)
  if (threads > 1) {
    detail::note_openmp_region();
#pragma omp parallel num_threads(threads)
    {
      const int64_t t = omp_get_num_threads(), i = omp_get_thread_num();
      const int64_t q = n / t, rem = n % t;
      const int64_t begin = i * q + (i < rem ? i : rem);
      body(int(i), begin, begin + q + (i < rem ? 1 : 0));
    }
    return;
  }
#endif
  (void)threads;
  body(0, int64_t(0), n);
}

// Note [One code path per element]: every element of an output goes through the same
// vector instructions, whether it sits in the body of a row, in its tail, or in the
// peel before the first aligned streaming store. Partial vectors are staged through small
// stack buffers (padding is zero and never stored). Otherwise an element's bits would
// depend on the alignment of its row — and so on the batch it came in (SPEC §0).
template <typename T, typename C, typename F>
NK_ALWAYS_INLINE void for_each_vector(int64_t H, T* out, bool nontemporal, F&& f) {
  constexpr int64_t L = Vec<C>::size;
  int64_t j = 0;
  bool stream = false;
  if constexpr (stream_alignment<T>() > 0) {
    constexpr uintptr_t A = uintptr_t(stream_alignment<T>());
    const uintptr_t mis = reinterpret_cast<uintptr_t>(out) % A;
    // An output that is not even element-aligned is never streamed.
    stream = nontemporal && mis % sizeof(T) == 0;
    if (stream && mis != 0) {
      const int64_t n = std::min<int64_t>(H, int64_t((A - mis) / sizeof(T)));
      f(int64_t(0), n, false);
      j = n;
    }
  }
  for (; j + L <= H; j += L) f(j, L, stream);
  if (j < H) f(j, H - j, false);
}

// Load n < L elements, the other lanes zero / store the first n lanes.
// Note [Masked partial vectors]: where the ISA has masked moves for T (AVX-512: every
// dtype; AVX2: float and double), a partial vector is one masked load (the lanes off read
// as zero) or store (only the first n written) — the same lanes and bits as the staged
// copy below, without its memcpy calls and the store-forwarding stall of reading a vector
// back over narrower stores. That stall, paid at the peel and tail of every row of a
// streamed output, cost a quarter of the bf16 row-norm backward.
template <typename V, typename T, typename = void>
struct has_masked : std::false_type {};
template <typename V, typename T>
struct has_masked<V, T, std::void_t<decltype(V::load_n(std::declval<const T*>(), int64_t(0)))>>
    : std::true_type {};

// Otherwise staged through a zero-padded lane buffer.
template <typename T, typename V>
NK_ALWAYS_INLINE V load_part(const T* p, int64_t n) {
  if constexpr (has_masked<V, T>::value) {
    return V::load_n(p, n);
  } else {
    T buf[V::size];
    std::memset(static_cast<void*>(buf), 0, sizeof(buf));
    std::memcpy(static_cast<void*>(buf), p, size_t(n) * sizeof(T));
    return V::load(buf);
  }
}
template <typename T, typename V>
NK_ALWAYS_INLINE void store_part(V v, T* p, int64_t n) {
  if constexpr (has_masked<V, T>::value) {
    v.store_n(p, n);
  } else {
    T buf[V::size];
    v.store(buf);
    std::memcpy(static_cast<void*>(p), buf, size_t(n) * sizeof(T));
  }
}

// Load / store n elements at p: a full vector when n == L.
template <typename T, typename V>
NK_ALWAYS_INLINE V ld(const T* p, int64_t n) {
  return n == V::size ? V::load(p) : load_part<T, V>(p, n);
}
template <typename T, typename V>
NK_ALWAYS_INLINE void st(V v, T* p, int64_t n, bool stream) {
  if (n == V::size) {
    if (stream)
      v.stream(p);
    else
      v.store(p);
  } else {
    store_part<T, V>(v, p, n);
  }
}

// Note [Prefetch the next row]: a row is read from memory once (pass 1) and then worked
// on in cache (pass 2, the normalize pass); without help the memory system idles during
// those passes. The last pass over row r therefore prefetches a row ahead, one touch per
// vector, so that pass 1 finds it in cache. The row kPrefetchBytes (8 KiB) or more ahead
// (prefetch_rows): one row ahead is enough for long rows, but a short one (bf16 [*, 768]
// is 1.5 KiB) leaves too little in flight to cover the memory latency — at 8 KiB the
// row-norm passes on [16384, 768] / [8192, 1024] / [32768, 512] took 0.67–0.95 of the
// time of one row ahead in most cases (interleaved, bench/RESULTS.md).
constexpr int64_t kPrefetchBytes = 8192;
template <typename T>
NK_ALWAYS_INLINE int64_t prefetch_rows(int64_t H) {
  const int64_t row_bytes = std::max<int64_t>(1, H * int64_t(sizeof(T)));
  return row_bytes >= kPrefetchBytes ? 1 : (kPrefetchBytes + row_bytes - 1) / row_bytes;
}
template <typename T>
NK_ALWAYS_INLINE void prefetch(const T* p) {
  if (p != nullptr) __builtin_prefetch(static_cast<const void*>(p), 0, 3);
}

// v stored as element j of `out`, of dtype dt (rounded to nearest even for 16-bit).
template <typename C>
NK_ALWAYS_INLINE void store_as(void* out, DType dt, int64_t j, C v) {
  switch (dt) {
    case DType::Float32: static_cast<float*>(out)[j] = float(v); break;
    case DType::Float64: static_cast<double*>(out)[j] = double(v); break;
    case DType::Float16: static_cast<half_t*>(out)[j] = float_to_half(float(v)); break;
    case DType::BFloat16: static_cast<bfloat16_t*>(out)[j] = float_to_bf16(float(v)); break;
  }
}

// n values of C stored as dtype dt at out + j0 (rounded to nearest even for 16-bit): the
// dtype is decided once per run, the elements go through the vector conversions.
template <typename T, typename C>
NK_ALWAYS_INLINE void store_run(T* out, const C* v, int64_t n) {
  using V = Vec<C>;
  constexpr int64_t L = V::size;
  int64_t j = 0;
  for (; j + L <= n; j += L) st<T, V>(V::load(v + j), out + j, L, false);
  if (j < n) st<T, V>(ld<C, V>(v + j, n - j), out + j, n - j, false);
}
template <typename C>
NK_ALWAYS_INLINE void store_run_as(void* out, DType dt, int64_t j0, const C* v, int64_t n) {
  if constexpr (std::is_same_v<C, double>) {  // float64 x: parameters are float64 too
    for (int64_t j = 0; j < n; ++j) store_as(out, dt, j0 + j, v[j]);
  } else {
    switch (dt) {
      case DType::Float32: return store_run(static_cast<float*>(out) + j0, v, n);
      case DType::Float16: return store_run(static_cast<half_t*>(out) + j0, v, n);
      case DType::BFloat16: return store_run(static_cast<bfloat16_t*>(out) + j0, v, n);
      case DType::Float64:
        for (int64_t j = 0; j < n; ++j) store_as(out, dt, j0 + j, v[j]);
        return;
    }
  }
}

// The second pass of Note [Fixed-order parameter gradients]: partials[b][k][0..H) holds
// block b's sum k; out k gets Σ_b partials[b][k][j], blocks added in block order (so the
// bits depend on the block layout only, never on threads), stored as dts[k]. The sums are
// formed in block 0's slot (the partials are scratch); when raw[k] is not null they are also
// kept there in C (raw may be that slot itself).
template <typename C>
void finish_column_sums(C* partials, int64_t nblocks, int nacc, int64_t H, void* const* outs,
                        const DType* dts, C* const* raw, int threads) {
  using V = Vec<C>;
  constexpr int64_t L = V::size;
  constexpr int64_t kCols = 1024;
  const int64_t nchunks = (H + kCols - 1) / kCols;
  parallel_ranges(H >= 4096 ? threads : 1, nchunks * nacc, [&](int, int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      const int64_t acc = c / nchunks;
      const int64_t j0 = (c % nchunks) * kCols;
      const int64_t n = j0 + kCols < H ? kCols : H - j0;
      C* sum = partials + acc * H + j0;
      for (int64_t blk = 1; blk < nblocks; ++blk) {
        const C* src = partials + (blk * nacc + acc) * H + j0;
        int64_t j = 0;
        for (; j + L <= n; j += L) (V::load(sum + j) + V::load(src + j)).store(sum + j);
        for (; j < n; ++j) sum[j] += src[j];
      }
      if (outs[acc] != nullptr) store_run_as(outs[acc], dts[acc], j0, sum, n);
      if (raw != nullptr && raw[acc] != nullptr && raw[acc] + j0 != sum)
        std::memcpy(static_cast<void*>(raw[acc] + j0), sum, size_t(n) * sizeof(C));
    }
  });
}

}  // namespace normkit::cpu::NK_CPU_ISA
