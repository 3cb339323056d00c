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
    offsets = [i if static_value(start) == 0 else i - start
               for i, start, extent in zip(index, part.starts, part.extents) if extent != 1]
    out = []
    for start, extent in zip(other.starts, other.extents):
        if extent == 1:
            out.append(start)
        else:
            offset = offsets.pop(0)
            out.append(offset if static_value(start) == 0 else start + offset)
    return tuple(out)


def _loop_index(buf):
    for index in Parallel(*buf.shape):
        yield index if isinstance(index, tuple) else (index,)


def _single_slices(region: Region) -> bool:
    """Whether the part picks single indices along some dimensions and spans the others
    whole (a row `lse[k, :]`, a column `acc[:, j]`)."""
    return all(extent == 1 or (static_value(start) == 0 and extent == size)
               for start, extent, size in zip(region.starts, region.extents,
                                              region.buffer.shape))


def _copy_slice(part: Region, other: Region, part_is_src: bool, builder, loc) -> None:
    """A single-index slice moves over its spanned dimensions only: the fragment is indexed
    at the picked (block-uniform) indices and at the loop variables, so a row of a
    (splits, M) fragment copies into an (M,) fragment without a loop over the splits."""
    spanned = [extent for extent in part.extents if extent != 1]
    for loop in Parallel(*spanned) if spanned else [()]:
        loop = loop if isinstance(loop, tuple) else (loop,)
        variables = list(loop)
        index = tuple(start if extent == 1 else variables.pop(0)
                      for start, extent in zip(part.starts, part.extents))
        paired = _matching_index(part, index, other)
        s_index, d_index = (index, paired) if part_is_src else (paired, index)
        src, dst = (part, other) if part_is_src else (other, part)
        value = Load(src.buffer, s_index, src.buffer.dtype)
        builder.emit(Store(dst.buffer, d_index, coerce(value, dst.buffer.dtype), loc))


def copy_fragment_part(src: Region, dst: Region, builder, loc) -> None:
    """Element by element, the copy between a fragment part and the other tile."""
    part, other = (src, dst) if is_fragment_part(src) else (dst, src)
    if other.buffer.space is MemorySpace.FRAGMENT and _single_slices(part) and \
            not (is_fragment_part(other) and not _single_slices(other)):
        # Between two fragments the loop below would index the other one inside a loop over
        # more dimensions than it has; a slice loops over its own extents instead (its
        # fragment then holds the picked dimensions in each thread's registers).
        _copy_slice(part, other, part is src, builder, loc)
        return
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
