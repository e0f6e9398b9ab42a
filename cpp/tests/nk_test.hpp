// nk_test.hpp — the tiny test harness of normkit's C++ tests (header-only, no dependencies).
//
//   NK_TEST(group, name) { ... }      registers a test called "group.name"
//   NK_CHECK(cond) << "context";      records a failure and goes on
//   NK_REQUIRE(cond) << "context";    records a failure and leaves the test
//   NK_CHECK_THROWS(expr, "substr")   expects a normkit::Error whose what() contains substr
//   NK_SKIP("why")                    the test cannot run here; exit status 77 when every
//                                     selected test was skipped
//
// One translation unit defines NK_TEST_MAIN before including this header to get main():
//   normkit_tests [--list] [PREFIX...]   runs the tests whose names start with a PREFIX
//                                        (all tests when none is given).
// The run ends with the line "N passed, M failed, K skipped"; the exit status is 1 when M > 0 or when
// the prefixes selected no test at all (a mistyped ctest registration must not pass).
#pragma once

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "normkit/error.hpp"

namespace nk_test {

struct TestCase {
  std::string name;
  void (*fn)();
};

inline std::vector<TestCase>& registry() {
  static std::vector<TestCase> tests;
  return tests;
}

struct Registrar {
  Registrar(const char* name, void (*fn)()) { registry().push_back({name, fn}); }
};

// Failures of the running test. A test fails when it records at least one.
struct State {
  int failures = 0;
  int checks = 0;
  static constexpr int kMaxPrinted = 25;  // a broken kernel fails thousands of checks
};
inline State& state() {
  static State s;
  return s;
}

// Thrown by NK_REQUIRE to leave the current test.
struct Abort {};
// Thrown by NK_SKIP: the test cannot run here (e.g. no CUDA device).
struct Skip {
  std::string why;
};

// Collects the streamed context of a failed check and reports it when destroyed.
class Failure {
 public:
  Failure(const char* file, int line, const char* expr, bool fatal)
      : file_(file), line_(line), expr_(expr), fatal_(fatal) {}
  Failure(const Failure&) = delete;
  Failure& operator=(const Failure&) = delete;
  ~Failure() noexcept(false) {
    State& s = state();
    ++s.failures;
    if (s.failures <= State::kMaxPrinted) {
      std::string ctx = os_.str();
      std::fprintf(stderr, "  %s:%d: check failed: %s%s%s\n", file_, line_, expr_,
                   ctx.empty() ? "" : " -- ", ctx.c_str());
    } else if (s.failures == State::kMaxPrinted + 1) {
      std::fprintf(stderr, "  (further failures of this test not printed)\n");
    }
    if (fatal_ && std::uncaught_exceptions() == 0) throw Abort{};
  }
  template <typename T>
  Failure& operator<<(const T& v) {
    os_ << v;
    return *this;
  }

