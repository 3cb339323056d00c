// Error messages of the jtile launcher: every one names the kernel first, so a
// failure inside a large jitted program points at the jtile kernel that broke.

#ifndef JTILE_XLA_FFI_LAUNCH_ERRORS_H_
#define JTILE_XLA_FFI_LAUNCH_ERRORS_H_

#include <string>
#include <string_view>
#include <utility>

#include <cuda.h>

#include "driver.h"
#include "xla/ffi/api/ffi.h"

namespace jtile {

inline std::string KernelPrefix(std::string_view kernel_name) {
  return "jtile: kernel '" + std::string(kernel_name) + "': ";
}

// A driver call that failed, with the driver's own name for the result code.
inline xla::ffi::Error DriverFailure(const Driver& driver,
                                     std::string_view kernel_name,
                                     const char* call, CUresult result) {
  std::string message = KernelPrefix(kernel_name) + call +
                        " failed: " + DescribeResult(driver, result);
  if (result == CUDA_ERROR_NO_BINARY_FOR_GPU ||
      result == CUDA_ERROR_UNSUPPORTED_PTX_VERSION) {
    message += "; the cubin was compiled for a different GPU architecture "
               "than this device's";
  }
  if (result == CUDA_ERROR_COOPERATIVE_LAUNCH_TOO_LARGE) {
    message += "; the kernel uses T.sync_grid, so every block of its grid "
               "must be resident on the GPU at once: launch fewer blocks (at "
               "most the SM count times the blocks one SM holds), or split the "
               "kernel in two at the barrier";
  }
  return xla::ffi::Error(xla::ffi::ErrorCode::kInternal, std::move(message));
}

inline xla::ffi::Error InvalidArgument(std::string_view kernel_name,
                                       const std::string& what) {
  return xla::ffi::Error::InvalidArgument(KernelPrefix(kernel_name) + what);
}

}  // namespace jtile

#endif  // JTILE_XLA_FFI_LAUNCH_ERRORS_H_
