"""`T.Persistent`: TileLang's hand-written persistent tile loop.

A kernel launched with a fixed number of blocks (one per SM, say) walks the tiles of a domain
wave by wave: in wave `w`, block `index` takes tile `w * wave_size + index`. As in TileLang,
the last axis of the domain is grouped by `group_size` (rasterisation: consecutive tiles share
the other coordinates across `group_size` neighbours of the last one), and the tiles the
grouping pads in are skipped.
"""

from __future__ import annotations

import math

import numpy as np

from jtile.ir.nodes import Expr, For, LoopKind, as_expr
from jtile.language import math as tile_math
from jtile.language.control import If
from jtile.language.kernel import ceildiv
from jtile.language.loops import _body_once
from jtile.trace.builder import current
from jtile.trace.source import caller_location


def _static(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def Persistent(domain, wave_size, index, group_size=8):
    """`for bx, by in T.Persistent([tiles_m, tiles_n], wave_size, block_id):` yields the tile
    coordinates this block handles, one tile per wave (a single axis yields one index).

    With `g = max(1, min(group_size, domain[-1]))`, the tile order is that of the grouped
    domain `[ceil(domain[-1] / g), *domain[:-1], g]` in row-major order: tile `t` has last
    coordinate `t0 * g + t_last` and the other coordinates in between, as TileLang's
    `PersistentFor` lays them out.
    """
    builder = current("T.Persistent")
    loc = caller_location()
    domain = list(domain) if isinstance(domain, (list, tuple)) else [domain]
    if not domain:
        raise builder.error("T.Persistent needs a non-empty domain of tile counts", loc)
    for extent in domain:
        if not (_static(extent) or isinstance(extent, Expr)) or (_static(extent) and extent <= 0):
            raise builder.error(f"T.Persistent domain {domain}: extents must be positive ints", loc)
    if not _static(group_size) or group_size <= 0:
        raise builder.error(f"T.Persistent group_size={group_size!r} must be a positive Python "
                            "int", loc)
    last = domain[-1]
    if _static(last):
        group = max(1, min(int(group_size), int(last)))
    else:
        group = tile_math.max(1, tile_math.min(int(group_size), last))
    grouped = [ceildiv(last, group), *domain[:-1], group]
    padded = math.prod(grouped) if all(_static(e) for e in grouped) else _product(grouped)
    waves = ceildiv(padded, wave_size)

    var = builder.new_var("w")
    with builder.block() as body:
        flat = var * wave_size + index
        rem = flat
        digits = [None] * len(grouped)
        for axis in range(len(grouped) - 1, 0, -1):
            digits[axis] = rem % grouped[axis]
            rem = rem // grouped[axis]
        digits[0] = rem
        last_coord = digits[0] * group + digits[-1]
        coords = [digits[axis + 1] for axis in range(len(domain) - 1)] + [last_coord]
        with If((flat < padded) & (last_coord < last)):
            yield from _body_once(tuple(coords) if len(coords) > 1 else coords[0], builder,
                                  "T.Persistent", loc)
    builder.emit(For(var, as_expr(0), as_expr(waves), tuple(body), LoopKind.SERIAL, 0, 1, loc))


def _product(extents):
    total = as_expr(extents[0])
    for extent in extents[1:]:
        total = total * extent
    return total
