"""`T.atomic_add`, `T.atomic_max`, `T.atomic_min` on global or shared memory."""

from __future__ import annotations

from jtile.ir.nodes import AtomicAdd, Buffer, Load, Region
from jtile.ir.types import DType, MemorySpace
from jtile.trace.builder import current
from jtile.trace.indexing import as_region, coerce
from jtile.trace.source import caller_location
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
    """
    _atomic("add", dst, value, memory_order, return_prev, use_tma, annotations)


def atomic_max(dst, value, memory_order=None, return_prev=False, annotations=None):
    """dst = max(dst, value) atomically (atom.max; floats via the signed/unsigned integer order
    of their bits, 16-bit floats via a CAS loop, sm_70+). NaN values are not supported.

    Forms as `T.atomic_add`. dtypes: float32/64, float16, bfloat16, int32/64, uint32/64.
    """
    _atomic("max", dst, value, memory_order, return_prev, False, annotations)


def atomic_min(dst, value, memory_order=None, return_prev=False, annotations=None):
    """dst = min(dst, value) atomically (atom.min; see `T.atomic_max` for floats).

    Forms as `T.atomic_add`. dtypes: float32/64, float16, bfloat16, int32/64, uint32/64.
    """
    _atomic("min", dst, value, memory_order, return_prev, False, annotations)


def _refuse_options(op, builder, loc, memory_order, return_prev, use_tma, annotations):
    if memory_order not in _MEMORY_ORDERS:
        raise builder.error(f"memory_order={memory_order!r} is not supported: jtile's atomics "
                            "are relaxed (memory_order=None or 'relaxed'); order other accesses "
                            "with T.sync_threads", loc, op=op)
    if return_prev:
        raise builder.error("return_prev=True is not supported: jtile's atomics are statements "
                            "and return nothing; read the element separately if you need it",
                            loc, op=op)
    if use_tma:
        raise builder.error("use_tma=True (cp.reduce.async.bulk) is not supported; drop it and "
                            "jtile issues per-element atomics", loc, op=op)
    if annotations:
        raise builder.error(f"annotations={annotations!r} are not supported; drop them", loc,
                            op=op)


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
        builder.emit(AtomicAdd(dst_r, value_r, loc, kind))
        return
    if not isinstance(dst, Load):
        region = as_region(dst, "dst", loc)
        if any(extent != 1 for extent in region.extents):
            raise builder.error(
                f"a scalar value needs one element as dst, e.g. C[i, j]; {target.describe()} "
                f"tile {tuple(region.extents)} would need the value broadcast. Use a T.Parallel "
                f"loop with {op} on each element", loc, op=op)
        dst = _one_element(region)
    builder.emit(AtomicAdd(dst, coerce(value, target.dtype), loc, kind))
