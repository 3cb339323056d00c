"""jtile: TileLang-style GPU kernels for JAX, compiled to CUDA and launched through the XLA FFI.

Write the kernel with `import jtile.language as T`, launch it with `jtile.pallas_like`.
"""

from jtile.autotuning import Autotuned, autotune
from jtile.binding import ffi as _ffi
from jtile.binding.lowered import Compiled, Lowered
from jtile.binding.pallas_like import pallas_like
from jtile.errors import (
    JtileCompileError,
    JtileError,
    JtilePerformanceWarning,
    JtileRuntimeError,
    JtileShapeError,
    JtileTargetError,
    JtileTraceError,
)
from jtile import ops

__version__ = "0.1.0"

__all__ = [
    "pallas_like", "Lowered", "Compiled", "JtileError", "JtilePerformanceWarning", "JtileTraceError", "JtileShapeError",
    "JtileTargetError", "JtileCompileError", "JtileRuntimeError", "__version__",
    "autotune", "Autotuned",
]

# The jtile_launch custom call target, registered for CUDA now (nothing is compiled, no GPU is
# touched), so that a deserialised jax.export artifact runs in a process that only imported jtile.
_ffi.register_at_import()
