"""Inclusive scans of tiles: `T.cumsum` and `T.cummax`."""

from __future__ import annotations

from jtile.errors import JtileShapeError
from jtile.ir.nodes import Buffer, Copy, Load, Scan, full_region
from jtile.ir.types import MemorySpace
from jtile.trace.builder import current
from jtile.trace.indexing import as_region
from jtile.trace.source import caller_location


def _scan(op: str, src, dst, dim: int, reverse: bool, annotations) -> None:
    what = f"T.cum{op}"
    builder = current(what)
    loc = caller_location()
    if annotations:
        raise builder.error(f"annotations={annotations!r} are not supported; drop them", loc,
                            op=what)
    if isinstance(src, Load) or isinstance(dst, Load):
        raise builder.error("src and dst must be buffers or slices (X[a:b, ...]), not single "
                            "elements", loc, op=what)
    src_r = as_region(src, "src", loc)
    dst_r = src_r if dst is None else as_region(dst, "dst", loc)
    rank = len(src_r.extents)
    if not -rank <= dim < rank:
        raise builder.error(f"dim={dim} is out of range for the {rank}-D tile "
                            f"{src_r.buffer.describe()}", loc, op=what)
    dim %= rank
    if tuple(src_r.extents) != tuple(dst_r.extents):
        raise builder.error(f"dst tile {tuple(dst_r.extents)} of {dst_r.buffer.name} must have "
                            f"src's shape {tuple(src_r.extents)} ({src_r.buffer.name})", loc,
                            op=what, cls=JtileShapeError)
    if src_r.dtype is not dst_r.dtype:
        raise builder.error(f"src {src_r.buffer.describe()} and dst {dst_r.buffer.describe()} "
                            "must have one dtype", loc, op=what, cls=JtileShapeError)
    for region, role in ((src_r, "src"), (dst_r, "dst")):
        space = region.buffer.space
        if not (space.is_shared or space is MemorySpace.FRAGMENT):
            raise builder.error(f"{role} {region.buffer.describe()} must be a shared tile or a "
                                "fragment", loc, op=what)
        if space is MemorySpace.FRAGMENT and tuple(region.extents) != tuple(region.buffer.shape):
            raise builder.error(f"{role} is a slice of fragment {region.buffer.describe()}; "
                                "scan whole fragments (or slices of shared tiles)", loc, op=what)
        if op == "sum" and region.dtype.is_bool:
            raise builder.error(f"{role} {region.buffer.describe()}: cumsum of bool is not "
                                "defined; cast to an integer first", loc, op=what)
    if src_r.buffer.space.is_shared and dst_r.buffer.space.is_shared:
        builder.emit(Scan(op, src_r, dst_r, dim, bool(reverse), loc))
        return
    # A fragment side goes through a shared tile, as TileLang's cumsum does.
    stage = Buffer(builder.fresh_name(f"{src_r.buffer.name}_scan"), tuple(src_r.extents),
                   src_r.dtype, MemorySpace.SHARED_DYN, loc)
    builder.add_allocation(stage)
    stage_r = full_region(stage)
    builder.emit(Copy(src_r, stage_r, loc))
    builder.emit(Scan(op, stage_r, stage_r, dim, bool(reverse), loc))
    builder.emit(Copy(stage_r, dst_r, loc))


def cumsum(src, dst=None, dim=0, reverse=False, annotations=None):
    """Inclusive prefix sum of a tile along `dim`: dst[..., i, ...] = sum(src[..., :i+1, ...]).

    Args:
        src: a shared tile or fragment (a buffer or a slice `X[a:b, ...]`).
        dst: where the result goes, same shape and dtype (default: `src`, in place).
        dim: the scanned dimension (negative counts from the end).
        reverse: scan from the end (dst[i] = sum(src[i:])).

    Shared tiles are scanned in place in shared memory, one thread per line along `dim`;
    fragments are staged through a shared tile, as in TileLang. Any arch (sm_80+).
    """
    _scan("sum", src, dst, dim, reverse, annotations)


def cummax(src, dst=None, dim=0, reverse=False, annotations=None):
    """Inclusive running maximum of a tile along `dim`; arguments as `T.cumsum`."""
    _scan("max", src, dst, dim, reverse, annotations)
