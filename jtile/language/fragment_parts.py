"""`T.copy` / `T.fill` on part of a fragment (`T.copy(acc[:rows, :], O_shared)`, a row
`lse[k, :]`), as TileLang allows: a T.Parallel loop over the whole fragment whose iterations
inside the part move their element. The loop keeps every fragment access at the loop
variables, so the fragment's layout is chosen as for any element-wise loop."""

from __future__ import annotations

from jtile.ir.affine import static_value
from jtile.ir.nodes import Load, Region, Store
from jtile.ir.types import MemorySpace
from jtile.language.control import If
from jtile.language.loops import Parallel
from jtile.trace.indexing import coerce


def is_fragment_part(region: Region) -> bool:
    """A tile of a fragment smaller than the fragment (a reducer stays whole)."""
    buf = region.buffer
    return buf.space is MemorySpace.FRAGMENT and buf.reducer_op is None and \
        tuple(region.extents) != tuple(buf.shape)


def _inside(region: Region, index: tuple):
    """The condition that `index` (of the region's buffer) lies in the region; None when the
    region spans the whole buffer along every dimension."""
    condition = None
    for dim, (i, start, extent) in enumerate(zip(index, region.starts, region.extents)):
        if static_value(start) == 0 and extent == region.buffer.shape[dim]:
            continue   # the whole dimension
        term = (i >= start) & (i < start + extent)
        condition = term if condition is None else condition & term
    return condition


def _matching_index(part: Region, index: tuple, other: Region) -> tuple:
    """The element of `other` that element `index` of the fragment part pairs with: the
    non-unit dimensions of the two tiles correspond in order."""
    offsets = [i - start for i, start, extent in zip(index, part.starts, part.extents)
               if extent != 1]
    out = []
    for start, extent in zip(other.starts, other.extents):
        out.append(start + offsets.pop(0) if extent != 1 else start)
    return tuple(out)


def _loop_index(buf):
    for index in Parallel(*buf.shape):
        yield index if isinstance(index, tuple) else (index,)


def copy_fragment_part(src: Region, dst: Region, builder, loc) -> None:
    """Element by element, the copy between a fragment part and the other tile."""
    part, other = (src, dst) if is_fragment_part(src) else (dst, src)
    for index in _loop_index(part.buffer):
        with If(_inside(part, index)):
            paired = _matching_index(part, index, other)
            s_index, d_index = (index, paired) if part is src else (paired, index)
            value = Load(src.buffer, s_index, src.buffer.dtype)
            builder.emit(Store(dst.buffer, d_index, coerce(value, dst.buffer.dtype), loc))


def fill_fragment_part(region: Region, value, builder, loc) -> None:
    """Element by element, the fill of a fragment part."""
    for index in _loop_index(region.buffer):
        with If(_inside(region, index)):
            builder.emit(Store(region.buffer, index, coerce(value, region.buffer.dtype), loc))
