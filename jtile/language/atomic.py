"""`T.atomic_add`, `T.atomic_max`, `T.atomic_min` and TileLang's two- and four-element
`T.atomic_addx2` / `T.atomic_addx4` on global or shared memory."""

from __future__ import annotations

from jtile.ir.nodes import AtomicAdd, Buffer, Const, Load, Region
from jtile.ir.types import DType, MemorySpace
from jtile.trace.builder import current
from jtile.trace.indexing import as_region, coerce
from jtile.trace.source import caller_location
from jtile.language.allocate import alloc_var
from jtile.language.copy import head_region

ATOMIC_DTYPES = (DType.float32, DType.float64, DType.float16, DType.bfloat16, DType.int32,
                 DType.uint32, DType.uint64)
# max/min: native atom.max/min for 32/64-bit ints; floats through the integer-ordering trick,
# 16-bit floats through a compare-and-swap loop (jtile/atomic.cuh).
MINMAX_DTYPES = (DType.float32, DType.float64, DType.float16, DType.bfloat16, DType.int32,
                 DType.uint32, DType.int64, DType.uint64)
_DTYPES = {"add": ATOMIC_DTYPES, "max": MINMAX_DTYPES, "min": MINMAX_DTYPES}
# CUDA's atomicAdd/Max/Min are relaxed; stronger orders would need fences jtile does not emit.
_MEMORY_ORDERS = (None, "relaxed")


def atomic_add(dst, value, memory_order=None, return_prev=False, use_tma=False, annotations=None):
    """dst += value atomically (atom/red.add; f16 sm_70+, bf16 sm_80+).

    `dst` is one element of a global or shared buffer (`C[i, j]`, or a one-element buffer) with
    a scalar `value`, or a tile (buffer, slice or head address) with a tile `value` of the same
    shape (a buffer, slice or fragment): each element is added atomically. Element form inside
    or outside T.Parallel; tile form outside it. dtypes: float32/64, float16, bfloat16, int32,
    uint32, uint64. memory_order may be None or "relaxed" (what CUDA's atomics are).

    `return_prev=True` (element form, in per-thread code outside T.Parallel) returns the
    element's value from just before this thread's update, as TileLang's: threads adding 1 to
    one counter each get a distinct slot. Interpret mode serialises the threads' updates in
    thread order; on a GPU the order is the hardware's.

    A whole shared tile added into a global tile is done by the TMA engine
    (cp.reduce.async.bulk.tensor, one thread issues it, asynchronously) on sm_90+ whenever it can
    address the tile; `use_tma=True` demands it (sm_90+, float32/16, bfloat16, int32, uint32 or
    uint64, a shared tile whose rows are 32, 64 or a multiple of 128 bytes) and is refused where
    it cannot be done. The kernel must not read the destination after such an update.
    """
    return _atomic("add", dst, value, memory_order, return_prev, use_tma, annotations)


def atomic_max(dst, value, memory_order=None, return_prev=False, annotations=None):
    """dst = max(dst, value) atomically (atom.max; floats via the signed/unsigned integer order
    of their bits, 16-bit floats via a CAS loop, sm_70+). NaN values are not supported.

    Forms as `T.atomic_add`. dtypes: float32/64, float16, bfloat16, int32/64, uint32/64.
    """
    return _atomic("max", dst, value, memory_order, return_prev, False, annotations)


def atomic_min(dst, value, memory_order=None, return_prev=False, annotations=None):
    """dst = min(dst, value) atomically (atom.min; see `T.atomic_max` for floats).

    Forms as `T.atomic_add`. dtypes: float32/64, float16, bfloat16, int32/64, uint32/64.
    """
    return _atomic("min", dst, value, memory_order, return_prev, False, annotations)


def _refuse_options(op, builder, loc, memory_order, return_prev, use_tma, annotations):
    if memory_order not in _MEMORY_ORDERS:
        raise builder.error(f"memory_order={memory_order!r} is not supported: jtile's atomics "
                            "are relaxed (memory_order=None or 'relaxed'); order other accesses "
                            "with T.sync_threads", loc, op=op)
    if return_prev and op.startswith("T.atomic_addx"):
        raise builder.error("return_prev=True is not supported on the two- and four-element "
                            "forms; use T.atomic_add(..., return_prev=True) per element", loc,
                            op=op)
    if annotations:
        raise builder.error(f"annotations={annotations!r} are not supported; drop them", loc,
                            op=op)


