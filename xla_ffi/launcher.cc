// The XLA FFI handler that launches a jtile kernel.
//
// The custom call carries everything needed to run: the cubin, the kernel
// name, and the launch configuration are attributes, so the HLO is
// self-contained (the persistent compilation cache and jax.export work).
//
// Modules are loaded lazily at execute time into a process-wide cache keyed by
// (CUcontext, module hash). Not at the FFI instantiate stage: that runs once
// per compiled executable, with no stream and no guarantee of which device's
// context is current, while one executable may run on several devices. At
// execute time the context is known, and the cache still gives exactly one
// load per context per cubin.

#include <cstdint>
#include <cstring>
#include <limits>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include <cuda.h>

#include "driver.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace jtile {
namespace {

// Without an opt-in, a block may use at most 48 KiB of shared memory.
constexpr int64_t kDefaultSharedMemoryLimit = 48 * 1024;

struct FunctionEntry {
  CUfunction function = nullptr;
  // The largest dynamic shared memory size opted in to so far: the attribute
  // is set once per function, not once per launch.
  int64_t dynamic_shared_memory_opt_in = kDefaultSharedMemoryLimit;
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

std::string KernelPrefix(std::string_view kernel_name) {
  return "jtile: kernel '" + std::string(kernel_name) + "': ";
}

ffi::Error DriverFailure(const Driver& driver, std::string_view kernel_name,
                         const char* call, CUresult result) {
  std::string message = KernelPrefix(kernel_name) + call +
                        " failed: " + DescribeResult(driver, result);
  if (result == CUDA_ERROR_NO_BINARY_FOR_GPU ||
      result == CUDA_ERROR_UNSUPPORTED_PTX_VERSION) {
    message += "; the cubin was compiled for a different GPU architecture "
               "than this device's";
  }
  return ffi::Error(ffi::ErrorCode::kInternal, std::move(message));
}

ffi::Error InvalidArgument(std::string_view kernel_name,
                           const std::string& what) {
  return ffi::Error::InvalidArgument(KernelPrefix(kernel_name) + what);
}

// Makes `context` current for the lifetime of the guard when no context is
// current on this thread; XLA normally has one current already.
class ScopedContext {
 public:
  explicit ScopedContext(const Driver& driver) : driver_(driver) {}
  ~ScopedContext() {
    if (pushed_) {
      CUcontext ignored = nullptr;
      driver_.CtxPopCurrent(&ignored);
    }
  }
  ScopedContext(const ScopedContext&) = delete;
  ScopedContext& operator=(const ScopedContext&) = delete;

  CUresult Push(CUcontext context) {
    CUresult result = driver_.CtxPushCurrent(context);
    pushed_ = result == CUDA_SUCCESS;
    return result;
  }

