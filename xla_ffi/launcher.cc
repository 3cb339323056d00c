// The XLA FFI handler that launches a jtile kernel.
//
// The custom call carries everything needed to run: the cubin, the kernel
// name, the launch configuration and the static description of each TMA
// tensor map are attributes, so the HLO is self-contained (the persistent
// compilation cache and jax.export work).
//
// The handler has three stages:
// - instantiate, once per call site when XLA compiles the executable: checks
//   the tensor map records and creates the call site's state. There is no
//   stream and no device yet, and one executable may run on several devices,
//   so nothing is loaded here.
// - initialize, before every execution and outside any CUDA graph capture,
//   with XLA's stream: loads the module into the per-context cache
//   (module_cache.h), so the first launch inside a command buffer finds it
//   loaded.
// - execute: encodes the tensor maps from this launch's buffer addresses
//   (re-encoding only when the addresses differ from the call site's previous
//   launch on the same context) and launches on XLA's stream. It loads the
//   module itself when initialize did not run (a runtime without that stage).
//
// Command-buffer compatible: execute only launches one kernel on XLA's stream
// and allocates no device memory, so XLA may capture it in a CUDA graph; the
// kernel parameters, tensor maps included, are copied into the graph node.

#include "launcher.h"

#include <atomic>
#include <cstdint>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <cuda.h>

#include "driver.h"
#include "launch_errors.h"
#include "module_cache.h"
#include "tensor_maps.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace jtile {

// Every attribute of the jtile_launch custom call (jtile/binding/ffi.py).
struct LaunchAttributes {
  ffi::Span<const uint8_t> cubin;
  std::string_view kernel_name;
  std::string_view module_hash;
  int64_t grid_x;
  int64_t grid_y;
  int64_t grid_z;
  int64_t block_x;
  int64_t block_y;
  int64_t block_z;
  int64_t cluster_x;
  int64_t cluster_y;
  int64_t cluster_z;
  int64_t shared_memory_bytes;
  // Concatenated tensor map records (tensor_maps.h); empty without TMA.
  ffi::Span<const int64_t> tensor_maps;
};

// Binds the call site's state when the runtime has one, and nullptr when it
// has none (a handler registered without its instantiate stage, or a runtime
// that does not pass state to a stage), so the handler degrades to loading
// and encoding on every launch instead of failing.
template <typename T>
struct OptionalState {};

}  // namespace jtile

XLA_FFI_REGISTER_STRUCT_ATTR_DECODING(
    jtile::LaunchAttributes,
    ::xla::ffi::StructMember<::xla::ffi::Span<const uint8_t>>("cubin"),
    ::xla::ffi::StructMember<std::string_view>("kernel_name"),
    ::xla::ffi::StructMember<std::string_view>("module_hash"),
    ::xla::ffi::StructMember<int64_t>("grid_x"),
    ::xla::ffi::StructMember<int64_t>("grid_y"),
    ::xla::ffi::StructMember<int64_t>("grid_z"),
    ::xla::ffi::StructMember<int64_t>("block_x"),
    ::xla::ffi::StructMember<int64_t>("block_y"),
    ::xla::ffi::StructMember<int64_t>("block_z"),
    ::xla::ffi::StructMember<int64_t>("cluster_x"),
    ::xla::ffi::StructMember<int64_t>("cluster_y"),
    ::xla::ffi::StructMember<int64_t>("cluster_z"),
    ::xla::ffi::StructMember<int64_t>("shared_memory_bytes"),
    ::xla::ffi::StructMember<::xla::ffi::Span<const int64_t>>("tensor_maps"));

namespace xla::ffi {

template <typename T>
struct CtxDecoding<jtile::OptionalState<T>> {
  using Type = T*;

