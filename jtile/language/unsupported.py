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


_MATH = ("jtile's element-wise math is T.exp, T.exp2, T.exp10, T.log, T.log2, T.log10, "
         "T.log1p, T.sqrt, T.rsqrt, T.abs, T.max, T.min, T.pow, T.hypot, T.sin, T.cos, T.tan, "
         "their inverse (T.atan2 too) and hyperbolic forms, T.tanh, T.sigmoid, T.erf, T.floor, "
         "T.ceil, T.round, T.nearbyint, T.trunc, T.copysign, T.fmod, T.floordiv, T.floormod "
         "and T.cast")
_SHUFFLE = ("the set of active lanes is not modelled: use the full-warp operations (T.shfl_*, "
            "T.warp_reduce_*, T.any_sync / T.all_sync / T.ballot_sync), which every lane of "
            "the warp reaches")
_RAW = "jtile generates all device code itself; express the computation with T. operations"

# TileLang names that jtile leaves out on purpose, and what to use instead.
_INSTEAD = {
    "alloc_cluster_barrier": "cluster-scope mbarriers are not supported; use T.alloc_barrier",
    "atomic_load": "jtile has T.atomic_add, T.atomic_max and T.atomic_min; order reads after "
                   "writes with T.sync_threads",
    "atomic_store": "jtile has T.atomic_add, T.atomic_max and T.atomic_min; a plain store "
                    "`X[i] = v` is single-copy atomic for 32-bit and smaller aligned values",
    "atomic_or": "jtile has T.atomic_add, T.atomic_max and T.atomic_min",
    "atomic_and": "jtile has T.atomic_add, T.atomic_max and T.atomic_min",
    "dp4a": "cast the four int8 values of each operand to int32 and add their products in "
            "T.Parallel (or T.serial), accumulating in an int32 buffer",
    "gemm_sp": "sparse tensor-core gemm is not supported; use T.gemm on dense tiles",
    "sync_global": "grid-wide synchronisation is not supported; split the work into two kernels",
    "activemask": _SHUFFLE,
    "call_extern": "jtile cannot call external device functions; " + _RAW,
    "call_pure_extern": "jtile cannot call external device functions; " + _RAW,
    "call_intrin": _RAW,
    "import_source": "jtile does not compile user CUDA source into a kernel; " + _RAW,
    "ptr": "raw pointers are not supported; pass each array as a T.Tensor parameter (several "
           "arrays of one kind can be concatenated in JAX and indexed with offsets)",
    "make_tensor_from_addr": _RAW,
    "print": "use jtile.pallas_like(..., debug=True) to see the IR and CUDA, and interpret=True "
             "to inspect values on the CPU",
    "device_assert": "check inputs in JAX before the call; interpret=True runs the kernel on "
                     "the CPU for debugging",
    "fabs": "use T.abs; " + _MATH,
    "nextafter": _MATH, "ldexp": "use x * T.exp2(T.cast(e, x.dtype)); " + _MATH,
}

_INDEX = ("derive it from the thread index: `tx = T.get_thread_binding()`, lane `tx % 32`, "
          "warp `tx // 32`, warpgroup `tx // 128`")
_HOPPER = ("jtile plans TMA, mbarrier rings, wgmma, warp specialisation and register "
           "reallocation itself (sm_90a) from a T.Pipelined loop of T.copy and T.gemm; write that")
_TCGEN05 = ("jtile does not generate tcgen05 / TMEM MMAs yet (T.gemm on sm_100a runs on "
            "mma.sync); write a T.Pipelined loop of T.copy and T.gemm")
_ASYNC_COPY = ("write T.copy from global to shared memory, in a T.Pipelined loop to overlap it "
               "with compute: jtile issues cp.async (sm_80) or TMA (sm_90a) with their commit "
               "groups, waits and barriers itself")
_PERSISTENT = ("jtile's compiler turns a kernel's grid into a persistent tile loop itself "
               "(JTILE_PERSISTENT=1); write the plain T.Kernel grid")
