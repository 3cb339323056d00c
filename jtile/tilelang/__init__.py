"""The `tilelang` module's helpers that kernel code calls, for TileLang programs ported with
`import jtile.tilelang as tilelang` beside `import jtile.language as T`.

TileLang's examples call a few host-side helpers of the `tilelang` package inside their kernel
factories and bodies: `tilelang.cdiv`, `tilelang.next_power_of_2` (also under
`tilelang.math`) and the shared-memory swizzles of `tilelang.layout`. They are here with
TileLang's meaning, and `tilelang.language` is jtile's tile language. What launches and tunes
kernels in TileLang (`tilelang.jit`, `tilelang.compile`, `tilelang.profiler`,
`tilelang.autotune`, ...) is jtile.pallas_like's job: asking for it raises a JtileError that
says so, as does any other name. The one submodule kernel code imports from,
`tilelang.cuda.intrinsics` (its shared-memory swizzle for ldmatrix), is here too; importing any
other submodule raises a JtileError (also a ModuleNotFoundError) naming it.
"""

from __future__ import annotations

import importlib.abc
import sys
import types

from jtile import language
from jtile.errors import JtileError
from jtile.language import unsupported

__all__ = ["cdiv", "next_power_of_2", "math", "layout", "language"]


def cdiv(a: int, b: int) -> int:
    """Ceiling division of two ints (TileLang's `tilelang.cdiv`)."""
    return (a + b - 1) // b


def next_power_of_2(x: int) -> int:
    """The smallest power of 2 that is at least `x` (1 for x <= 1)."""
    return 1 << max(int(x) - 1, 0).bit_length()


math = types.SimpleNamespace(cdiv=cdiv, next_power_of_2=next_power_of_2)

layout = types.SimpleNamespace(
    Layout=language.Layout, Fragment=language.Fragment,
    make_swizzled_layout=language.make_swizzled_layout,
    make_full_bank_swizzled_layout=language.make_full_bank_swizzled_layout,
    make_half_bank_swizzled_layout=language.make_half_bank_swizzled_layout,
    make_quarter_bank_swizzled_layout=language.make_quarter_bank_swizzled_layout,
    make_linear_layout=language.make_linear_layout)

_LAUNCHING = ("jit", "compile", "JITKernel", "profiler", "autotune", "autotuner", "testing",
              "PassConfigKey", "TensorSupplyType", "carver", "tools", "transform", "engine")


def __getattr__(name: str):
    if name.startswith("_"):
        raise AttributeError(f"module 'jtile.tilelang' has no attribute {name!r}")
    if name == "cuda":
        from jtile.tilelang import cuda

        return cuda
    if name in _LAUNCHING:
        hint = ("jtile launches a kernel with jtile.pallas_like(kernel, ...) inside jax.jit, and "
                "tunes one with jtile.autotune; time it with jax (see benchmarks/)")
    else:
        hint = ("jtile.tilelang holds the helpers TileLang kernel code calls (cdiv, "
                "next_power_of_2, math, layout, language, cuda.intrinsics)")
    raise unsupported.JtileUnknownNameError(
        f"tilelang.{name} is TileLang's, but jtile does not implement it: {hint}")


class JtileUnknownModuleError(JtileError, ModuleNotFoundError):
    """An import of a TileLang submodule jtile does not provide. (Its `name` stays unset: the
    import system would otherwise take it, under `from ... import`, for a plain missing
    attribute and drop the message.)"""


class _MissingSubmodules(importlib.abc.MetaPathFinder):
    """Consulted after every other finder: a `jtile.tilelang.*` module none of them found is a
    TileLang module jtile lacks."""

    def find_spec(self, fullname, path, target=None):
        if not fullname.startswith(__name__ + "."):
            return None
        name = "tilelang." + fullname[len(__name__) + 1:]
        raise JtileUnknownModuleError(
            f"{name} is TileLang's, but jtile does not provide it: jtile generates the CUDA "
            "itself (tensor-core instructions, layouts, copies) from T. operations; "
            "jtile.tilelang holds the helpers TileLang kernel code calls (cdiv, "
            "next_power_of_2, math, layout, language, cuda.intrinsics.make_mma_swizzle_layout)")


if not any(isinstance(f, _MissingSubmodules) for f in sys.meta_path):
    sys.meta_path.append(_MissingSubmodules())
