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
// vector arithmetic, whether it sits in the body of a row or at its head or tail (before
// the first and after the last streamed line); partial vectors are masked or staged (Note
// [Masked partial vectors]), their padding zero and never stored. Otherwise an element's
// bits would depend on the alignment of its row — and so on the batch it came in (SPEC §0).
// The conversion to a 16-bit dtype may be done two vectors at a time in the body (Note
// [Paired stores]) and one at a time at the head and tail: the instructions differ, their
// bits do not (both round to nearest even, bit-identical to float_to_bf16 / float_to_half).
//
// map_vectors(H, out, nontemporal, f): out[j, j + n) = f(j, n) for consecutive vectors of
// the row, n = L but at the head and tail; f is called in increasing j and may do other
// work of element range [j, j + n) (read inputs, add to partial sums, store other outputs).
// A vector may be stored after f has been called for the next one (pairs): f reads only its
// own range of any array `out` may alias. The stores to `out` are streaming when
// `nontemporal`: Note [Streaming whole lines].
//
// map_vectors(H, out, nontemporal, f, after): f returns a struct whose member `out` is the
// vector to store, and after(j, n, r) runs with f's result r once that vector is stored. The
// row-norm backward adds into its parameter partials there: the same instructions with the
// store of dx ahead of those read-modify-writes ran 10–35% faster (Zen 5, in L2).
template <typename V, typename T, typename = void>
struct has_pair_store : std::false_type {};
template <typename V, typename T>
struct has_pair_store<V, T, std::void_t<decltype(V::store2(std::declval<T*>(), V(), V()))>>
    : std::true_type {};
//
// map_vectors(H, out, nontemporal, walk, f, after): the same with the row's vectors visited
// in decreasing j when walk == Walk::Down (the same vectors, so the same bits, Note [One
// code path per element]; f's order within a pair stays increasing). Note [Walk away from
// aliased stores] says when.
enum class Walk : int8_t { Up, Down };
template <typename T, typename C, typename F, typename G>
NK_ALWAYS_INLINE void map_vectors(int64_t H, T* out, bool nontemporal, Walk walk, F&& f,
                                  G&& after);
template <typename T, typename C, typename F, typename G>
NK_ALWAYS_INLINE void map_vectors(int64_t H, T* out, bool nontemporal, F&& f, G&& after);
template <typename T, typename C, typename F>
NK_ALWAYS_INLINE void map_vectors(int64_t H, T* out, bool nontemporal, F&& f);

