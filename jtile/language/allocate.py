"""Allocation functions, as TileLang's `tilelang.language.allocate` documents them.

Each returns a Buffer bound to the kernel being traced, except `T.empty` (an output) and
`T.alloc_global` (a workspace of the whole call). Shapes are static Python ints. Scope
strings are TileLang's and are parsed into `MemorySpace` here.
"""

from __future__ import annotations

import enum
import linecache
import math
import re

import numpy as np

from jtile.errors import JtileError, JtileTraceError
from jtile.ir.nodes import Buffer, Cast, Expr, as_expr
from jtile.ir.types import DType, MemorySpace, as_dtype, as_memory_space, value_range
from jtile.language.tensor import SymbolicDim
from jtile.trace.builder import current, new_global
from jtile.trace.kernel_sequence import add_workspace
from jtile.trace.source import caller_location

# An mbarrier's pending-arrival count is a 20-bit field (PTX mbarrier.init).
MAX_ARRIVE_COUNT = 2**20 - 1

# TMEM is 128 lanes by 512 columns of 32-bit cells (sm_100+).
TMEM_LANES = 128
TMEM_COLUMNS = 512
TMEM_MIN_COLUMNS = 32


def _shape(value, what: str, loc) -> tuple:
    shape = value if isinstance(value, (tuple, list)) else (value,)
    out = []
    for d in shape:
        if isinstance(d, SymbolicDim):
            d = int(d)   # its value, or the error that says where its value would come from
        if isinstance(d, Expr) or not isinstance(d, (int, np.integer)) or isinstance(d, bool):
            raise current().error(f"{what}: shape {tuple(shape)} must be static Python ints", loc,
                                  cls=JtileTraceError)
        if d <= 0:
            raise current().error(f"{what}: shape {tuple(shape)} has a non-positive dimension",
                                  loc)
        out.append(int(d))
    return tuple(out)


# `name = ...` or `name: annotation = ...` (not `name == ...`): the call on that line names it,
# however the module is imported (`T.alloc_shared`, `alloc_shared`, `allocs[kind]`).
_ASSIGNED_NAME = re.compile(r"^\s*([A-Za-z_]\w*)\s*(?::[^=]*)?=(?!=)")


def _source_name(loc, default: str) -> str:
    """The variable the allocation is assigned to (`acc = T.alloc_fragment(...)` -> "acc")."""
    match = _ASSIGNED_NAME.match(linecache.getline(loc.file, loc.line))
    return match.group(1) if match else default


def _dtype(dtype, what: str, loc) -> DType:
    """`as_dtype`, its error located at the user's T. call."""
    try:
        return as_dtype(dtype)
    except JtileError as error:
        raise current(what).error(f"{what}: {error}", loc) from None


def _space(scope, allowed: tuple, what: str, loc) -> MemorySpace:
    """`as_memory_space`, its error (which lists the allowed scopes) located at the T. call."""
    try:
        return as_memory_space(scope, allowed, what)
    except JtileError as error:
        raise current(what).error(str(error), loc) from None


def _allocate(base: str, shape, dtype, space: MemorySpace, what: str, loc, **extra) -> Buffer:
    builder = current(what)
    buffer = Buffer(builder.fresh_name(_source_name(loc, base)), _shape(shape, what, loc),
                    _dtype(dtype, what, loc), space, loc, **extra)
    return builder.add_allocation(buffer)


def alloc_shared(shape, dtype, scope="shared.dyn"):
    """Allocates a shared-memory tile visible to every thread of the block.

    Args:
        shape: static tile shape.
        dtype: element type.
        scope: "shared.dyn" (default: dynamic shared memory, up to the target's opt-in limit,
            227 KiB on sm_90) or "shared" (static shared memory, 48 KiB at most).
    """
    loc = caller_location()
    current("T.alloc_shared")
    space = _space(scope, (MemorySpace.SHARED_DYN, MemorySpace.SHARED), "T.alloc_shared", loc)
    return _allocate("shared", shape, dtype, space, "T.alloc_shared", loc)


def alloc_local(shape, dtype, scope="local"):
    """Allocates a thread-private array (registers, or local memory when indexed dynamically)."""
    loc = caller_location()
    current("T.alloc_local")
    space = _space(scope, (MemorySpace.LOCAL,), "T.alloc_local", loc)
    return _allocate("local", shape, dtype, space, "T.alloc_local", loc)


