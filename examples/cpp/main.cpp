// Layer-normalizes two rows of four floats with normkit's C++ API and checks the result
// against values worked out by hand. Exit status 0 when they match.
#include <cmath>
#include <cstdio>
#include <vector>

#include "normkit/normkit.hpp"

int main() {
  const int64_t rows = 2, H = 4;
  std::vector<float> x = {1.0f, 2.0f, 3.0f, 4.0f,    // row 0
                          -3.0f, 0.5f, 2.0f, 8.0f};  // row 1
  std::vector<float> weight = {1.0f, 0.5f, 2.0f, 1.0f};
  std::vector<float> bias = {0.0f, 0.25f, -1.0f, 0.5f};
  std::vector<float> y(x.size()), mean(rows), rstd(rows);

  // Views over our own memory: the core never allocates or frees them.
  const int64_t shape[] = {rows, H};
  const int64_t hshape[] = {H};
  const int64_t rshape[] = {rows};
  using normkit::DType;
  using normkit::TensorView;
  const TensorView xv = TensorView::contiguous(x.data(), DType::Float32, shape, 2);
  const TensorView yv = TensorView::contiguous(y.data(), DType::Float32, shape, 2);
  const TensorView wv = TensorView::contiguous(weight.data(), DType::Float32, hshape, 1);
  const TensorView bv = TensorView::contiguous(bias.data(), DType::Float32, hshape, 1);
  const TensorView mv = TensorView::contiguous(mean.data(), DType::Float32, rshape, 1);
  const TensorView rv = TensorView::contiguous(rstd.data(), DType::Float32, rshape, 1);

  try {
    normkit::layer_norm_forward(xv, &wv, &bv, /*eps=*/1e-5, yv, &mv, &rv);
  } catch (const normkit::Error& e) {
    std::fprintf(stderr, "normkit error: %s\n", e.what());
    return 1;
  }

  std::printf("normkit %s, CPU ISA %s, %d threads\n", NORMKIT_VERSION_STRING,
              normkit::cpu_isa().c_str(), normkit::get_num_threads());
  for (int64_t r = 0; r < rows; ++r) {
    std::printf("row %lld: mean %.6f rstd %.6f  y =", static_cast<long long>(r), mean[size_t(r)],
                rstd[size_t(r)]);
    for (int64_t j = 0; j < H; ++j) std::printf(" %+.6f", y[size_t(r * H + j)]);
    std::printf("\n");
  }

  // Row 0 by hand: mean = 2.5; variance = (1.5² + 0.5² + 0.5² + 1.5²)/4 = 1.25;
  // rstd = 1/sqrt(1.25 + 1e-5) = 0.8944236133; x̂ = (x − 2.5)·rstd = ±1.3416354, ±0.4472118;
  // y = x̂·weight + bias.
  const double expect_row0[] = {-1.3416354199689269 * 1.0 + 0.0,
                                -0.4472118066563090 * 0.5 + 0.25,
                                0.4472118066563090 * 2.0 - 1.0,
                                1.3416354199689269 * 1.0 + 0.5};
  // Row 1: mean = 1.875, variance = 15.796875, rstd = 0.2516021059.
  const double expect_row1[] = {-1.226560266030049, 0.07702355222653157, -0.9370994735369206,
                                2.041062898345446};
  int bad = 0;
  for (int64_t j = 0; j < H; ++j) {
    bad += std::fabs(y[size_t(j)] - expect_row0[j]) > 1e-5;
    bad += std::fabs(y[size_t(H + j)] - expect_row1[j]) > 1e-5;
  }
  bad += std::fabs(mean[0] - 2.5) > 1e-6;
  bad += std::fabs(rstd[0] - 0.894423613312618) > 1e-6;
  if (bad) {
    std::printf("MISMATCH: %d values differ from the hand-computed ones\n", bad);
    return 1;
  }
  std::printf("OK: matches the hand-computed values\n");
  return 0;
}