  static std::optional<Type> Decode(const XLA_FFI_Api* api,
                                    XLA_FFI_ExecutionContext* ctx,
                                    DiagnosticEngine&) {
    XLA_FFI_State_Get_Args args;
    args.struct_size = XLA_FFI_State_Get_Args_STRUCT_SIZE;
    args.extension_start = nullptr;
    args.ctx = ctx;
    args.stage = XLA_FFI_ExecutionStage_INSTANTIATE;
    args.type_id = &T::id;
    args.state = nullptr;
    if (XLA_FFI_Error* error = api->XLA_FFI_State_Get(&args)) {
      XLA_FFI_Error_Destroy_Args destroy;
      destroy.struct_size = XLA_FFI_Error_Destroy_Args_STRUCT_SIZE;
      destroy.extension_start = nullptr;
      destroy.error = error;
      api->XLA_FFI_Error_Destroy(&destroy);
      return static_cast<Type>(nullptr);
    }
    return static_cast<Type>(args.state);
  }
};

}  // namespace xla::ffi

namespace jtile {
namespace {

// Call sites whose function was looked up (and its module loaded, on first
// use in a context) at each stage; a runtime that runs initialize leaves the
// execute count at zero.
std::atomic<uint64_t> resolved_at_initialize{0};
std::atomic<uint64_t> resolved_at_execute{0};

// One call site of jtile_launch in a compiled executable.
class LaunchState {
 public:
  static ffi::TypeId id;

  explicit LaunchState(std::vector<TensorMapRecord> records)
      : records_(std::move(records)) {}

  const std::vector<TensorMapRecord>& records() const { return records_; }

  // The function for `context`, loaded through the process-wide module cache
  // on this call site's first launch there; `resolved` counts that lookup.
  ffi::ErrorOr<CUfunction> Function(const Driver& driver, CUcontext context,
                                    const LaunchAttributes& attrs,
                                    std::atomic<uint64_t>& resolved) {
    std::lock_guard<std::mutex> lock(mutex_);
    PerContext& entry = Entry(context);
    if (entry.function == nullptr) {
      ffi::ErrorOr<CUfunction> function =
          GetFunction(driver, context, attrs.cubin, attrs.kernel_name,
                      attrs.module_hash, attrs.shared_memory_bytes);
      if (function.has_error()) return function;
      entry.function = function.value();
      resolved.fetch_add(1, std::memory_order_relaxed);
    }
    return entry.function;
  }

  // Copies into `maps` the tensor maps for this launch's `buffers`, encoding
  // them only when the mapped buffers moved since the previous launch on
  // `context`.
  ffi::Error TensorMaps(const Driver& driver, CUcontext context,
                        std::string_view kernel_name,
                        const std::vector<void*>& buffers,
                        std::vector<CUtensorMap>* maps) {
    std::vector<void*> addresses(records_.size());
    for (size_t i = 0; i < records_.size(); ++i) {
      addresses[i] = buffers[records_[i].param];
    }
    std::lock_guard<std::mutex> lock(mutex_);
    PerContext& entry = Entry(context);
    if (entry.maps.size() != records_.size() ||
        entry.map_addresses != addresses) {
      std::vector<CUtensorMap> encoded(records_.size());
      for (size_t i = 0; i < records_.size(); ++i) {
        if (ffi::Error error = EncodeTensorMap(driver, kernel_name, i,
                                               records_[i], addresses[i],
                                               &encoded[i]);
            !error.success()) {
          return error;
        }
      }
      entry.maps = std::move(encoded);
      entry.map_addresses = std::move(addresses);
    }
    *maps = entry.maps;
    return ffi::Error::Success();
  }

 private:
  struct PerContext {
    CUcontext context = nullptr;
    CUfunction function = nullptr;
    std::vector<void*> map_addresses;  // the key of `maps`
    std::vector<CUtensorMap> maps;
  };

  // An executable runs on few devices, so a linear search is enough.
  PerContext& Entry(CUcontext context) {
    for (PerContext& entry : contexts_) {
      if (entry.context == context) return entry;
    }
    contexts_.emplace_back();
    contexts_.back().context = context;
    return contexts_.back();
  }