def alloc_fragment(shape, dtype, scope="local.fragment"):
    """Allocates a register tile spread over the block's threads.

    Which thread holds which element (the layout) is inferred from the ops that use it:
    `T.gemm` fixes its accumulator layout, reductions and `T.Parallel` loops follow it.
    As in TileLang (where this is `T.alloc_buffer(shape, dtype, scope=scope)`), scope "local"
    gives a thread-private array and "shared.dyn" / "shared" a shared tile instead.
    """
    loc = caller_location()
    current("T.alloc_fragment")
    space = _space(scope, (MemorySpace.FRAGMENT, MemorySpace.LOCAL, MemorySpace.SHARED_DYN,
                           MemorySpace.SHARED), "T.alloc_fragment", loc)
    if space is MemorySpace.LOCAL:
        return alloc_local(shape, dtype, space.value)
    if space is not MemorySpace.FRAGMENT:
        return alloc_shared(shape, dtype, space.value)
    return _allocate("frag", shape, dtype, space, "T.alloc_fragment", loc)


_NO_INIT = object()


def _check_init_fits(init, dtype: DType, loc):
    """An initializer must be representable in the variable's dtype."""
    if isinstance(init, Expr):
        return init
    if not isinstance(init, (int, float, np.generic)) or isinstance(init, np.flexible):
        raise current().error(f"T.alloc_var: init {init!r} is not a number or expression", loc)
    value = init.item() if isinstance(init, np.generic) else init
    if isinstance(value, bool):
        value = int(value)
    if dtype.is_bool:
        if value not in (0, 1):
            raise current().error(f"T.alloc_var: init {value!r} does not fit dtype bool", loc)
        return bool(value)
    low, high = value_range(dtype)
    if dtype.is_int:
        if isinstance(value, float) and not value.is_integer():
            raise current().error(f"T.alloc_var: init {value!r} does not fit dtype {dtype} "
                                  "(not an integer)", loc)
        if not low <= int(value) <= high:
            raise current().error(f"T.alloc_var: init {value!r} does not fit dtype {dtype} "
                                  f"(range {low}..{high})", loc)
        return int(value)
    # Python ints are unbounded: compare before converting, which could overflow.
    if (isinstance(value, int) or math.isfinite(value)) and abs(value) > high:
        raise current().error(f"T.alloc_var: init {value!r} overflows dtype {dtype} "
                              f"(largest finite {high:g})", loc)
    return float(value)


def alloc_var(dtype, *args, scope="local.var", init=None):
    """Allocates a single-element variable (a register), optionally initialised.

    Forms (TileLang's): `alloc_var(dtype)`, `alloc_var(dtype, init)`, `alloc_var(dtype, scope)`
    (a single positional string is the scope), `alloc_var(dtype, init, scope)`,
    `alloc_var(dtype, scope, init=...)`, `alloc_var(dtype, init=...)`. Without an init the
    variable starts at zero. Read it as a scalar (`v + 1`) or `v[0]`; write `v[0] = ...`.
    """
    loc = caller_location()
    builder = current("T.alloc_var")
    positional_init = _NO_INIT
    if len(args) == 1:
        if isinstance(args[0], str):
            if scope != "local.var" and scope != args[0]:
                raise builder.error(f"T.alloc_var: scope given both positionally ({args[0]!r}) "
                                    f"and as scope= ({scope!r})", loc)
            scope = args[0]
        else:
            positional_init = args[0]
    elif len(args) == 2:
        positional_init, scope = args
        if not isinstance(scope, str):
            raise builder.error("T.alloc_var(dtype, init, scope): scope must be a string, got "
                                f"{scope!r}", loc)
    elif len(args) > 2:
        raise builder.error(f"T.alloc_var takes at most 2 positional arguments after dtype "
                            f"(init, scope); got {len(args)}", loc)
    if positional_init is not _NO_INIT and init is not None:
        raise builder.error("T.alloc_var: init given both positionally and as init=", loc)
    if positional_init is not _NO_INIT:
        init = positional_init
    space = _space(scope, (MemorySpace.VAR,), "T.alloc_var", loc)
    dt = _dtype(dtype, "T.alloc_var", loc)
    init_expr = None
    if init is not None:
        init_expr = as_expr(_check_init_fits(init, dt, loc), like=dt)
        if init_expr.dtype is not dt:
            init_expr = Cast(init_expr, dt)
    return _allocate("var", (1,), dt, space, "T.alloc_var", loc, init=init_expr)


