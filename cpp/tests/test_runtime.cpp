// The runtime API: ISA selection, thread count, build facts.
#include <cstdlib>
#include <string>
#include <vector>

#include "nk_test.hpp"
#include "normkit/normkit.hpp"
#include "row_norm_case.hpp"

namespace {

bool contains(const std::vector<std::string>& v, const std::string& s) {
  for (const std::string& e : v)
    if (e == s) return true;
  return false;
}

}  // namespace

NK_TEST(runtime, isa_lists) {
  const std::vector<std::string> avail = normkit::available_cpu_isas();
  const std::vector<std::string> compiled = normkit::compiled_cpu_isas();
  NK_REQUIRE(!avail.empty());
  NK_CHECK(avail.front() == "scalar") << "the scalar path must always be available, lowest first";
  for (const std::string& isa : avail)
    NK_CHECK(contains(compiled, isa)) << isa << " available but not compiled";
  for (const std::string& isa : compiled)
    NK_CHECK(isa == "scalar" || isa == "avx2" || isa == "avx512" || isa == "avx512bf16" ||
             isa == "neon")
        << "unknown ISA name " << isa;
  NK_CHECK(contains(avail, normkit::cpu_isa())) << normkit::cpu_isa();
  // Unless forced, the best available one is in use.
  if (std::getenv("NORMKIT_CPU_ISA") == nullptr) {
    NK_CHECK(normkit::cpu_isa() == avail.back()) << normkit::cpu_isa() << " vs " << avail.back();
  }
}

NK_TEST(runtime, set_cpu_isa) {
  nk_case::RuntimeGuard guard;
  for (const std::string& isa : normkit::available_cpu_isas()) {
    normkit::set_cpu_isa(isa);
    NK_CHECK(normkit::cpu_isa() == isa) << normkit::cpu_isa() << " after set_cpu_isa(" << isa << ")";
  }
}

NK_TEST(runtime, threads) {
  nk_case::RuntimeGuard guard;
  NK_CHECK(normkit::get_num_threads() >= 1);
  for (int n : {1, 3, 2}) {
    normkit::set_num_threads(n);
    NK_CHECK(normkit::get_num_threads() == n) << normkit::get_num_threads() << " after " << n;
  }
}

NK_TEST(runtime, build_facts) {
  NK_CHECK(!normkit::compiler_info().empty());
  NK_CHECK(normkit::cuda_compiled() == bool(NORMKIT_TEST_WITH_CUDA))
      << "cuda_compiled() = " << normkit::cuda_compiled();
  if (normkit::cuda_compiled()) {
    NK_CHECK(!normkit::cuda_architectures().empty());
  } else {
    NK_CHECK(normkit::cuda_architectures().empty()) << normkit::cuda_architectures();
  }
  NK_CHECK(!normkit::cuda_available() || normkit::cuda_compiled());
  // The test-only emulation build says so, and only it (never a release build).
  NK_CHECK(normkit::cuda_emulated() == bool(NORMKIT_TEST_CUDA_EMULATION))
      << "cuda_emulated() = " << normkit::cuda_emulated();
  if (normkit::cuda_emulated()) {
    NK_CHECK(normkit::cuda_available() && normkit::cuda_architectures() == "emulated")
        << normkit::cuda_architectures();
  }
  std::printf("  isa %s of {", normkit::cpu_isa().c_str());
  for (const std::string& s : normkit::available_cpu_isas()) std::printf(" %s", s.c_str());
  std::printf(" }, %d threads, %s, CUDA %s%s%s\n", normkit::get_num_threads(),
              normkit::compiler_info().c_str(), normkit::cuda_compiled() ? "compiled" : "off",
              normkit::cuda_compiled() ? (" for " + normkit::cuda_architectures()).c_str() : "",
              normkit::cuda_available() ? ", GPU present" : "");
}

// Registered with NORMKIT_CPU_ISA set (see CMakeLists.txt): the variable, read at first
// use, selects the ISA. Run alone in its process, before anything else touches the runtime.
NK_TEST(env, forced_isa) {
  const char* expect = std::getenv("NORMKIT_TEST_EXPECT_ISA");
  if (expect == nullptr) {
    std::printf("  NORMKIT_TEST_EXPECT_ISA not set: nothing to check\n");
    return;
  }
  NK_CHECK(normkit::cpu_isa() == expect) << normkit::cpu_isa() << ", expected " << expect;
  // And the kernels run on it.
  nk_case::Case c;
  c.row = {33};
  c.fused = c.store_s = true;
  nk_case::Run run;
  nk_case::run_case(c, 1, run);
  nk_case::check_run(c, run);
}

// The benchmark's copy roof: every byte copied, with and without streaming stores, for sizes
// that are not a multiple of the vector width (nor of 4 bytes) and a destination one float off
// the streaming stores' alignment (the copy moves float words: 4-byte aligned buffers).
NK_TEST(runtime, bench_copy) {
  for (bool nt : {false, true})
    for (int64_t n : {int64_t(0), int64_t(1), int64_t(37), int64_t(1) << 20}) {
      std::vector<float> src(size_t(n) / 4 + 2), dst(size_t(n) / 4 + 3, 0.0f);
      auto* s = reinterpret_cast<unsigned char*>(src.data());
      auto* d = reinterpret_cast<unsigned char*>(dst.data() + 1);
      for (int64_t i = 0; i < n; ++i) s[i] = static_cast<unsigned char>(i * 7 + 1);
      normkit::bench_copy(s, d, n, nt);
      bool same = true;
      for (int64_t i = 0; i < n; ++i) same = same && d[i] == s[i];
      NK_CHECK(same && dst[0] == 0.0f) << "n=" << n << " nontemporal=" << nt;
    }
}