// Note [Walk away from aliased stores]: a load whose address matches a pending store's in
// its low 12 bits waits for that store (4K aliasing; the store may be to another page), and
// streaming stores stay pending long. A row streamed to `out` while reading `in` a few
// lines further on mod 4 KiB — out − in ≡ 16..128 bytes (mod 4096) — makes nearly every
// load of `in` wait for the store just issued: on Zen 2 the float32 and bf16 layer norms of
// [8192, 1024] took 2.5–3.2x as long (forward and backward; 5% with ordinary stores), and
// NumPy's and torch's allocators hand out such pairs of buffers. Walking the row down, the
// store to out[j] aliases inputs already loaded and the loads to come alias stores not yet
// made. walk_for(out, a, b) picks Down when out is that little ahead of an input (mod 4 KiB)
// and not that little behind another; everything else walks up.
constexpr uintptr_t kAliasWindow = 256;
NK_ALWAYS_INLINE bool just_ahead(const void* out, const void* in) {
  const uintptr_t d = (reinterpret_cast<uintptr_t>(out) - reinterpret_cast<uintptr_t>(in)) & 4095;
  return d != 0 && d < kAliasWindow;
}
NK_ALWAYS_INLINE Walk walk_for(bool nontemporal, const void* out, const void* a,
                               const void* b = nullptr) {
  if (!nontemporal) return Walk::Up;
  const bool up_bad = just_ahead(out, a) || (b && just_ahead(out, b));
  const bool down_bad = just_ahead(a, out) || (b && just_ahead(b, out));
  return up_bad && !down_bad ? Walk::Down : Walk::Up;
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

// Note [Paired stores]: where Vec<C> has store2 / stream2 for T, the body of a row stores
// two vectors at once: 2L consecutive values in one conversion (AVX512_BF16's
// vcvtne2ps2bf16 rounds two vectors of float in one instruction; without it the two
// roundings share one vpermt2w / vpackusdw instead of a shuffle each) and one store of a
// whole 64-byte line (AVX-512; 32 bytes on AVX2) — streamed, whole lines at a time (Note
// [Streaming whole lines]). A bf16 layer norm forward 4–9% faster in L2, RMS norm's 13–15%
// (AVX512_BF16, one thread).
template <typename V, typename R>
NK_ALWAYS_INLINE V out_vector(const R& r) {
  if constexpr (std::is_same_v<R, V>)
    return r;
  else
    return r.out;
}

// n elements of v streamed to p in 16-byte pieces: p 16-byte aligned, n·sizeof(T) a
// multiple of 16 (the head and tail of a streamed row, Note [Streaming whole lines]).
template <typename T, typename V>
NK_ALWAYS_INLINE void stream_pieces(V v, T* p, int64_t n) {
  alignas(64) T buf[V::size];
  v.store(buf);
  const int64_t bytes = n * int64_t(sizeof(T));
  for (int64_t k = 0; k < bytes; k += 16)
    stream16(reinterpret_cast<char*>(p) + k, reinterpret_cast<const char*>(buf) + k);
}

// Note [Streaming whole lines]: a cache line that takes a streaming store and then an
// ordinary one is the worst case of non-temporal stores — the ordinary store must wait for
// the partial line to be written out and read it back from memory. Rows that do not start
// on a line boundary share their first and last lines with their neighbours, and streaming
// from the vector alignment (32 bytes for 16-bit data) left such a line streamed at one end
// and stored normally at the other: a bf16 [16384, 768] backward with rows 48 bytes past a
// line took 10 ms instead of 2.3 (rows of 2000 bytes: 1.6–2.5x at every offset; the
// store-only model is bench/store_patterns.cpp, its table in bench/RESULTS.md). So a
// streamed row streams every whole line with full vectors, and its head (up to the first
// line boundary) and tail (from the last) in 16-byte pieces when those ends are 16-byte
// aligned, or with ordinary stores when they are not: the line it shares with the next row
// is then streamed by both or by neither.
// Rows under two lines are not streamed (some would hold a whole line and some not).
template <typename T, typename C, typename F, typename G>
NK_ALWAYS_INLINE void map_vectors(int64_t H, T* out, bool nontemporal, Walk walk, F&& f,
                                  G&& after) {
  using V = Vec<C>;
  constexpr int64_t L = V::size;
  constexpr bool kPair = has_pair_store<V, T>::value;
  enum Mode { kStore, kStream, kPieces };
  // One vector (n <= L elements): computed, stored, then after().
  auto one = [&](int64_t j, int64_t n, Mode m) NK_INLINE_LAMBDA {
    const auto r = f(j, n);
    if (m == kPieces)
      stream_pieces<T, V>(out_vector<V>(r), out + j, n);
    else
      st<T, V>(out_vector<V>(r), out + j, n, m == kStream);
    after(j, n, r);
  };
  // Full vectors over [j, end): two at a time where the ISA pairs them.
  auto body = [&](int64_t& j, int64_t end, bool stream) NK_INLINE_LAMBDA {
    if constexpr (kPair) {
      for (; j + 2 * L <= end; j += 2 * L) {
        const auto lo = f(j, L);
        const auto hi = f(j + L, L);
        if (stream)
          V::stream2(out + j, out_vector<V>(lo), out_vector<V>(hi));
        else
          V::store2(out + j, out_vector<V>(lo), out_vector<V>(hi));
        after(j, L, lo);
        after(j + L, L, hi);
      }
    }
    for (; j + L <= end; j += L) one(j, L, stream ? kStream : kStore);
  };
  // The same vectors in decreasing j: [begin, end) in vectors of L from begin (the last
  // one partial), mode m — or, for the body, pairs then single full vectors.
  auto down = [&](int64_t begin, int64_t end, Mode m) NK_INLINE_LAMBDA {
    if (end <= begin) return;
    for (int64_t k = begin + (end - begin - 1) / L * L; k >= begin; k -= L)
      one(k, std::min<int64_t>(L, end - k), m);
  };
  auto body_down = [&](int64_t begin, int64_t end, bool stream) NK_INLINE_LAMBDA {
    int64_t p = begin;
    if constexpr (kPair) p += (end - begin) / (2 * L) * (2 * L);
    const int64_t q = p + (end - p) / L * L;  // [p, q): single full vectors
    for (int64_t k = q - L; k >= p; k -= L) one(k, L, stream ? kStream : kStore);
    if constexpr (kPair) {
      for (int64_t k = p - 2 * L; k >= begin; k -= 2 * L) {
        const auto lo = f(k, L);
        const auto hi = f(k + L, L);
        if (stream)
          V::stream2(out + k, out_vector<V>(lo), out_vector<V>(hi));
        else
          V::store2(out + k, out_vector<V>(lo), out_vector<V>(hi));
        after(k, L, lo);
        after(k + L, L, hi);
      }
    }
    return q;
  };
  int64_t j = 0;
  if constexpr (stream_alignment<T>() > 0) {
    constexpr uintptr_t kLine = 64;
    const uintptr_t a = reinterpret_cast<uintptr_t>(out);
    const uintptr_t e = a + uintptr_t(H) * sizeof(T);
    // An output that is not even element-aligned is never streamed.
    if (nontemporal && a % sizeof(T) == 0 && e - a >= 2 * kLine) {
      const uintptr_t line0 = (a + kLine - 1) & ~(kLine - 1), line1 = e & ~(kLine - 1);
      const int64_t h = int64_t((line0 - a) / sizeof(T)), t = int64_t((line1 - a) / sizeof(T));
      const Mode head = a % 16 == 0 ? kPieces : kStore, tail = e % 16 == 0 ? kPieces : kStore;
      if (walk == Walk::Down) {
        down(t, H, tail);
        body_down(h, t, true);
        down(0, h, head);
        return;
      }
      for (; j < h; j += L) one(j, std::min<int64_t>(L, h - j), head);
      j = h;
      body(j, t, true);  // whole lines: full vectors, and pairs of 16-bit ones
      for (; j < H; j += L) one(j, std::min<int64_t>(L, H - j), tail);
      return;
    }
  }
  if (walk == Walk::Down) {
    const int64_t q = H / L * L;
    if (q < H) one(q, H - q, kStore);
    body_down(0, q, false);
    return;
  }
  body(j, H, false);
  if (j < H) one(j, H - j, kStore);
}

template <typename T, typename C, typename F, typename G>
NK_ALWAYS_INLINE void map_vectors(int64_t H, T* out, bool nontemporal, F&& f, G&& after) {
  map_vectors<T, C>(H, out, nontemporal, Walk::Up, std::forward<F>(f), std::forward<G>(after));
}

template <typename T, typename C, typename F>
NK_ALWAYS_INLINE void map_vectors(int64_t H, T* out, bool nontemporal, F&& f) {
  map_vectors<T, C>(H, out, nontemporal, Walk::Up, std::forward<F>(f),
                    [](int64_t, int64_t, const Vec<C>&) NK_INLINE_LAMBDA {});
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