_INSTEAD.update({
    "get_thread_bindings": "use T.get_thread_binding(dim) per dimension",
    "get_block_bindings": "use T.get_block_binding(dim) per dimension",
    "KernelLaunchFrame": "use `with T.Kernel(...) as (bx, by):`",
    "StridedTensor": "pass a contiguous array (transpose it in JAX), or index with strides",
    "make_tensor": "use a T.Tensor parameter, or T.view / T.Tensor(shape, dtype, buf.data) "
                   "for a view of a buffer",
    "deallocate_tmem": "TMEM is released by the compiler at the end of the kernel",
    "gemm_v1": "use T.gemm (jtile picks the instruction)",
    "gemm_v2": "use T.gemm (jtile picks the instruction)",
    "gemm_sp_v2": "sparse tensor-core gemm is not supported; use T.gemm on dense tiles",
    "PersistentTileScheduler": "write the loop with T.Persistent(domain, wave_size, "
                               "block_id), or " + _PERSISTENT,
    "loop_break": "use a T.serial loop with a T.If around its body, or T.While with a condition",
    "popcount": "count bits with shifts and & in T.Parallel",
    "Let": "bind a Python name to the expression",
    "any_of": "combine the conditions with |", "all_of": "combine the conditions with &",
    "annotate_safe_value": "jtile bounds-checks copies itself; out-of-range reads give zeros",
    "annotate_l2_hit_ratio": "L2 policies are chosen by the compiler",
    "annotate_restrict_buffers": "every jtile kernel parameter is already __restrict__",
    "uint4": "pack two 4-bit values into uint8 and unpack with shifts and &",
    "int1": "use T.bool",
    "sync_warp": "use T.sync_threads (jtile schedules warp-level synchronisation itself)",
    "mbarrier_arrive_expect_tx": "TMA transaction counts are planned by the compiler; for your "
                                 "own barriers use T.mbarrier_expect_tx then T.mbarrier_arrive",
    "ptx_arrive_barrier": "use T.mbarrier_arrive",
    "cluster_sync": "cluster synchronisation is placed by the compiler for T.Kernel(cluster_dims=)",
    "get_lane_idx": _INDEX, "get_warp_idx": _INDEX, "get_warp_idx_sync": _INDEX,
    "get_warp_group_idx": _INDEX, "shuffle_elect": _INDEX,
    "initialize_wgmma_descriptor": _HOPPER,
    "ptx_wgmma_ss": _HOPPER, "ptx_wgmma_rs": _HOPPER, "initialize_tcgen05_descriptor": _TCGEN05,
    "ptx_tcgen05_mma_ss": _TCGEN05, "ptx_tcgen05_mma_ts": _TCGEN05, "tcgen05_mma_arrive": _TCGEN05,
    "copy_tmem": _TCGEN05, "tmem_load": _TCGEN05, "tmem_store": _TCGEN05,
    "tma_load": _HOPPER, "tma_store": _HOPPER, "tma_store_arrive": _HOPPER,
    "tma_store_wait": _HOPPER, "create_tma_descriptor": _HOPPER,
    "warpgroup_arrive": _HOPPER, "warpgroup_commit_batch": _HOPPER, "warpgroup_wait": _HOPPER,
    "warpgroup_fence_operand": _HOPPER,
    "ptx_cp_async_barrier": "use T.cp_async_barrier_noinc(barrier) on a T.alloc_barrier "
                            "mbarrier, or T.ptx_commit_group + T.ptx_wait_group",
    "async_copy": _ASYNC_COPY, "ptx_cp_async_bulk": _ASYNC_COPY,
    "thread_binding": "open the kernel with `with T.Kernel(grid, threads=n) as bx:` and read "
                      "the thread index with `tx = T.get_thread_binding()`",
    "launch_thread": "open the kernel with `with T.Kernel(grid, threads=n) as bx:` and read "
                     "the thread index with `tx = T.get_thread_binding()`",
    "tvm_warp_activemask": _SHUFFLE,
    "match_buffer": "declare the array as a parameter annotated T.Tensor(shape, dtype); for a "
                    "view of a buffer use T.view or T.Tensor(shape, dtype, buf.data)",
})


def _is_tilelang_intrinsic(name: str) -> bool:
    """TileLang's CUDA intrinsics `T.__ldg`, `T.__exp`, ...: two leading underscores and a
    plain name (dunders like `__path__` are Python's own probes)."""
    return name.startswith("__") and name[2:].isidentifier() and "__" not in name[2:]


def _ieee_hint(name: str):
    if name.startswith("ieee_"):
        return ("IEEE operations with an explicit rounding mode are not supported; write the "
                "arithmetic with + - * / (round to nearest even)")
    return None


def _intrinsic_hint(name: str):
    if not _is_tilelang_intrinsic(name):
        return None
    if name == "__ldg":
        return ("read the element as `X[i]`: jtile loads inputs it only reads through the "
                "read-only cache itself")
    return (f"CUDA's fast-math intrinsic {name} is chosen by the compiler where precision "
            f"allows; {_MATH}")


def missing_attribute(name: str):
    """Module `__getattr__` of jtile.language: refuse `T.<name>` with a JtileError."""
    if name.startswith("_") and not _is_tilelang_intrinsic(name):
        raise AttributeError(f"module 'jtile.language' has no attribute {name!r}")
    hint = _INSTEAD.get(name) or _intrinsic_hint(name) or _ieee_hint(name)
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