  const std::vector<TensorMapRecord> records_;
  std::mutex mutex_;
  std::vector<PerContext> contexts_;
};

ffi::TypeId LaunchState::id = {};

// Checks one launch dimension fits the driver's unsigned int.
bool ValidDimension(int64_t value) {
  return value >= 1 && value <= std::numeric_limits<unsigned int>::max();
}

ffi::Error ValidateLaunch(const LaunchAttributes& a) {
  const int64_t grid[3] = {a.grid_x, a.grid_y, a.grid_z};
  const int64_t block[3] = {a.block_x, a.block_y, a.block_z};
  const int64_t cluster[3] = {a.cluster_x, a.cluster_y, a.cluster_z};
  for (int axis = 0; axis < 3; ++axis) {
    if (!ValidDimension(grid[axis]) || !ValidDimension(block[axis]) ||
        !ValidDimension(cluster[axis])) {
      return InvalidArgument(
          a.kernel_name,
          "grid, block and cluster dimensions must be positive 32-bit "
          "integers; got grid (" +
              std::to_string(a.grid_x) + ", " + std::to_string(a.grid_y) +
              ", " + std::to_string(a.grid_z) + "), block (" +
              std::to_string(a.block_x) + ", " + std::to_string(a.block_y) +
              ", " + std::to_string(a.block_z) + "), cluster (" +
              std::to_string(a.cluster_x) + ", " +
              std::to_string(a.cluster_y) + ", " +
              std::to_string(a.cluster_z) + ")");
    }
    if (grid[axis] % cluster[axis] != 0) {
      return InvalidArgument(
          a.kernel_name, "grid dimension " + std::to_string(axis) + " (" +
                             std::to_string(grid[axis]) +
                             ") is not a multiple of the cluster dimension (" +
                             std::to_string(cluster[axis]) + ")");
    }
  }
  if (a.shared_memory_bytes < 0 ||
      a.shared_memory_bytes > std::numeric_limits<int>::max()) {
    return InvalidArgument(a.kernel_name,
                           "shared_memory_bytes must be non-negative; got " +
                               std::to_string(a.shared_memory_bytes));
  }
  if (a.cubin.size() == 0) {
    return InvalidArgument(a.kernel_name, "the cubin attribute is empty");
  }
  return ffi::Error::Success();
}

ffi::ErrorOr<std::unique_ptr<LaunchState>> Instantiate(
    const LaunchAttributes& attrs) {
  if (ffi::Error error = ValidateLaunch(attrs); !error.success()) {
    return ffi::Unexpected(std::move(error));
  }
  // The buffer count is unknown here; execute checks `param` against it.
  ffi::ErrorOr<std::vector<TensorMapRecord>> records = ParseTensorMapRecords(
      attrs.kernel_name, attrs.tensor_maps, /*num_buffers=*/-1);
  if (records.has_error()) return ffi::Unexpected(records.error());
  return std::make_unique<LaunchState>(std::move(records.value()));
}

ffi::Error Initialize(CUstream stream, LaunchState* state,
                      const LaunchAttributes& attrs) {
  if (ffi::Error error = ValidateLaunch(attrs); !error.success()) {
    return error;
  }
  const Driver* driver = GetDriver();
  if (driver == nullptr) {
    return ffi::Error(ffi::ErrorCode::kFailedPrecondition, DriverLoadError());
  }
  ScopedContext scope(*driver);
  ffi::ErrorOr<CUcontext> context =
      ResolveContext(*driver, stream, attrs.kernel_name, scope);
  if (context.has_error()) return context.error();
  ffi::ErrorOr<CUfunction> function =
      state != nullptr
          ? state->Function(*driver, context.value(), attrs,
                            resolved_at_initialize)
          : GetFunction(*driver, context.value(), attrs.cubin,
                        attrs.kernel_name, attrs.module_hash,
                        attrs.shared_memory_bytes);
  if (function.has_error()) return function.error();
  return ffi::Error::Success();
}

// `cooperative`: the kernel holds a grid barrier (T.sync_grid), so it is
// launched cooperatively: the driver refuses a grid whose blocks cannot all be
// resident at once instead of letting the barrier wait forever.
ffi::Error Launch(CUstream stream, LaunchState* state, ffi::RemainingArgs args,
                  ffi::RemainingRets rets, const LaunchAttributes& attrs,
                  bool cooperative) {
  if (ffi::Error error = ValidateLaunch(attrs); !error.success()) {
    return error;
  }
  const Driver* driver = GetDriver();
  if (driver == nullptr) {
    return ffi::Error(ffi::ErrorCode::kFailedPrecondition, DriverLoadError());
  }
  ScopedContext scope(*driver);
  ffi::ErrorOr<CUcontext> context =
      ResolveContext(*driver, stream, attrs.kernel_name, scope);
  if (context.has_error()) return context.error();

  // The kernel takes one pointer per buffer, inputs then outputs, then one
  // CUtensorMap per record.
  const size_t num_buffers = args.size() + rets.size();
  std::vector<void*> buffers(num_buffers);
  for (size_t i = 0; i < args.size(); ++i) {
    ffi::ErrorOr<ffi::AnyBuffer> buffer = args.get<ffi::AnyBuffer>(i);
    if (buffer.has_error()) return buffer.error();
    buffers[i] = buffer.value().untyped_data();
  }
  for (size_t i = 0; i < rets.size(); ++i) {
    ffi::ErrorOr<ffi::Result<ffi::AnyBuffer>> buffer =
        rets.get<ffi::AnyBuffer>(i);
    if (buffer.has_error()) return buffer.error();
    buffers[args.size() + i] = buffer.value()->untyped_data();
  }

  ffi::ErrorOr<CUfunction> function =
      state != nullptr
          ? state->Function(*driver, context.value(), attrs,
                            resolved_at_execute)
          : GetFunction(*driver, context.value(), attrs.cubin,
                        attrs.kernel_name, attrs.module_hash,
                        attrs.shared_memory_bytes);
  if (function.has_error()) return function.error();

  std::vector<CUtensorMap> maps;
  if (attrs.tensor_maps.size() > 0) {
    if (state != nullptr) {
      for (const TensorMapRecord& record : state->records()) {
        if (record.param >= static_cast<int64_t>(num_buffers)) {
          return InvalidArgument(
              attrs.kernel_name,
              "a tensor map names buffer " + std::to_string(record.param) +
                  " but the kernel has " + std::to_string(num_buffers) +
                  " buffers (inputs then outputs)");
        }
      }
      if (ffi::Error error = state->TensorMaps(*driver, context.value(),
                                               attrs.kernel_name, buffers,
                                               &maps);
          !error.success()) {
        return error;
      }
    } else {
      ffi::ErrorOr<std::vector<TensorMapRecord>> records =
          ParseTensorMapRecords(attrs.kernel_name, attrs.tensor_maps,
                                static_cast<int64_t>(num_buffers));
      if (records.has_error()) return records.error();
      maps.resize(records.value().size());
      for (size_t i = 0; i < maps.size(); ++i) {
        const TensorMapRecord& record = records.value()[i];
        if (ffi::Error error =
                EncodeTensorMap(*driver, attrs.kernel_name, i, record,
                                buffers[record.param], &maps[i]);
            !error.success()) {
          return error;
        }
      }
    }
  }

  // The driver wants an array of pointers to each parameter's value.
  std::vector<void*> params;
  params.reserve(num_buffers + maps.size());
  for (void*& buffer : buffers) params.push_back(&buffer);
  for (CUtensorMap& map : maps) params.push_back(&map);

  CUlaunchConfig config{};
  config.gridDimX = static_cast<unsigned int>(attrs.grid_x);
  config.gridDimY = static_cast<unsigned int>(attrs.grid_y);
  config.gridDimZ = static_cast<unsigned int>(attrs.grid_z);
  config.blockDimX = static_cast<unsigned int>(attrs.block_x);
  config.blockDimY = static_cast<unsigned int>(attrs.block_y);
  config.blockDimZ = static_cast<unsigned int>(attrs.block_z);
  config.sharedMemBytes = static_cast<unsigned int>(attrs.shared_memory_bytes);
  config.hStream = stream;
  CUlaunchAttribute launch_attributes[2]{};
  unsigned int num_attributes = 0;
  if (attrs.cluster_x > 1 || attrs.cluster_y > 1 || attrs.cluster_z > 1) {
    CUlaunchAttribute& cluster = launch_attributes[num_attributes++];
    cluster.id = CU_LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION;
    cluster.value.clusterDim.x = static_cast<unsigned int>(attrs.cluster_x);
    cluster.value.clusterDim.y = static_cast<unsigned int>(attrs.cluster_y);
    cluster.value.clusterDim.z = static_cast<unsigned int>(attrs.cluster_z);
  }
  if (cooperative) {
    CUlaunchAttribute& together = launch_attributes[num_attributes++];
    together.id = CU_LAUNCH_ATTRIBUTE_COOPERATIVE;
    together.value.cooperative = 1;
  }
  if (num_attributes > 0) {
    config.attrs = launch_attributes;
    config.numAttrs = num_attributes;
  }

  if (CUresult r = driver->LaunchKernelEx(&config, function.value(),
                                          params.data(), nullptr);
      r != CUDA_SUCCESS) {
    return DriverFailure(*driver, attrs.kernel_name, "cuLaunchKernelEx", r);
  }
  return ffi::Error::Success();
}

ffi::Error Execute(CUstream stream, LaunchState* state,
                   ffi::RemainingArgs args, ffi::RemainingRets rets,
                   const LaunchAttributes& attrs) {
  return Launch(stream, state, args, rets, attrs, /*cooperative=*/false);
}

ffi::Error ExecuteCooperative(CUstream stream, LaunchState* state,
                              ffi::RemainingArgs args, ffi::RemainingRets rets,
                              const LaunchAttributes& attrs) {
  return Launch(stream, state, args, rets, attrs, /*cooperative=*/true);
}

XLA_FFI_TypeInfo MakeLaunchStateTypeInfo() {
  // Field by field: newer FFI headers may add fields, left zero here.
  XLA_FFI_TypeInfo info{};
  info.struct_size = XLA_FFI_TypeInfo_STRUCT_SIZE;
  info.extension_start = nullptr;
  info.deleter = [](void* state) { delete static_cast<LaunchState*>(state); };
  return info;
}

}  // namespace

XLA_FFI_TypeId* LaunchStateTypeId() { return &LaunchState::id; }

uint64_t FunctionsResolvedAtInitialize() {
  return resolved_at_initialize.load(std::memory_order_relaxed);
}

uint64_t FunctionsResolvedAtExecute() {
  return resolved_at_execute.load(std::memory_order_relaxed);
}

const XLA_FFI_TypeInfo* LaunchStateTypeInfo() {
  static const XLA_FFI_TypeInfo info = MakeLaunchStateTypeInfo();
  return &info;
}

}  // namespace jtile

