// The jtile_launch FFI handler's stages and its state type, as module.cc
// hands them to jax.ffi.register_ffi_target / register_ffi_type.

#ifndef JTILE_XLA_FFI_LAUNCHER_H_
#define JTILE_XLA_FFI_LAUNCHER_H_

#include <cstdint>

#include "xla/ffi/api/api.h"
#include "xla/ffi/api/c_api.h"

// Instantiate (once per call site, at compile time): parses and checks the
// tensor map records and creates the call site's state.
XLA_FFI_DECLARE_HANDLER_SYMBOL(JtileLaunchInstantiate);
// Initialize (before every execution, outside any CUDA graph capture): loads
// the module into the per-context cache.
XLA_FFI_DECLARE_HANDLER_SYMBOL(JtileLaunchInitialize);
// Execute: encodes the tensor maps (cached per call site) and launches.
XLA_FFI_DECLARE_HANDLER_SYMBOL(JtileLaunchExecute);
// Execute for kernels with a grid barrier (T.sync_grid): a cooperative launch.
XLA_FFI_DECLARE_HANDLER_SYMBOL(JtileLaunchCooperativeExecute);

namespace jtile {

// The state type's id, filled in by XLA when the type is registered.
XLA_FFI_TypeId* LaunchStateTypeId();
// How XLA destroys a call site's state with its executable.
const XLA_FFI_TypeInfo* LaunchStateTypeInfo();

// How many call sites looked their function up (loading its module on first
// use in a context) at the initialize stage, and how many only at execute.
uint64_t FunctionsResolvedAtInitialize();
uint64_t FunctionsResolvedAtExecute();

}  // namespace jtile

#endif  // JTILE_XLA_FFI_LAUNCHER_H_
