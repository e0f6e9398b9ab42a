// cuda/device.cu — device queries, error reporting and the device guard of the CUDA backend.
#include <atomic>
#include <string>

#include "common.cuh"
#include "common/backends.hpp"

#ifndef NORMKIT_CUDA_ARCHS
#define NORMKIT_CUDA_ARCHS ""
#endif

namespace normkit::detail::cuda {

void throw_cuda_error(cudaError_t err, const char* call, const char* file, int line) {
  std::string msg = "normkit: CUDA error ";
  msg += cudaGetErrorName(err);
  msg += " (";
  msg += cudaGetErrorString(err);
  msg += ") in ";
  msg += call;
  msg += " at ";
  msg += file;
  msg += ":";
  msg += std::to_string(line);
  throw Error(ErrorKind::Runtime, msg);
}

void throw_launch_error(cudaError_t err, const char* kernel_name) {
  const std::string call = std::string("launch of ") + kernel_name;
  throw_cuda_error(err, call.c_str(), __FILE__, __LINE__);
}

DeviceGuard::DeviceGuard(int device) {
  int current = 0;
  NK_CUDA_CHECK(cudaGetDevice(&current));
  if (current != device) {
    NK_CUDA_CHECK(cudaSetDevice(device));
    previous_ = current;
  }
}

DeviceGuard::~DeviceGuard() {
  // A destructor must not throw; restoring a device that was current before cannot fail
  // for a reason the caller could act on.
  if (previous_ >= 0) (void)cudaSetDevice(previous_);
}

int sm_count(int device) {
  // Cached per device: the attribute query is a driver round trip on every launch otherwise.
  // Races only make two threads store the same value.
  constexpr int kMaxDevices = 64;
  static std::atomic<int> cache[kMaxDevices] = {};
  if (device >= 0 && device < kMaxDevices) {
    const int cached = cache[device].load(std::memory_order_relaxed);
    if (cached > 0) return cached;
  }
  int n = 0;
  NK_CUDA_CHECK(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, device));
  if (n < 1) n = 1;
  if (device >= 0 && device < kMaxDevices) cache[device].store(n, std::memory_order_relaxed);
  return n;
}

int device_count() {
  int n = 0;
  const cudaError_t err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess) {
    (void)cudaGetLastError();  // no driver / no device: not an error for the caller
    return 0;
  }
  return n;
}

std::string status() {
  int driver = 0, runtime = 0;
  (void)cudaDriverGetVersion(&driver);  // 0: no driver could be loaded
  (void)cudaRuntimeGetVersion(&runtime);
  int n = 0;
  const cudaError_t err = cudaGetDeviceCount(&n);
  (void)cudaGetLastError();
  auto ver = [](int v) { return std::to_string(v / 1000) + "." + std::to_string((v % 1000) / 10); };
  const std::string rt = "CUDA " + ver(runtime) + " runtime";
  if (err == cudaSuccess && n > 0)
    return "available: " + std::to_string(n) + " device(s); driver supports CUDA " + ver(driver) +
           "; " + rt;
  if (driver == 0)
    return "no NVIDIA driver: libcuda.so.1 could not be loaded (the CPU kernels work)";
  if (err == cudaErrorInsufficientDriver) {
    const std::string need = runtime >= 13000 ? " (CUDA 13 needs driver >= 580)"
                             : runtime >= 12000 ? " (CUDA 12 needs driver >= 525)" : "";
    return "the NVIDIA driver supports CUDA " + ver(driver) + ", older than this build's " + rt +
           need + "; the CPU kernels work";
  }
  if (err == cudaErrorNoDevice || err == cudaSuccess)
    return "no CUDA device: the NVIDIA driver (CUDA " + ver(driver) + ") found none";
  return std::string("CUDA could not be initialised: ") + cudaGetErrorName(err) + " (" +
         cudaGetErrorString(err) + ")";
}

std::string architectures() {
  // CMake passes CMAKE_CUDA_ARCHITECTURES comma-separated, e.g. "75-real,80-real,...,90"; report
  // the SM numbers only ("75;80;86;89;90"), dropping the -real/-virtual suffixes.
  const std::string raw = NORMKIT_CUDA_ARCHS;
  std::string out;
  size_t start = 0;
  while (start <= raw.size()) {
    size_t end = raw.find(',', start);
    if (end == std::string::npos) end = raw.size();
    std::string item = raw.substr(start, end - start);
    const size_t dash = item.find('-');
    if (dash != std::string::npos) item.resize(dash);
    if (!item.empty()) {
      if (!out.empty()) out += ';';
      out += item;
    }
    start = end + 1;
  }
  return out;
}

}  // namespace normkit::detail::cuda
