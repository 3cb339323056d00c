"""`T.atomic_add` on global or shared memory."""

from __future__ import annotations

from jtile.ir.nodes import AtomicAdd, Buffer, Load, Region
from jtile.ir.types import DType, MemorySpace
from jtile.trace.builder import current
from jtile.trace.indexing import as_region, coerce
from jtile.trace.source import caller_location
from jtile.language.copy import head_region

ATOMIC_DTYPES = (DType.float32, DType.float64, DType.float16, DType.bfloat16, DType.int32,
                 DType.uint32, DType.uint64)


def atomic_add(dst, value, memory_order=None, return_prev=False):
    """dst += value atomically (red.global.add / atomicAdd).

    `dst` is one element (`C[i, j]`, with a scalar `value`) or a tile (buffer, slice or head
    address, with a tile `value` of the same shape: each element is added atomically).
    """
    builder = current("T.atomic_add")
    loc = caller_location()
    op = "T.atomic_add"
    target = dst.buffer if isinstance(dst, (Load, Region)) else dst
    if not isinstance(target, Buffer) or target.space not in (
            MemorySpace.GLOBAL, MemorySpace.SHARED, MemorySpace.SHARED_DYN):
        raise builder.error("dst must be an element or tile of a global or shared buffer", loc,
                            op=op)
    if target.dtype not in ATOMIC_DTYPES:
        raise builder.error(f"{target.describe()}: atomic add supports "
                            f"{[str(d) for d in ATOMIC_DTYPES]}", loc, op=op)
    if isinstance(value, (Buffer, Region)):
        value_r = as_region(value, "value", loc)
        dst_r = head_region(dst, value_r, builder, loc, op) if isinstance(dst, Load) \
            else as_region(dst, "dst", loc)
        if dst_r.squeezed_shape() != value_r.squeezed_shape():
            raise builder.error(f"dst tile {dst_r.extents} and value tile {value_r.extents} differ",
                                loc, op=op)
        builder.emit(AtomicAdd(dst_r, value_r, loc))
        return
    if not isinstance(dst, Load):
        raise builder.error("a scalar value needs one element as dst, e.g. C[i, j]", loc, op=op)
    builder.emit(AtomicAdd(dst, coerce(value, target.dtype), loc))