XLA_FFI_DEFINE_HANDLER_SYMBOL(
    JtileLaunchInstantiate, jtile::Instantiate,
    ffi::Ffi::BindInstantiate().Attrs<jtile::LaunchAttributes>());

XLA_FFI_DEFINE_HANDLER_SYMBOL(
    JtileLaunchInitialize, jtile::Initialize,
    ffi::Ffi::BindInitialize()
        .Ctx<ffi::PlatformStream<CUstream>>()
        .Ctx<jtile::OptionalState<jtile::LaunchState>>()
        .Attrs<jtile::LaunchAttributes>());

XLA_FFI_DEFINE_HANDLER_SYMBOL(
    JtileLaunchExecute, jtile::Execute,
    ffi::Ffi::Bind()
        .Ctx<ffi::PlatformStream<CUstream>>()
        .Ctx<jtile::OptionalState<jtile::LaunchState>>()
        .RemainingArgs()
        .RemainingRets()
        .Attrs<jtile::LaunchAttributes>(),
    {ffi::Traits::kCmdBufferCompatible});

// Kernels with a grid barrier: launched cooperatively, and kept out of XLA's
// command buffers (no kCmdBufferCompatible trait), so each launch goes through
// the driver's residency check.
XLA_FFI_DEFINE_HANDLER_SYMBOL(
    JtileLaunchCooperativeExecute, jtile::ExecuteCooperative,
    ffi::Ffi::Bind()
        .Ctx<ffi::PlatformStream<CUstream>>()
        .Ctx<jtile::OptionalState<jtile::LaunchState>>()
        .RemainingArgs()
        .RemainingRets()
        .Attrs<jtile::LaunchAttributes>());