# What cp.reduce.async.bulk.tensor .add takes (the tensor map's element type).
TMA_REDUCE_DTYPES = (DType.float32, DType.float16, DType.bfloat16, DType.int32, DType.uint32,
                     DType.uint64)


def tma_reduce_operand_problem(value: Buffer, dst: Buffer):
    """Why the TMA engine cannot add `value` into `dst` by their spaces and dtypes (what it
    does, then what it got), or None. Tracing (use_tma=True) and lower_tile_ops both ask."""
    if not value.space.is_shared or dst.space is not MemorySpace.GLOBAL:
        return (f"adds a shared tile into a global one (cp.reduce.async.bulk.tensor); here value "
                f"is {value.describe()} and dst {dst.describe()}")
    if dst.dtype not in TMA_REDUCE_DTYPES or value.dtype is not dst.dtype:
        return (f"adds {[str(d) for d in TMA_REDUCE_DTYPES]} into a global tile of the same "
                f"dtype; here {value.describe()} into {dst.describe()}")
    return None


def _check_tma_reduce(builder, loc, op, dst: Region, value: Region) -> None:
    """use_tma=True: the TMA engine reads a shared tile and adds it into a global tile."""
    problem = tma_reduce_operand_problem(value.buffer, dst.buffer)
    if problem is not None:
        raise builder.error(f"use_tma=True: the TMA engine {problem}. Drop use_tma, or copy "
                            "the value into a T.alloc_shared tile of the destination's dtype",
                            loc, op=op)


def _one_element(region: Region) -> Load:
    return Load(region.buffer, tuple(region.starts), region.buffer.dtype)


def _atomic(kind: str, dst, value, memory_order, return_prev, use_tma, annotations) -> None:
    op = f"T.atomic_{kind}"
    builder = current(op)
    loc = caller_location()
    _refuse_options(op, builder, loc, memory_order, return_prev, use_tma, annotations)
    target = dst.buffer if isinstance(dst, (Load, Region)) else dst
    if not isinstance(target, Buffer) or target.space not in (
            MemorySpace.GLOBAL, MemorySpace.SHARED, MemorySpace.SHARED_DYN):
        raise builder.error("dst must be an element or tile of a global or shared buffer", loc,
                            op=op)
    allowed = _DTYPES[kind]
    if target.dtype not in allowed:
        raise builder.error(f"{target.describe()}: atomic {kind} supports "
                            f"{[str(d) for d in allowed]}", loc, op=op)
    tile_value = isinstance(value, Region) or (
        isinstance(value, Buffer) and value.space is not MemorySpace.VAR)
    if tile_value:
        value_r = as_region(value, "value", loc)
        dst_r = head_region(dst, value_r, builder, loc, op) if isinstance(dst, Load) \
            else as_region(dst, "dst", loc)
        if dst_r.squeezed_shape() != value_r.squeezed_shape():
            raise builder.error(f"dst tile {dst_r.extents} and value tile {value_r.extents} differ",
                                loc, op=op)
        if return_prev:
            raise builder.error("return_prev=True returns one element's previous value; a tile "
                                "update has no single one. Update one element at a time", loc,
                                op=op)
        if use_tma:
            _check_tma_reduce(builder, loc, op, dst_r, value_r)
        builder.emit(AtomicAdd(dst_r, value_r, loc, kind, use_tma=bool(use_tma)))
        return None
    if use_tma:
        raise builder.error("use_tma=True adds a whole shared tile into a global one with the "
                            "TMA engine (cp.reduce.async.bulk.tensor); an element update has no "
                            "tile to send. Drop use_tma", loc, op=op)
    if not isinstance(dst, Load):
        region = as_region(dst, "dst", loc)
        if any(extent != 1 for extent in region.extents):
            raise builder.error(
                f"a scalar value needs one element as dst, e.g. C[i, j]; {target.describe()} "
                f"tile {tuple(region.extents)} would need the value broadcast. Use a T.Parallel "
                f"loop with {op} on each element", loc, op=op)
        dst = _one_element(region)
    if not return_prev:
        builder.emit(AtomicAdd(dst, coerce(value, target.dtype), loc, kind))
        return None
    if builder.parallel_depth:
        raise builder.error("return_prev=True inside T.Parallel is not supported: each thread's "
                            "own code (outside T.Parallel) may take the previous value", loc,
                            op=op)
    prev = alloc_var(target.dtype)
    builder.emit(AtomicAdd(dst, coerce(value, target.dtype), loc, kind, prev))
    return Load(prev, (Const(0, DType.int32),), target.dtype)


