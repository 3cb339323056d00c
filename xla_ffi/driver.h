// The CUDA driver entry points jtile uses, resolved at run time.
//
// The extension must build and import on machines with no GPU and no driver
// (CI, developer laptops), so libcuda is never linked: it is opened with
// dlopen on first use and every entry point comes from cuGetProcAddress.
// cuda.h is included only for types and prototypes; decltype of a prototype
// does not odr-use it, so no symbol from libcuda is referenced at link time.

#ifndef JTILE_XLA_FFI_DRIVER_H_
#define JTILE_XLA_FFI_DRIVER_H_

#include <optional>
#include <string>

#include <cuda.h>

namespace jtile {

struct Driver {
  decltype(&::cuGetErrorName) GetErrorName;
  decltype(&::cuGetErrorString) GetErrorString;
  decltype(&::cuDriverGetVersion) DriverGetVersion;
  decltype(&::cuCtxGetCurrent) CtxGetCurrent;
  decltype(&::cuCtxPushCurrent) CtxPushCurrent;
  decltype(&::cuCtxPopCurrent) CtxPopCurrent;
  decltype(&::cuStreamGetCtx) StreamGetCtx;
  decltype(&::cuModuleLoadData) ModuleLoadData;
  decltype(&::cuModuleGetFunction) ModuleGetFunction;
  decltype(&::cuFuncSetAttribute) FuncSetAttribute;
  decltype(&::cuLaunchKernelEx) LaunchKernelEx;
  // Host-side only: builds a TMA descriptor, needs no context or stream.
  decltype(&::cuTensorMapEncodeTiled) TensorMapEncodeTiled;
};

// The process-wide driver table, or nullptr when libcuda.so.1 cannot be
// opened or lacks an entry point jtile needs. Thread-safe; never throws.
const Driver* GetDriver();

// Why GetDriver() returned nullptr, for error messages.
const std::string& DriverLoadError();

// The driver's CUDA version (e.g. 13000), or nullopt with no usable driver.
std::optional<int> DriverVersion();

// "CUDA_ERROR_X (text)" for a driver result code.
std::string DescribeResult(const Driver& driver, CUresult result);

}  // namespace jtile

#endif  // JTILE_XLA_FFI_DRIVER_H_