 private:
  const char* file_;
  int line_;
  const char* expr_;
  bool fatal_;
  std::ostringstream os_;
};

inline bool count_check(bool ok) {
  ++state().checks;
  return ok;
}

// Runs f; returns "" when it threw a normkit::Error whose message contains `needle`,
// otherwise a description of what happened instead.
inline std::string expect_error(const std::function<void()>& f, const char* needle) {
  try {
    f();
  } catch (const normkit::Error& e) {
    if (std::strstr(e.what(), needle) != nullptr) return "";
    return std::string("normkit::Error without \"") + needle + "\": " + e.what();
  } catch (const std::exception& e) {
    return std::string("a std::exception that is not normkit::Error: ") + e.what();
  } catch (...) {
    return "an exception that is not a std::exception";
  }
  return "no exception";
}

inline bool starts_with(const std::string& s, const std::string& prefix) {
  return s.compare(0, prefix.size(), prefix) == 0;
}

// Exit status when every selected test was skipped (ctest's SKIP_RETURN_CODE).
constexpr int kSkipExitCode = 77;

inline int run_main(int argc, char** argv) {
  std::vector<std::string> prefixes;
  bool list = false;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--list") == 0)
      list = true;
    else
      prefixes.emplace_back(argv[i]);
  }
  int passed = 0, failed = 0, skipped = 0;
  std::vector<std::string> failed_names;
  const auto t_all = std::chrono::steady_clock::now();
  for (const TestCase& t : registry()) {
    bool selected = prefixes.empty();
    for (const std::string& p : prefixes) selected = selected || starts_with(t.name, p);
    if (!selected) continue;
    if (list) {
      std::printf("%s\n", t.name.c_str());
      continue;
    }
    std::printf("[ RUN  ] %s\n", t.name.c_str());
    std::fflush(stdout);
    state() = State{};
    const auto t0 = std::chrono::steady_clock::now();
    try {
      t.fn();
    } catch (const Abort&) {
      // already recorded
    } catch (const Skip& sk) {
      if (state().failures == 0) {
        ++skipped;
        std::printf("[ SKIP ] %s (%s)\n", t.name.c_str(), sk.why.c_str());
        std::fflush(stdout);
        continue;
      }
    } catch (const std::exception& e) {
      ++state().failures;
      std::fprintf(stderr, "  unexpected exception: %s\n", e.what());
    } catch (...) {
      ++state().failures;
      std::fprintf(stderr, "  unexpected exception of unknown type\n");
    }
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    std::fflush(stderr);
    if (state().failures == 0) {
      ++passed;
      std::printf("[   OK ] %s (%d checks, %.0f ms)\n", t.name.c_str(), state().checks, ms);
    } else {
      ++failed;
      failed_names.push_back(t.name);
      std::printf("[ FAIL ] %s (%d failed checks, %.0f ms)\n", t.name.c_str(), state().failures,
                  ms);
    }
    std::fflush(stdout);
  }
  if (list) return 0;
  const double s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t_all).count();
  for (const std::string& n : failed_names) std::printf("FAILED: %s\n", n.c_str());
  if (passed + failed + skipped == 0) {
    std::printf("no test matched the given prefixes\n");
    std::printf("0 passed, 1 failed\n");
    return 1;
  }
  std::printf("(%.2f s)\n%d passed, %d failed, %d skipped\n", s, passed, failed, skipped);
  if (failed > 0) return 1;
  return passed == 0 ? kSkipExitCode : 0;
}

}  // namespace nk_test

#define NK_TEST_CONCAT2(a, b) a##b
#define NK_TEST_CONCAT(a, b) NK_TEST_CONCAT2(a, b)

#define NK_TEST(group, name)                                                          \
  static void NK_TEST_CONCAT(nk_test_fn_##group##_, name)();                          \
  static const ::nk_test::Registrar NK_TEST_CONCAT(nk_test_reg_##group##_, name)(     \
      #group "." #name, &NK_TEST_CONCAT(nk_test_fn_##group##_, name));                \
  static void NK_TEST_CONCAT(nk_test_fn_##group##_, name)()

// `if (ok) {} else Failure(...) << ctx` lets the caller stream context after the macro;
// the `switch (0) case 0: default:` in front keeps an `else` that follows the macro in the
// caller's code from binding to our `if`. (GCC still suggests braces around a check that
// is the body of an `if`: give it braces.)
#define NK_ELSE_GUARD \
  switch (0)          \
  case 0:             \
  default:

#define NK_CHECK(cond)                                 \
  NK_ELSE_GUARD                                        \
  if (::nk_test::count_check(static_cast<bool>(cond))) \
  {                                                    \
  } else                                               \
    ::nk_test::Failure(__FILE__, __LINE__, #cond, false)

#define NK_REQUIRE(cond)                               \
  NK_ELSE_GUARD                                        \
  if (::nk_test::count_check(static_cast<bool>(cond))) \
  {                                                    \
  } else                                               \
    ::nk_test::Failure(__FILE__, __LINE__, #cond, true)

#define NK_CHECK_THROWS(expr, needle)                                                   \
  NK_ELSE_GUARD                                                                         \
  if (const std::string nk_err_ = ::nk_test::expect_error([&]() { expr; }, (needle));   \
      ::nk_test::count_check(nk_err_.empty()))                                          \
  {                                                                                     \
  } else                                                                                \
    ::nk_test::Failure(__FILE__, __LINE__, "throws normkit::Error: " #expr, false)      \
        << nk_err_

// Leaves the current test as skipped (unless it already failed).
#define NK_SKIP(why) throw ::nk_test::Skip{(why)}

#if defined(NK_TEST_MAIN)
int main(int argc, char** argv) { return ::nk_test::run_main(argc, argv); }
#endif
