// The Python face of the jtile XLA FFI extension (jtile._jtile_ffi).
//
// Importing it never touches the CUDA driver, so it loads on machines with no
// GPU; only driver_version() and an actual launch open libcuda.

#include <nanobind/nanobind.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "driver.h"
#include "launcher.h"
#include "tensor_maps.h"
#include "xla/ffi/api/api.h"

namespace nb = nanobind;

NB_MODULE(_jtile_ffi, m) {
  m.doc() = "jtile's XLA FFI custom call handler for launching CUDA cubins.";

  m.def(
      "registrations",
      [](bool stateful) {
        // The stages jax.ffi.register_ffi_target takes as a dict. Without
        // instantiate the handler keeps no per-call-site state: it still
        // loads modules at initialize, and encodes tensor maps every launch.
        // jtile_launch_cooperative differs in its execute stage only: it
        // launches kernels with a grid barrier (T.sync_grid) cooperatively.
        nb::dict targets;
        for (const auto& [name, execute] :
             {std::pair{"jtile_launch",
                        reinterpret_cast<void*>(&JtileLaunchExecute)},
              std::pair{"jtile_launch_cooperative",
                        reinterpret_cast<void*>(&JtileLaunchCooperativeExecute)}}) {
          nb::dict stages;
          if (stateful) {
            stages["instantiate"] =
                nb::capsule(reinterpret_cast<void*>(&JtileLaunchInstantiate));
          }
          stages["initialize"] =
              nb::capsule(reinterpret_cast<void*>(&JtileLaunchInitialize));
          stages["execute"] = nb::capsule(execute);
          targets[name] = stages;
        }
        return targets;
      },
      nb::arg("stateful") = true,
      "Returns {target name: {stage: PyCapsule}} for "
      "jax.ffi.register_ffi_target.");

  m.def(
      "state_type",
      []() {
        nb::dict registration;
        registration["type_id"] =
            nb::capsule(reinterpret_cast<void*>(jtile::LaunchStateTypeId()));
        registration["type_info"] = nb::capsule(const_cast<void*>(
            static_cast<const void*>(jtile::LaunchStateTypeInfo())));
        return registration;
      },
      "Returns the jax.ffi.TypeRegistration of the handler's per-call-site "
      "state, for jax.ffi.register_ffi_type.");

  m.def(
      "check_tensor_maps",
      [](const std::string& kernel_name, const std::vector<int64_t>& records,
         int64_t num_buffers) -> nb::object {
        auto parsed = jtile::ParseTensorMapRecords(
            kernel_name,
            xla::ffi::Span<const int64_t>(records.data(), records.size()),
            num_buffers);
        if (parsed.has_value()) return nb::none();
        return nb::str(parsed.error().message().c_str());
      },
      nb::arg("kernel_name"), nb::arg("records"), nb::arg("num_buffers"),
      "Checks concatenated tensor map records as the handler does before "
      "encoding; returns None, or the handler's error message.");

  m.def(
      "launcher_stats",
      []() {
        nb::dict stats;
        stats["tensor_maps_encoded"] = jtile::TensorMapEncodeCount();
        stats["functions_resolved_at_initialize"] =
            jtile::FunctionsResolvedAtInitialize();
        stats["functions_resolved_at_execute"] =
            jtile::FunctionsResolvedAtExecute();
        return stats;
      },
      "Returns the launcher's counters: CUtensorMaps encoded, and call sites "
      "whose function was looked up at the initialize or the execute stage.");

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
