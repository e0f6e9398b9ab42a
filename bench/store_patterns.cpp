// A store-only model of how a row kernel writes its output with non-temporal stores: 96 MiB
// of rows of ROW_BYTES each, the rows OFF bytes past a cache line, written by four policies
// (no loads, no arithmetic — the stores alone). The numbers behind Note [Streaming whole
// lines] (cpp/src/cpu/vec/loops.hpp) and the table in bench/RESULTS.md.
//
//   g++ -O2 -mavx512f -mavx512bw bench/store_patterns.cpp -o /tmp/store_patterns
//   /tmp/store_patterns 1536 && /tmp/store_patterns 2000     # median ms of 7, per offset
//
// Policies: P1 streams 32-byte vectors from the first 32-byte boundary, the head and tail
// with ordinary (masked) stores — what map_vectors did before; P2 streams whole lines, the
// head and tail lines stored normally; P3 streams whole lines and the head and tail in
// 16-byte pieces (what map_vectors does for 16-byte aligned ends); P4 ordinary stores only.
#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace {

void masked(char* p, int64_t bytes, __m512i v) {
  _mm512_mask_storeu_epi8(p, bytes >= 64 ? ~0ull : (1ull << bytes) - 1, v);
}

void p1(char* row, int64_t n, __m512i v) {
  int64_t j = 0;
  if (const uintptr_t mis = uintptr_t(row) % 32) {
    j = std::min<int64_t>(n, int64_t(32 - mis));
    masked(row, j, v);
  }
  for (; j + 32 <= n; j += 32) _mm256_stream_si256((__m256i*)(row + j), _mm256_set1_epi8(3));
  if (j < n) masked(row + j, n - j, v);
}

void p2(char* row, int64_t n, __m512i v) {
  int64_t j = 0;
  if (const uintptr_t mis = uintptr_t(row) % 64) {
    j = std::min<int64_t>(n, int64_t(64 - mis));
    masked(row, j, v);
  }
  for (; j + 64 <= n; j += 64) _mm512_stream_si512((__m512i*)(row + j), v);
  if (j < n) masked(row + j, n - j, v);
}

// p and n multiples of 16.
void pieces(char* p, int64_t n) {
  for (int64_t j = 0; j < n; j += 16) _mm_stream_si128((__m128i*)(p + j), _mm_set1_epi8(3));
}

void p3(char* row, int64_t n, __m512i v) {
  int64_t j = 0;
  if (const uintptr_t mis = uintptr_t(row) % 64) {
    j = std::min<int64_t>(n, int64_t(64 - mis));
    pieces(row, j);
  }
  for (; j + 64 <= n; j += 64) _mm512_stream_si512((__m512i*)(row + j), v);
  if (j < n) pieces(row + j, n - j);
}

void p4(char* row, int64_t n, __m512i v) {
  int64_t j = 0;
  for (; j + 64 <= n; j += 64) _mm512_storeu_si512(row + j, v);
  if (j < n) masked(row + j, n - j, v);
}

}  // namespace

int main(int argc, char** argv) {
  const int64_t rb = argc > 1 ? std::atoll(argv[1]) : 1536;
  if (rb < 128 || rb % 16 != 0) {
    std::fprintf(stderr, "ROW_BYTES: a multiple of 16, at least 128\n");
    return 2;
  }
  const int64_t rows = (int64_t(96) << 20) / rb;
  char* buf = static_cast<char*>(std::aligned_alloc(4096, size_t(rows * rb + 4096)));
  std::memset(buf, 1, size_t(rows * rb + 4096));
  const __m512i v = _mm512_set1_epi8(3);
  void (*const pol[4])(char*, int64_t, __m512i) = {p1, p2, p3, p4};
  const char* names[4] = {"P1 stream 32 B", "P2 lines, ends stored", "P3 lines, ends in 16 B",
                          "P4 no streaming"};
  std::printf("row bytes %lld, median ms of 7 over %lld rows\n", (long long)rb, (long long)rows);
  for (int off : {0, 16, 32, 48}) {
    std::printf("offset %2d:", off);
    for (int k = 0; k < 4; ++k) {
      std::vector<double> t;
      for (int rep = 0; rep < 7; ++rep) {
        const auto t0 = std::chrono::steady_clock::now();
        for (int64_t r = 0; r < rows; ++r) pol[k](buf + off + r * rb, rb, v);
        _mm_sfence();
        t.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
      }
      std::sort(t.begin(), t.end());
      std::printf("  %s %.2f", names[k], t[3]);
    }
    std::printf("\n");
  }
  std::free(buf);
}