def alloc_barrier(arrive_count):
    """Allocates mbarriers in shared memory (sm_90+): one per arrive count.

    Args:
        arrive_count: an int (one barrier) or a list of ints (one barrier each); the number of
            arrivals that complete a phase. Index the result (`bars[i]`) to pick a barrier.
    """
    loc = caller_location()
    builder = current("T.alloc_barrier")
    counts = list(arrive_count) if isinstance(arrive_count, (list, tuple)) else [arrive_count]
    if not counts:
        raise builder.error("T.alloc_barrier: the list of arrive counts is empty; give at least "
                            "one arrive count (one barrier each)", loc)
    for count in counts:
        if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count <= 0:
            raise builder.error(
                f"T.alloc_barrier: arrive count {count!r} must be a positive Python int", loc)
        if count > MAX_ARRIVE_COUNT:
            raise builder.error(f"T.alloc_barrier: arrive count {count} is too large; an "
                                f"mbarrier counts at most {MAX_ARRIVE_COUNT} arrivals", loc)
    return _allocate("bar", (len(counts),), DType.uint64, MemorySpace.BARRIER,
                     "T.alloc_barrier", loc, arrive_counts=tuple(int(c) for c in counts))


def tmem_columns(shape: tuple, dtype: DType) -> int:
    """Number of 32-bit TMEM columns a (lanes, columns) buffer of `dtype` occupies."""
    return shape[1] * dtype.bits // 32


def alloc_tmem(shape, dtype):
    """Allocates Blackwell tensor memory (sm_100+) for tcgen05 MMA operands and accumulators.

    TMEM is 128 lanes x 512 columns of 32-bit cells; allocation is by columns, and the column
    count must be a power of 2 between 32 and 512. `shape` is (lanes, columns of dtype).
    """
    loc = caller_location()
    builder = current("T.alloc_tmem")
    shp = _shape(shape, "T.alloc_tmem", loc)
    dt = _dtype(dtype, "T.alloc_tmem", loc)
    if len(shp) != 2:
        raise builder.error(f"T.alloc_tmem: shape {shp} must be 2-D (lanes, columns)", loc)
    if shp[0] > TMEM_LANES:
        raise builder.error(f"T.alloc_tmem: {shp[0]} lanes requested; TMEM has {TMEM_LANES}", loc)
    if (shp[1] * dt.bits) % 32:
        raise builder.error(f"T.alloc_tmem: {shp[1]} columns of {dt} do not fill whole 32-bit "
                            "TMEM columns", loc)
    cols = tmem_columns(shp, dt)
    if cols < TMEM_MIN_COLUMNS or cols > TMEM_COLUMNS or cols & (cols - 1):
        raise builder.error(
            f"T.alloc_tmem: shape {shp} of {dt} needs {cols} TMEM columns; the column count must "
            f"be a power of 2 between {TMEM_MIN_COLUMNS} and {TMEM_COLUMNS}", loc)
    return _allocate("tmem", shp, dt, MemorySpace.TMEM, "T.alloc_tmem", loc)


REDUCER_OPS = ("sum", "max", "min")


def alloc_reducer(shape, dtype, op="sum", replication=None):
    """Allocates a reducer: per-thread partial results combined by `T.finalize_reducer`.

    Fill it with the op's identity (0 for "sum"), update it inside `T.Parallel` with
    `r[i] += x` ("sum") or `r[i] = T.max(r[i], x)` ("max"), then call `T.finalize_reducer(r)`
    before reading it. Every thread keeps its own partial results (TileLang's replication
    "all"); replication "none" is refused.
    """
    loc = caller_location()
    builder = current("T.alloc_reducer")
    if op not in REDUCER_OPS:
        raise builder.error(f"T.alloc_reducer: op {op!r} is not one of {REDUCER_OPS}", loc)
    if replication == "none":
        raise builder.error("T.alloc_reducer(replication='none'): jtile's reducers keep a "
                            "partial result in every thread (replication 'all', the default) "
                            "and combine them in T.finalize_reducer; an unreplicated reducer "
                            "is not supported", loc)
    if replication not in (None, "all"):
        raise builder.error(f"T.alloc_reducer: replication {replication!r} must be 'all' or "
                            "None", loc)
    return _allocate("reducer", shape, dtype, MemorySpace.FRAGMENT, "T.alloc_reducer", loc,
                     reducer_op=op, replication=replication)


