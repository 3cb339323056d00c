#include "driver.h"

#include <dlfcn.h>

#include <string>
#include <type_traits>

namespace jtile {
namespace {

// Every entry point is requested at the CUDA 12.0 ABI: the prototypes in
// driver.h are unchanged since then, and pinning the version keeps a newer
// cuda.h (the pip wheel's) from asking an older driver for a symbol version
// it does not have. 12.0 is also the first driver with cuLaunchKernelEx and
// cuTensorMapEncodeTiled.
constexpr int kAbiVersion = 12000;

struct Loaded {
  Driver driver{};
  bool ok = false;
  std::string error;
};

Loaded Load() {
  Loaded loaded;
  // The unversioned libcuda.so ships only with driver development packages;
  // the .so.1 soname is what every driver install provides.
  void* lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (lib == nullptr) {
    const char* why = dlerror();
    loaded.error = std::string(
                       "jtile: no CUDA driver (libcuda.so.1) could be loaded: ") +
                   (why ? why : "unknown dlopen error");
    return loaded;
  }
  // The library stays open for the life of the process: modules loaded
  // through it are cached process-wide.
  using GetProcAddressFn = decltype(&::cuGetProcAddress);
  auto get_proc =
      reinterpret_cast<GetProcAddressFn>(dlsym(lib, "cuGetProcAddress_v2"));
  if (get_proc == nullptr) {
    loaded.error =
        "jtile: the CUDA driver is too old (no cuGetProcAddress_v2); jtile "
        "needs a CUDA 12.0 or newer driver";
    return loaded;
  }

  bool missing = false;
  auto resolve = [&](const char* name, auto& slot) {
    void* fn = nullptr;
    CUdriverProcAddressQueryResult status = CU_GET_PROC_ADDRESS_SUCCESS;
    // Legacy-stream variants: jtile always passes XLA's explicit stream, and
    // the legacy entry points do not depend on how this file was compiled.
    CUresult result = get_proc(name, &fn, kAbiVersion,
                               CU_GET_PROC_ADDRESS_LEGACY_STREAM, &status);
    if (result != CUDA_SUCCESS || status != CU_GET_PROC_ADDRESS_SUCCESS ||
        fn == nullptr) {
      if (!missing) {
        loaded.error = std::string("jtile: the CUDA driver has no entry point ") +
                       name + " (needs a CUDA 12.0 or newer driver)";
      }
      missing = true;
      return;
    }
    slot = reinterpret_cast<std::remove_reference_t<decltype(slot)>>(fn);
  };

  Driver& d = loaded.driver;
  resolve("cuGetErrorName", d.GetErrorName);
  resolve("cuGetErrorString", d.GetErrorString);
  resolve("cuDriverGetVersion", d.DriverGetVersion);
  resolve("cuCtxGetCurrent", d.CtxGetCurrent);
  resolve("cuCtxPushCurrent", d.CtxPushCurrent);
  resolve("cuCtxPopCurrent", d.CtxPopCurrent);
  resolve("cuStreamGetCtx", d.StreamGetCtx);
  resolve("cuModuleLoadData", d.ModuleLoadData);
  resolve("cuModuleGetFunction", d.ModuleGetFunction);
  resolve("cuFuncSetAttribute", d.FuncSetAttribute);
  resolve("cuLaunchKernelEx", d.LaunchKernelEx);
  resolve("cuTensorMapEncodeTiled", d.TensorMapEncodeTiled);
  loaded.ok = !missing;
  return loaded;
}

const Loaded& Instance() {
  // A function-local static: initialised once, thread-safely, on first use,
  // so importing the extension never touches the driver.
  static const Loaded loaded = Load();
  return loaded;
}

}  // namespace

const Driver* GetDriver() {
  const Loaded& loaded = Instance();
  return loaded.ok ? &loaded.driver : nullptr;
}

const std::string& DriverLoadError() { return Instance().error; }

std::optional<int> DriverVersion() {
  const Driver* driver = GetDriver();
  if (driver == nullptr) return std::nullopt;
  int version = 0;
  if (driver->DriverGetVersion(&version) != CUDA_SUCCESS) return std::nullopt;
  return version;
}

std::string DescribeResult(const Driver& driver, CUresult result) {
  const char* name = nullptr;
  const char* text = nullptr;
  if (driver.GetErrorName(result, &name) != CUDA_SUCCESS) name = nullptr;
  if (driver.GetErrorString(result, &text) != CUDA_SUCCESS) text = nullptr;
  std::string out = name ? name : "CUresult " + std::to_string(result);
  out += " (";
  out += text ? text : "unknown error";
  out += ")";
  return out;
}

}  // namespace jtile