def atomic_addx2(dst, value, return_prev=False):
    """TileLang's two-element atomic add: `dst[k] += value[k]` for the two consecutive elements
    that start at the element addresses `dst` and `value` (`T.atomic_addx2(C[i, j], x[i, j])`),
    or in two-element slices (`C[i, j:j + 2]`).

    Each element is added atomically (red.add per element, so any dtype `T.atomic_add` takes,
    any arch); the pair is not one indivisible transaction. Use it inside or outside
    T.Parallel, like the element form of `T.atomic_add`. `return_prev=True` is refused.
    """
    _atomic_consecutive(2, dst, value, return_prev)


def atomic_addx4(dst, value, return_prev=False):
    """TileLang's four-element atomic add: `T.atomic_addx2` over four consecutive elements."""
    _atomic_consecutive(4, dst, value, return_prev)


def _atomic_consecutive(n: int, dst, value, return_prev) -> None:
    op = f"T.atomic_addx{n}"
    builder = current(op)
    loc = caller_location()
    _refuse_options(op, builder, loc, None, return_prev, False, None)
    targets = _consecutive(n, dst, "dst", builder, loc, op)
    values = _consecutive(n, value, "value", builder, loc, op)
    buffer = targets[0].buffer
    if buffer.space not in (MemorySpace.GLOBAL, MemorySpace.SHARED, MemorySpace.SHARED_DYN):
        raise builder.error(f"dst {buffer.describe()} must be in global or shared memory", loc,
                            op=op)
    if buffer.dtype not in ATOMIC_DTYPES:
        raise builder.error(f"{buffer.describe()}: atomic add supports "
                            f"{[str(d) for d in ATOMIC_DTYPES]}", loc, op=op)
    for target, addend in zip(targets, values):
        builder.emit(AtomicAdd(target, coerce(addend, buffer.dtype), loc, "add"))


def _consecutive(n: int, where, role: str, builder, loc, op) -> list:
    """The `n` elements that start at an element address `X[..., j]`, or fill a slice or
    buffer of `n` elements along its last dimension, as loads."""
    if isinstance(where, Buffer) and where.space is not MemorySpace.VAR:
        where = as_region(where, role, loc)
    if isinstance(where, Region):
        extents = tuple(where.extents)
        if not extents or extents[-1] != n or any(e != 1 for e in extents[:-1]):
            raise builder.error(f"{role} is the {where.buffer.describe()} tile {extents}; "
                                f"expected {n} consecutive elements along the last dimension "
                                f"(an element address X[i, j] or a slice X[i, j:j + {n}])", loc,
                                op=op)
        where = Load(where.buffer, tuple(where.starts), where.buffer.dtype)
    if not isinstance(where, Load) or not where.indices:
        raise builder.error(f"{role} must be the address of {n} consecutive buffer elements, "
                            f"e.g. X[i, j] or X[i, j:j + {n}]; got {where!r}", loc, op=op)
    buffer, head, last = where.buffer, tuple(where.indices[:-1]), where.indices[-1]
    if isinstance(last, Const) and last.value + n > buffer.shape[-1]:
        raise builder.error(f"{role} {buffer.describe()}: elements {last.value}..{last.value + n - 1}"
                            f" of the last dimension pass its end ({buffer.shape[-1]})", loc,
                            op=op)
    return [Load(buffer, head + ((Const(last.value + k, last.dtype) if isinstance(last, Const)
                                  else last + k),), buffer.dtype) for k in range(n)]
