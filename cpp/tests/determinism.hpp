// SPEC §0 determinism drivers for every op family: a family hands over how to run one of
// its cases and which bytes it produced, and these check that the bits do not change
//   * with the thread count (1, 2, 3 threads, the CPU ISA the caller made current),
//   * from run to run (the same case twice), and
//   * with the rest of the batch (a case on the leading rows alone gives those rows' bits).
// expect_thread_invariant serves test_determinism.cpp (row norms, AdaNorm) and test_dyt.cpp
// (DyT); expect_prefix DyT's batch test (the row norms' batch test compares rows of views at
// other offsets too, in test_determinism.cpp). A new family calls these with its own case.
#pragma once

#include <cstring>
#include <string>
#include <vector>

#include "nk_test.hpp"
#include "normkit/normkit.hpp"

namespace nk_det {

using Bytes = std::vector<unsigned char>;

inline std::string first_difference(const Bytes& a, const Bytes& b) {
  if (a.size() != b.size())
    return "sizes differ (" + std::to_string(a.size()) + " vs " + std::to_string(b.size()) + ")";
  for (size_t i = 0; i < a.size(); ++i)
    if (a[i] != b[i]) return "first differing byte " + std::to_string(i) + " of " + std::to_string(a.size());
  return "";
}

// run(threads) runs the case once with that many normkit threads and returns every output's
// bytes in a fixed order. Checks 1 == 2 == 3 threads and a second 2-thread run.
template <typename RunFn>
void expect_thread_invariant(RunFn run, const std::string& desc) {
  const int before = normkit::get_num_threads();
  const Bytes ref = run(1);
  for (int threads : {2, 3}) {
    const Bytes got = run(threads);
    NK_CHECK(got == ref) << "outputs with " << threads << " threads differ from 1 thread: "
                         << first_difference(got, ref) << " [" << desc << "]";
  }
  const Bytes again = run(2);
  NK_CHECK(again == ref) << "run to run: " << first_difference(again, ref) << " [" << desc << "]";
  normkit::set_num_threads(before);
}

// `full` holds one per-row output of the whole batch, `part` the same output of a run on the
// first rows only (a prefix of the same inputs): part must be full's prefix, bit for bit.
inline void expect_prefix(const Bytes& full, const Bytes& part, const std::string& what,
                          const std::string& desc) {
  NK_CHECK(!part.empty() && part.size() <= full.size() &&
           std::memcmp(part.data(), full.data(), part.size()) == 0)
      << what << " of a row depends on the rest of the batch [" << desc << "]";
}

}  // namespace nk_det
