// normkit/error.hpp — the one exception type of the core.
#pragma once

#include <stdexcept>
#include <string>

namespace normkit {

// kind tells bindings which exception to raise: TypeError for a wrong dtype or array type,
// ValueError for everything else about the arguments (shape, value, device, writability),
// RuntimeError for failures that are not the caller's fault (CUDA errors, no GPU).
enum class ErrorKind { Value, Type, Runtime };

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, const std::string& msg) : std::runtime_error(msg), kind_(kind) {}
  ErrorKind kind() const noexcept { return kind_; }

 private:
  ErrorKind kind_;
};

}  // namespace normkit
