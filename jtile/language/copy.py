"""Tile data movement: `T.copy`, `T.fill`, `T.clear`.

Element (idx) of a copy reads src and writes dst at the same offset inside their regions.
Reads past the end of a global buffer give zero and writes past it are dropped, so edge tiles
of shapes that are not multiples of the tile need no special code.
"""

from __future__ import annotations

from jtile.ir.nodes import Copy, Fill, Load, Region, Store, full_region
from jtile.language.copy_options import copy_options
from jtile.language.fragment_parts import copy_fragment_part, fill_fragment_part, is_fragment_part
from jtile.ir.types import MemorySpace
from jtile.trace.builder import current
from jtile.trace.indexing import as_region, coerce
from jtile.trace.source import caller_location

_TILE_SPACES = (MemorySpace.GLOBAL, MemorySpace.SHARED, MemorySpace.SHARED_DYN,
                MemorySpace.FRAGMENT, MemorySpace.LOCAL, MemorySpace.VAR)


def head_region(load: Load, like: Region, builder, loc, op) -> Region:
    """TileLang's head address `X[i, j]`: the tile that starts at (i, j) with the other side's
    extents, right-aligned as TileLang aligns them (missing leading dimensions are 1).

    A (64, 32) tile from `B[b, i, j]` is `B[b, i:i+64, j:j+32]`; a (32, 1) column stays a column.
    When those extents do not fit the buffer (more dimensions than it has, or a dimension too
    large), the other side's non-unit extents are right-aligned instead.
    """
    rank = load.buffer.ndim
    extents = tuple(like.extents)
    while len(extents) > rank and extents[0] == 1:   # leading unit dims carry nothing
        extents = extents[1:]
    aligned = (1,) * (rank - len(extents)) + extents
    if len(extents) <= rank and all(e <= n for e, n in zip(aligned, load.buffer.shape)):
        return Region(load.buffer, load.indices, aligned)
    tile = like.squeezed_shape() or (1,)
    if len(tile) > rank:
        raise builder.error(f"the head address {load.buffer.describe()} has {rank} indices but "
                            f"the other side is a {len(tile)}-D tile {tile}", loc, op=op)
    extents = (1,) * (rank - len(tile)) + tuple(tile)
    for dim, (extent, size) in enumerate(zip(extents, load.buffer.shape)):
        # A global tensor smaller than the tile is clipped, as TileLang clips it: elements
        # outside it read as zero and are not written. On-chip buffers must hold the tile.
        if extent > size and load.buffer.space is not MemorySpace.GLOBAL:
            raise builder.error(f"a {tile} tile does not fit in {load.buffer.describe()} "
                                f"(dimension {dim})", loc, op=op)
    return Region(load.buffer, load.indices, extents)


def _check_space(region: Region, role: str, builder, loc, op):
    if region.buffer.space not in _TILE_SPACES:
        raise builder.error(f"{role} {region.buffer.describe()} cannot be copied; T.copy moves "
                            "global, shared, fragment and local tiles", loc, op=op)


def copy(src, dst, coalesced_width=None, disable_tma=False, eviction_policy=None, *,
         prefer_instruction=None, annotations=None, loop_layout=None):
    """Copies the tile `src` into `dst` (casting when dtypes differ).

    Either side may be a buffer, a slice `X[a:b, c:d]` or a head address `X[i, j]` (the tile of
    the other side's shape that starts there, see `head_region`). Non-unit extents must match in
    order. With two head addresses, `T.copy(A[i], B[j])` is the element store `B[j] = A[i]`.
    On sm_80+ global->shared copies become 16-byte cp.async when aligned (inside T.Pipelined,
    multi-stage); other pairs become vectorised loads and stores.
    Options: see `jtile.language.copy_options` (disable_tma and eviction_policy="evict_normal"
    are honoured; the others are refused by name).
    """
    builder = current("T.copy")
    loc = caller_location()
    op = "T.copy"
    options = copy_options(builder, loc, coalesced_width=coalesced_width,
                           disable_tma=disable_tma, eviction_policy=eviction_policy,
                           prefer_instruction=prefer_instruction, annotations=annotations,
                           loop_layout=loop_layout)
    if isinstance(src, Load) and isinstance(dst, Load):
        # Two element addresses: TileLang's scalar copy, the store dst = src (cast to dst's
        # dtype). It runs wherever the call is, like any element store.
        _check_space(full_region(src.buffer), "src", builder, loc, op)
        _check_space(full_region(dst.buffer), "dst", builder, loc, op)
        builder.emit(Store(dst.buffer, dst.indices, coerce(src, dst.buffer.dtype), loc))
        return
    if isinstance(src, Load):
        dst_r = as_region(dst, "dst", loc)
        src_r = head_region(src, dst_r, builder, loc, op)
    elif isinstance(dst, Load):
        src_r = as_region(src, "src", loc)
        dst_r = head_region(dst, src_r, builder, loc, op)
    else:
        src_r, dst_r = as_region(src, "src", loc), as_region(dst, "dst", loc)
    _check_space(src_r, "src", builder, loc, op)
    _check_space(dst_r, "dst", builder, loc, op)
    if src_r.squeezed_shape() != dst_r.squeezed_shape():
        raise builder.error(
            f"src {src_r.buffer.name} tile {tuple(src_r.extents)} and dst {dst_r.buffer.name} tile "
            f"{tuple(dst_r.extents)} differ in shape (unit dimensions aside); expected equal tiles",
            loc, op=op)
    if is_fragment_part(src_r) or is_fragment_part(dst_r):
        copy_fragment_part(src_r, dst_r, builder, loc)
        return
    builder.emit(Copy(src_r, dst_r, loc, **options))


def _fill_region(target, what: str, loc) -> Region:
    """The tile T.fill / T.clear writes: a buffer, a slice, or one element `X[i, j]` (TileLang
    reads an element as a region of extent 1 in every dimension)."""
    if isinstance(target, Load):
        return Region(target.buffer, tuple(target.indices), (1,) * len(target.indices))
    return as_region(target, what, loc)


def fill(buffer, value):
    """Sets every element of a tile (a buffer, a slice, or the one element `X[i, j]`) to
    `value`."""
    builder = current("T.fill")
    loc = caller_location()
    region = _fill_region(buffer, "T.fill target", loc)
    if region.buffer.space not in _TILE_SPACES:
        raise builder.error(f"{region.buffer.describe()} cannot be filled", loc, op="T.fill")
    if is_fragment_part(region):
        fill_fragment_part(region, value, builder, loc)
        return
    builder.emit(Fill(region, coerce(value, region.buffer.dtype), loc))


def clear(buffer):
    """Sets every element of a tile (a buffer, a slice, or one element `X[i, j]`) to zero."""
    builder = current("T.clear")
    loc = caller_location()
    region = _fill_region(buffer, "T.clear target", loc)
    if is_fragment_part(region):
        fill_fragment_part(region, 0, builder, loc)
        return
    builder.emit(Fill(region, coerce(0, region.buffer.dtype), loc))
