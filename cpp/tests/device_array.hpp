// Test arrays of float or double on the host, or moved to the CUDA device (real or emulated):
// a shape, its values and the TensorView the core gets. Shared by the C++ test files.
#pragma once

#include <cstdint>
#include <type_traits>
#include <utility>
#include <vector>

#include "normkit/normkit.hpp"

#if NORMKIT_TEST_WITH_CUDA
#include <cuda_runtime.h>
#endif

namespace nk_test {

using normkit::DType;
using normkit::TensorView;

template <typename T>
struct Arr {
  std::vector<int64_t> shape;
  std::vector<T> v;
  TensorView view;
  void* dev = nullptr;
  Arr() = default;
  Arr(const Arr&) = delete;
  Arr(Arr&& o) noexcept : shape(std::move(o.shape)), v(std::move(o.v)), view(o.view), dev(o.dev) {
    o.dev = nullptr;
    if (!dev) view.data = v.data();
  }
  ~Arr() {
#if NORMKIT_TEST_WITH_CUDA
    if (dev) (void)cudaFree(dev);
#endif
  }
  // The CUDA backend (real or emulated): the values move to device memory and the view
  // points there; to_host() copies them back.
  void to_device() {
#if NORMKIT_TEST_WITH_CUDA
    if (v.empty()) return;
    if (cudaMalloc(&dev, v.size() * sizeof(T)) != cudaSuccess ||
        cudaMemcpy(dev, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice) != cudaSuccess)
      throw normkit::Error(normkit::ErrorKind::Runtime, "test arrays: cudaMalloc / cudaMemcpy");
    view.data = dev;
    view.device = normkit::DeviceType::CUDA;
#endif
  }
  void to_host() {
#if NORMKIT_TEST_WITH_CUDA
    if (!dev) return;
    (void)cudaDeviceSynchronize();
    if (cudaMemcpy(v.data(), dev, v.size() * sizeof(T), cudaMemcpyDeviceToHost) != cudaSuccess)
      throw normkit::Error(normkit::ErrorKind::Runtime, "test arrays: cudaMemcpy back");
#endif
  }
  explicit Arr(std::vector<int64_t> s, T fill = T(0)) : shape(std::move(s)) {
    int64_t n = 1;
    for (auto d : shape) n *= d;
    v.assign(size_t(n), fill);
    view = TensorView::contiguous(v.data(), std::is_same<T, float>::value ? DType::Float32
                                                                          : DType::Float64,
                                  shape.data(), int(shape.size()));
  }
  const TensorView* p() const { return &view; }
};

}  // namespace nk_test