class DescKind(str, enum.Enum):
    """Descriptor kinds for `alloc_descriptor`."""

    wgmma = "wgmma"
    tcgen05_smem = "tcgen05_smem"
    tcgen05_instr = "tcgen05_instr"


_DESC_ALIASES = {"wgmma": "wgmma", "tcgen05": "tcgen05_smem", "utcmma": "tcgen05_smem",
                 "tcgen05_smem": "tcgen05_smem", "tcgen05_instr": "tcgen05_instr"}


def _descriptor(kind: str, dtype, loc):
    builder = current("T.alloc_descriptor")
    key = kind.value if isinstance(kind, DescKind) else kind
    if not isinstance(key, str) or key not in _DESC_ALIASES:
        raise builder.error(f"T.alloc_descriptor: kind {kind!r} must be one of 'wgmma', "
                            "'tcgen05' ('utcmma')", loc)
    return _allocate("desc", (1,), dtype, MemorySpace.DESCRIPTOR, "T.alloc_descriptor", loc,
                     descriptor_kind=_DESC_ALIASES[key])


def alloc_descriptor(kind="wgmma", dtype="uint64"):
    """Allocates a matrix descriptor: "wgmma" (sm_90a) or "tcgen05" / "utcmma" (sm_100a)."""
    return _descriptor(kind, dtype, caller_location())


def alloc_wgmma_desc(dtype="uint64"):
    """Allocates a wgmma shared-memory matrix descriptor (sm_90a)."""
    return _descriptor("wgmma", dtype, caller_location())


def alloc_tcgen05_smem_desc(dtype="uint64"):
    """Allocates a tcgen05 shared-memory matrix descriptor (sm_100a)."""
    return _descriptor("tcgen05_smem", dtype, caller_location())


def alloc_tcgen05_instruction_desc(dtype="uint32"):
    """Allocates a tcgen05 instruction descriptor (sm_100a)."""
    return _descriptor("tcgen05_instr", dtype, caller_location())


def alloc_tcgen05_instr_desc(dtype="uint32"):
    """Alias of `alloc_tcgen05_instruction_desc`."""
    return _descriptor("tcgen05_instr", dtype, caller_location())


def empty(shape, dtype="float32"):
    """Declares a kernel output in global memory; call it before `with T.Kernel(...)` and
    return it from the kernel body."""
    loc = caller_location()
    builder = current("T.empty")
    if builder.grid is not None and not builder.implicit_grid:
        raise builder.error("T.empty declares an output and belongs before `with T.Kernel(...)`",
                            loc)
    if builder.declared_out_shape:
        raise builder.error("T.empty is for kernels launched without out_shape=; this launcher "
                            "already passes output buffers", loc)
    dims = shape if isinstance(shape, (tuple, list)) else (shape,)
    if any(isinstance(d, SymbolicDim) and d.bound_value() is None for d in dims):
        # A `T.dynamic` / `T.const` size that a later annotation binds (TileLang binds every
        # symbol from the arguments): the shape is fixed when the kernel opens
        # (`settle_output_shapes`).
        buffer = new_global(builder, _source_name(loc, "out"), (1,) * len(dims),
                            _dtype(dtype, "T.empty", loc), loc)
        builder.unsettled_outputs.append((buffer, tuple(dims), loc))
    else:
        buffer = new_global(builder, _source_name(loc, "out"), _shape(shape, "T.empty", loc),
                            _dtype(dtype, "T.empty", loc), loc)
    builder.outputs.append(buffer)
    return buffer


def settle_output_shapes(builder) -> None:
    """The shapes of `T.empty` outputs declared with sizes not bound yet, now that the
    annotations before the kernel have run (an unbound one is an error naming it)."""
    for buffer, dims, loc in builder.unsettled_outputs:
        buffer.shape = _shape(dims, "T.empty", loc)
    builder.unsettled_outputs.clear()


