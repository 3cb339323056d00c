// The process-wide cache of loaded cubins, keyed by (CUcontext, module hash).
//
// A cubin is loaded once per context however many custom calls carry it; the
// launcher fills the cache at the FFI initialize stage (outside any CUDA graph
// capture) and falls back to loading here at execute time.

#ifndef JTILE_XLA_FFI_MODULE_CACHE_H_
#define JTILE_XLA_FFI_MODULE_CACHE_H_

#include <cstdint>
#include <string_view>

#include <cuda.h>

#include "driver.h"
#include "xla/ffi/api/ffi.h"

namespace jtile {

// Makes a context current for the lifetime of the guard when none is current
// on this thread; XLA normally has one current already.
class ScopedContext {
 public:
  explicit ScopedContext(const Driver& driver) : driver_(driver) {}
  ~ScopedContext();
  ScopedContext(const ScopedContext&) = delete;
  ScopedContext& operator=(const ScopedContext&) = delete;

  CUresult Push(CUcontext context);

 private:
  const Driver& driver_;
  bool pushed_ = false;
};

// The context to load into and launch in: the thread's current context, or
// else `stream`'s, which `scope` then makes current (cuModuleLoadData loads
// into the current context).
xla::ffi::ErrorOr<CUcontext> ResolveContext(const Driver& driver,
                                            CUstream stream,
                                            std::string_view kernel_name,
                                            ScopedContext& scope);

// Returns the function to launch, loading the module on first use in
// `context` and opting in to `shared_memory_bytes` of dynamic shared memory
// once per function. Thread-safe.
xla::ffi::ErrorOr<CUfunction> GetFunction(const Driver& driver,
                                          CUcontext context,
                                          xla::ffi::Span<const uint8_t> cubin,
                                          std::string_view kernel_name,
                                          std::string_view module_hash,
                                          int64_t shared_memory_bytes);

}  // namespace jtile

#endif  // JTILE_XLA_FFI_MODULE_CACHE_H_
