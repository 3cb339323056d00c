// The Python face of the jtile XLA FFI extension (jtile._jtile_ffi).
//
// Importing it never touches the CUDA driver, so it loads on machines with no
// GPU; only driver_version() and an actual launch open libcuda.

#include <nanobind/nanobind.h>

#include "driver.h"
#include "xla/ffi/api/api.h"

namespace nb = nanobind;

// Defined in launcher.cc.
XLA_FFI_DECLARE_HANDLER_SYMBOL(JtileLaunch);

NB_MODULE(_jtile_ffi, m) {
  m.doc() = "jtile's XLA FFI custom call handler for launching CUDA cubins.";

  m.def(
      "registrations",
      []() {
        nb::dict targets;
        // A bare capsule: the handler has only an execute stage (modules load
        // lazily per context, see launcher.cc).
        targets["jtile_launch"] =
            nb::capsule(reinterpret_cast<void*>(&JtileLaunch));
        return targets;
      },
      "Returns {target name: PyCapsule} for jax.ffi.register_ffi_target.");

  m.def(
      "driver_version",
      []() -> nb::object {
        std::optional<int> version = jtile::DriverVersion();
        if (!version) return nb::none();
        return nb::int_(*version);
      },
      "Returns the CUDA driver's version (e.g. 13000), or None when "
      "libcuda.so.1 cannot be loaded.");

  m.def(
      "driver_error",
      []() -> nb::object {
        if (jtile::GetDriver() != nullptr) return nb::none();
        return nb::str(jtile::DriverLoadError().c_str());
      },
      "Returns why the CUDA driver could not be loaded, or None when it was.");
}