def alloc_global(shape, dtype, scope="global"):
    """A global-memory workspace that lives for the call (TileLang's `T.alloc_global`).

    Any kernel of the function may write and read it; a later `with T.Kernel(...)` block sees
    what an earlier one wrote (a split-KV decoder's partial outputs and log-sum-exps, say).
    Its contents start undefined (interpret mode: NaN, or -1 for integers). jtile gets the
    memory from JAX: a workspace is an extra, discarded result of the launches that write it,
    and an aliased input of the later launches that use it. Call it anywhere in the function,
    usually before the first `with T.Kernel(...)`. Any arch.

    Args:
        shape: static shape.
        dtype: element type.
        scope: "global".
    """
    loc = caller_location()
    builder = current("T.alloc_global")
    if scope != "global":
        raise builder.error(f"T.alloc_global: scope {scope!r} is not 'global'; on-chip buffers "
                            "come from T.alloc_shared, T.alloc_fragment and T.alloc_local", loc)
    buffer = new_global(builder, _source_name(loc, "workspace"),
                        _shape(shape, "T.alloc_global", loc), _dtype(dtype, "T.alloc_global", loc),
                        loc)
    return add_workspace(builder, buffer)


# T.alloc_buffer(scope=...) -> the allocation function for that scope.
_BUFFER_SCOPES = {
    "shared.dyn": "alloc_shared", "shared": "alloc_shared", "local": "alloc_local",
    "local.fragment": "alloc_fragment", "local.var": "alloc_var", "global": "alloc_global",
}
# Scopes with their own allocation function, whose arguments T.alloc_buffer cannot express.
_DEDICATED_SCOPES = {"shared.barrier": "T.alloc_barrier(arrive_counts)",
                     "shared.tmem": "T.alloc_tmem(shape, dtype)",
                     "local.descriptor": "T.alloc_descriptor(kind)",
                     "local.reducer": "T.alloc_reducer(shape, dtype, op)"}


def alloc_buffer(shape, dtype="float32", data=None, strides=None, elem_offset=None,
                 scope="global", align=-1, offset_factor=0, buffer_type="default",
                 axis_separators=None):
    """TVM's / TileLang's generic `T.alloc_buffer`: the allocation function of `scope`.

    "shared.dyn" and "shared" are `T.alloc_shared`, "local" `T.alloc_local`, "local.fragment"
    `T.alloc_fragment`, "local.var" (shape 1) `T.alloc_var`; "global" (TVM's default scope) is
    `T.alloc_global`, a workspace for the call. Layout arguments (data, strides, elem_offset,
    align, offset_factor, buffer_type, axis_separators) are refused by name: jtile buffers are
    dense and row-major.
    """
    loc = caller_location()
    builder = current("T.alloc_buffer")
    given = {"data": data is not None, "strides": strides is not None,
             "elem_offset": elem_offset is not None, "align": align != -1,
             "offset_factor": offset_factor != 0, "buffer_type": buffer_type != "default",
             "axis_separators": axis_separators is not None}
    for name, is_set in given.items():
        if is_set:
            raise builder.error(f"T.alloc_buffer: argument {name}= is not supported; jtile "
                                "buffers are dense and row-major. For a view of another "
                                "buffer's memory use T.view / T.Tensor(shape, dtype, buf.data) "
                                "where available", loc)
    if scope in _DEDICATED_SCOPES:
        raise builder.error(f"T.alloc_buffer: scope {scope!r} has its own allocation function; "
                            f"use {_DEDICATED_SCOPES[scope]}", loc)
    if scope not in _BUFFER_SCOPES:
        names = ", ".join(repr(s) for s in _BUFFER_SCOPES)
        raise builder.error(f"T.alloc_buffer: scope {scope!r} is not one of {names}", loc)
    kind = _BUFFER_SCOPES[scope]
    if kind == "alloc_global":
        return alloc_global(shape, dtype)
    if kind == "alloc_var":
        if _shape(shape, "T.alloc_buffer", loc) != (1,):
            raise builder.error(f"T.alloc_buffer: scope 'local.var' holds one element; shape "
                                f"{shape} must be (1,). Use scope='local' for an array", loc)
        return alloc_var(dtype)
    allocate = {"alloc_shared": alloc_shared, "alloc_local": alloc_local,
                "alloc_fragment": alloc_fragment}[kind]
    return allocate(shape, dtype, scope)


__all__ = [
    "alloc_shared", "alloc_local", "alloc_fragment", "alloc_var", "alloc_barrier", "alloc_tmem",
    "alloc_reducer", "alloc_descriptor", "alloc_wgmma_desc", "alloc_tcgen05_smem_desc",
    "alloc_tcgen05_instruction_desc", "alloc_tcgen05_instr_desc", "empty", "DescKind",
    "alloc_global", "alloc_buffer",
]