 private:
  const Driver& driver_;
  bool pushed_ = false;
};

// Returns the function to launch, loading the module on first use in
// `context` and opting in to large dynamic shared memory once.
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

// Checks one launch dimension fits the driver's unsigned int.
bool ValidDimension(int64_t value) {
  return value >= 1 && value <= std::numeric_limits<unsigned int>::max();
}

ffi::Error Launch(CUstream stream, ffi::RemainingArgs args,
                  ffi::RemainingRets rets, ffi::Span<const uint8_t> cubin,
                  std::string_view kernel_name, std::string_view module_hash,
                  int64_t grid_x, int64_t grid_y, int64_t grid_z,
                  int64_t block_x, int64_t block_y, int64_t block_z,
                  int64_t cluster_x, int64_t cluster_y, int64_t cluster_z,
                  int64_t shared_memory_bytes) {
  const int64_t grid[3] = {grid_x, grid_y, grid_z};
  const int64_t block[3] = {block_x, block_y, block_z};
  const int64_t cluster[3] = {cluster_x, cluster_y, cluster_z};
  for (int axis = 0; axis < 3; ++axis) {
    if (!ValidDimension(grid[axis]) || !ValidDimension(block[axis]) ||
        !ValidDimension(cluster[axis])) {
      return InvalidArgument(
          kernel_name,
          "grid, block and cluster dimensions must be positive 32-bit "
          "integers; got grid (" +
              std::to_string(grid_x) + ", " + std::to_string(grid_y) + ", " +
              std::to_string(grid_z) + "), block (" + std::to_string(block_x) +
              ", " + std::to_string(block_y) + ", " + std::to_string(block_z) +
              "), cluster (" + std::to_string(cluster_x) + ", " +
              std::to_string(cluster_y) + ", " + std::to_string(cluster_z) +
              ")");
    }
    if (grid[axis] % cluster[axis] != 0) {
      return InvalidArgument(
          kernel_name, "grid dimension " + std::to_string(axis) + " (" +
                           std::to_string(grid[axis]) +
                           ") is not a multiple of the cluster dimension (" +
                           std::to_string(cluster[axis]) + ")");
    }
  }
  if (shared_memory_bytes < 0 ||
      shared_memory_bytes > std::numeric_limits<int>::max()) {
    return InvalidArgument(kernel_name,
                           "shared_memory_bytes must be non-negative; got " +
                               std::to_string(shared_memory_bytes));
  }
  if (cubin.size() == 0) {
    return InvalidArgument(kernel_name, "the cubin attribute is empty");
  }

  const Driver* driver = GetDriver();
  if (driver == nullptr) {
    return ffi::Error(ffi::ErrorCode::kFailedPrecondition, DriverLoadError());
  }

  ScopedContext scoped_context(*driver);
  CUcontext context = nullptr;
  if (CUresult r = driver->CtxGetCurrent(&context); r != CUDA_SUCCESS) {
    return DriverFailure(*driver, kernel_name, "cuCtxGetCurrent", r);
  }
  if (context == nullptr) {
    if (CUresult r = driver->StreamGetCtx(stream, &context);
        r != CUDA_SUCCESS) {
      return DriverFailure(*driver, kernel_name, "cuStreamGetCtx", r);
    }
    // cuModuleLoadData loads into the current context, so make the stream's
    // context current for the load and the launch.
    if (CUresult r = scoped_context.Push(context); r != CUDA_SUCCESS) {
      return DriverFailure(*driver, kernel_name, "cuCtxPushCurrent", r);
    }
  }

  ffi::ErrorOr<CUfunction> function = GetFunction(
      *driver, context, cubin, kernel_name, module_hash, shared_memory_bytes);
  if (function.has_error()) return function.error();

  // The kernel takes one pointer per buffer: inputs then outputs. The driver
  // wants an array of pointers to each parameter's value.
  const size_t num_params = args.size() + rets.size();
  std::vector<void*> pointers(num_params);
  std::vector<void*> params(num_params);
  for (size_t i = 0; i < args.size(); ++i) {
    ffi::ErrorOr<ffi::AnyBuffer> buffer = args.get<ffi::AnyBuffer>(i);
    if (buffer.has_error()) return buffer.error();
    pointers[i] = buffer.value().untyped_data();
  }
  for (size_t i = 0; i < rets.size(); ++i) {
    ffi::ErrorOr<ffi::Result<ffi::AnyBuffer>> buffer =
        rets.get<ffi::AnyBuffer>(i);
    if (buffer.has_error()) return buffer.error();
    pointers[args.size() + i] = buffer.value()->untyped_data();
  }
  for (size_t i = 0; i < num_params; ++i) params[i] = &pointers[i];

  CUlaunchConfig config{};
  config.gridDimX = static_cast<unsigned int>(grid_x);
  config.gridDimY = static_cast<unsigned int>(grid_y);
  config.gridDimZ = static_cast<unsigned int>(grid_z);
  config.blockDimX = static_cast<unsigned int>(block_x);
  config.blockDimY = static_cast<unsigned int>(block_y);
  config.blockDimZ = static_cast<unsigned int>(block_z);
  config.sharedMemBytes = static_cast<unsigned int>(shared_memory_bytes);
  config.hStream = stream;
  CUlaunchAttribute attributes[1]{};
  if (cluster_x > 1 || cluster_y > 1 || cluster_z > 1) {
    attributes[0].id = CU_LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION;
    attributes[0].value.clusterDim.x = static_cast<unsigned int>(cluster_x);
    attributes[0].value.clusterDim.y = static_cast<unsigned int>(cluster_y);
    attributes[0].value.clusterDim.z = static_cast<unsigned int>(cluster_z);
    config.attrs = attributes;
    config.numAttrs = 1;
  }

  if (CUresult r = driver->LaunchKernelEx(&config, function.value(),
                                          params.data(), nullptr);
      r != CUDA_SUCCESS) {
    return DriverFailure(*driver, kernel_name, "cuLaunchKernelEx", r);
  }
  return ffi::Error::Success();
}

}  // namespace
}  // namespace jtile

// Command-buffer compatible: the handler only launches one kernel on XLA's
// stream and allocates no device memory, so XLA may capture it in a CUDA
// graph. The one-time module load is not a stream operation and is safe
// during capture.
XLA_FFI_DEFINE_HANDLER_SYMBOL(
    JtileLaunch, jtile::Launch,
    ffi::Ffi::Bind()
        .Ctx<ffi::PlatformStream<CUstream>>()
        .RemainingArgs()
        .RemainingRets()
        .Attr<ffi::Span<const uint8_t>>("cubin")
        .Attr<std::string_view>("kernel_name")
        .Attr<std::string_view>("module_hash")
        .Attr<int64_t>("grid_x")
        .Attr<int64_t>("grid_y")
        .Attr<int64_t>("grid_z")
        .Attr<int64_t>("block_x")
        .Attr<int64_t>("block_y")
        .Attr<int64_t>("block_z")
        .Attr<int64_t>("cluster_x")
        .Attr<int64_t>("cluster_y")
        .Attr<int64_t>("cluster_z")
        .Attr<int64_t>("shared_memory_bytes"),
    {ffi::Traits::kCmdBufferCompatible});
