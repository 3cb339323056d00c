"""`T.<name>` for a name jtile's tile language does not have.

`jtile.language.__getattr__` is this module's `missing_attribute`: it runs only for names the
module lacks and raises `JtileUnknownNameError`, which names the feature and, for TileLang names
jtile leaves out on purpose, says what to use instead. The error is also an `AttributeError`,
so `hasattr(T, name)`, `getattr(T, name, default)` and `from jtile.language import name` keep
working as Python defines them; private and dunder names (which Python's import machinery and
tools probe) get a plain AttributeError.
"""

from __future__ import annotations

from jtile.errors import JtileTraceError
from jtile.ir.types import unsupported_dtype_hint


class JtileUnknownNameError(JtileTraceError, AttributeError):
    """`T.<name>` is not part of jtile's tile language."""


_MATH = ("jtile's element-wise math is T.exp, T.exp2, T.log, T.log2, T.sqrt, T.rsqrt, T.abs, "
         "T.max, T.min, T.tanh, T.sigmoid, T.floordiv, T.floormod and T.cast")
_SHUFFLE = ("warp shuffles and votes are chosen by the compiler; reduce a fragment with "
            "T.reduce_sum / T.reduce_max / T.reduce_min")
_RAW = "jtile generates all device code itself; express the computation with T. operations"

# TileLang names that jtile leaves out on purpose, and what to use instead.
_INSTEAD = {
    "vectorized": "use T.unroll(n) for a per-thread loop or T.Parallel for a tile; jtile "
                  "vectorises the memory accesses of both itself",
    "Vectorized": "use T.unroll(n) for a per-thread loop or T.Parallel for a tile; jtile "
                  "vectorises the memory accesses of both itself",
    "alloc_cluster_barrier": "cluster-scope mbarriers are not supported; use T.alloc_barrier",
    "atomic_addx2": "use T.atomic_add on a tile (jtile picks the vector width) or per element",
    "atomic_addx4": "use T.atomic_add on a tile (jtile picks the vector width) or per element",
    "atomic_load": "jtile has T.atomic_add, T.atomic_max and T.atomic_min; order reads after "
                   "writes with T.sync_threads",
    "atomic_store": "jtile has T.atomic_add, T.atomic_max and T.atomic_min; a plain store "
                    "`X[i] = v` is single-copy atomic for 32-bit and smaller aligned values",
    "atomic_or": "jtile has T.atomic_add, T.atomic_max and T.atomic_min",
    "atomic_and": "jtile has T.atomic_add, T.atomic_max and T.atomic_min",
    "dp4a": "multiply int8 values in T.Parallel and accumulate in int32",
    "gemm_sp": "sparse tensor-core gemm is not supported; use T.gemm on dense tiles",
    "sync_grid": "grid-wide synchronisation is not supported; split the work into two kernels",
    "sync_global": "grid-wide synchronisation is not supported; split the work into two kernels",
    "shfl_xor": _SHUFFLE, "shfl_down": _SHUFFLE, "shfl_up": _SHUFFLE, "shfl_sync": _SHUFFLE,
    "ballot": _SHUFFLE, "ballot_sync": _SHUFFLE, "any_sync": _SHUFFLE, "all_sync": _SHUFFLE,
    "activemask": _SHUFFLE,
    "call_extern": _RAW, "call_intrin": _RAW, "import_source": _RAW, "ptr": _RAW,
    "make_tensor_from_addr": _RAW, "access_ptr": _RAW,
    "print": "use jtile.pallas_like(..., debug=True) to see the IR and CUDA, and interpret=True "
             "to inspect values on the CPU",
    "device_assert": "check inputs in JAX before the call; interpret=True runs the kernel on "
                     "the CPU for debugging",
    "round": _MATH, "floor": _MATH, "ceil": _MATH, "trunc": _MATH, "sin": _MATH, "cos": _MATH,
    "tan": _MATH, "pow": _MATH, "erf": _MATH, "log10": _MATH, "log1p": _MATH, "expm1": _MATH,
    "fabs": _MATH, "fmod": _MATH, "truncdiv": "jtile's `//` on integers truncates toward zero",
    "truncmod": "jtile's `%` on integers truncates toward zero (C's remainder)",
}


def missing_attribute(name: str):
    """Module `__getattr__` of jtile.language: refuse `T.<name>` with a JtileError."""
    if name.startswith("_"):
        raise AttributeError(f"module 'jtile.language' has no attribute {name!r}")
    hint = _INSTEAD.get(name)
    if hint is None:
        dtype_hint = unsupported_dtype_hint(name)
        hint = f"dtype {name} is not supported: {dtype_hint}" if dtype_hint else None
    if hint is not None:
        message = f"T.{name} is TileLang's, but jtile does not implement it: {hint}"
    else:
        message = (f"T.{name} is not part of jtile's tile language; jtile.language.__all__ "
                   "lists what it offers (TileLang's names, where jtile implements them)")
    error = _located(message)
    error.name = name
    raise error


def _located(message: str) -> JtileUnknownNameError:
    """The error, naming the kernel and the user's line when a kernel is being traced."""
    from jtile.trace.builder import active_builder
    from jtile.trace.source import caller_location

    builder = active_builder()
    if builder is None:
        return JtileUnknownNameError(message)
    return builder.error(message, caller_location(), cls=JtileUnknownNameError)
