// The test executable's main(): see nk_test.hpp for its command line.
#define NK_TEST_MAIN
#include "nk_test.hpp"
