#include "module_cache.h"

#include <cstdint>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "launch_errors.h"

namespace ffi = xla::ffi;

namespace jtile {
namespace {

struct FunctionEntry {
  CUfunction function = nullptr;
  // The largest dynamic shared memory size opted in to so far: the attribute
  // is set once per function, not once per launch. Without an opt-in a block
  // may use 48 KiB of static and dynamic shared memory together, so any
  // dynamic size is opted in to: 48 KiB of dynamic memory beside 1 KiB of
  // static (mbarriers) already needs it.
  int64_t dynamic_shared_memory_opt_in = 0;
};

struct ModuleEntry {
  CUmodule module = nullptr;
  // A cubin may hold several kernels; std::less<> allows lookups by
  // string_view without building a std::string on every launch.
  std::map<std::string, FunctionEntry, std::less<>> functions;
};

struct ModuleKey {
  CUcontext context;
  std::string module_hash;
};

struct ModuleKeyProbe {
  CUcontext context;
  std::string_view module_hash;
};

// Transparent, so the hot path looks up by string_view without allocating.
struct ModuleKeyLess {
  using is_transparent = void;
  template <typename A, typename B>
  bool operator()(const A& a, const B& b) const {
    return std::make_tuple(reinterpret_cast<uintptr_t>(a.context),
                           std::string_view(a.module_hash)) <
           std::make_tuple(reinterpret_cast<uintptr_t>(b.context),
                           std::string_view(b.module_hash));
  }
};

// Modules are never unloaded: XLA contexts live as long as the process, and
// a cubin that was launched once is likely to be launched again. A context
// destroyed and recreated at the same address would alias a stale entry;
// JAX does not do that.
std::mutex cache_mutex;
std::map<ModuleKey, ModuleEntry, ModuleKeyLess> module_cache;

}  // namespace

ScopedContext::~ScopedContext() {
  if (pushed_) {
    CUcontext ignored = nullptr;
    driver_.CtxPopCurrent(&ignored);
  }
}

CUresult ScopedContext::Push(CUcontext context) {
  CUresult result = driver_.CtxPushCurrent(context);
  pushed_ = result == CUDA_SUCCESS;
  return result;
}

ffi::ErrorOr<CUcontext> ResolveContext(const Driver& driver, CUstream stream,
                                       std::string_view kernel_name,
                                       ScopedContext& scope) {
  CUcontext context = nullptr;
  if (CUresult r = driver.CtxGetCurrent(&context); r != CUDA_SUCCESS) {
    return ffi::Unexpected(
        DriverFailure(driver, kernel_name, "cuCtxGetCurrent", r));
  }
  if (context != nullptr) return context;
  if (CUresult r = driver.StreamGetCtx(stream, &context); r != CUDA_SUCCESS) {
    return ffi::Unexpected(
        DriverFailure(driver, kernel_name, "cuStreamGetCtx", r));
  }
  if (CUresult r = scope.Push(context); r != CUDA_SUCCESS) {
    return ffi::Unexpected(
        DriverFailure(driver, kernel_name, "cuCtxPushCurrent", r));
  }
  return context;
}

ffi::ErrorOr<CUfunction> GetFunction(const Driver& driver, CUcontext context,
                                     ffi::Span<const uint8_t> cubin,
                                     std::string_view kernel_name,
                                     std::string_view module_hash,
                                     int64_t shared_memory_bytes) {
  std::lock_guard<std::mutex> lock(cache_mutex);
  auto module_it = module_cache.find(ModuleKeyProbe{context, module_hash});
  if (module_it == module_cache.end()) {
    // Copied into 8-byte aligned, zero-terminated storage: the attribute's
    // bytes carry no alignment promise, and the driver parses the ELF in
    // place.
    std::vector<uint64_t> image(cubin.size() / sizeof(uint64_t) + 1, 0);
    std::memcpy(image.data(), cubin.begin(), cubin.size());
    CUmodule module = nullptr;
    if (CUresult r = driver.ModuleLoadData(&module, image.data());
        r != CUDA_SUCCESS) {
      return ffi::Unexpected(
          DriverFailure(driver, kernel_name, "cuModuleLoadData", r));
    }
    module_it = module_cache
                    .emplace(ModuleKey{context, std::string(module_hash)},
                             ModuleEntry{module, {}})
                    .first;
  }
  ModuleEntry& module = module_it->second;

  auto function_it = module.functions.find(kernel_name);
  if (function_it == module.functions.end()) {
    CUfunction function = nullptr;
    const std::string name(kernel_name);
    if (CUresult r =
            driver.ModuleGetFunction(&function, module.module, name.c_str());
        r != CUDA_SUCCESS) {
      return ffi::Unexpected(
          DriverFailure(driver, kernel_name, "cuModuleGetFunction", r));
    }
    function_it =
        module.functions.emplace(name, FunctionEntry{function}).first;
  }
  FunctionEntry& entry = function_it->second;

  if (shared_memory_bytes > entry.dynamic_shared_memory_opt_in) {
    if (CUresult r = driver.FuncSetAttribute(
            entry.function, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
            static_cast<int>(shared_memory_bytes));
        r != CUDA_SUCCESS) {
      return ffi::Unexpected(DriverFailure(
          driver, kernel_name,
          "cuFuncSetAttribute(MAX_DYNAMIC_SHARED_SIZE_BYTES)", r));
    }
    entry.dynamic_shared_memory_opt_in = shared_memory_bytes;
  }
  return entry.function;
}

}  // namespace jtile
