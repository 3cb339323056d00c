"""Tile scheduling: the order in which a grid's blocks run.

A warp-specialised wgmma kernel over a large 2-D grid streams A row panels and B column panels
from memory; run in plain x-fastest order, one wave of blocks touches every column panel of B.
Rasterising the grid in panels of `PANEL` rows (TileLang's `T.use_swizzle(PANEL)`, the
compiler's own choice here) makes each wave touch a few rows and a few columns, so tiles are
read from L2 instead of HBM. A kernel that asks for its own order keeps it.
"""

from __future__ import annotations

from jtile.ir import lowered as low
from jtile.ir import nodes as ir

PANEL = 8
MIN_BLOCKS = 256  # below about two waves the order does not matter


def schedule_tiles(kernel: ir.Kernel, target) -> ir.Kernel:
    if kernel.attrs.get("warp_roles") is None or len(kernel.block_vars) < 2:
        return kernel
    if any(isinstance(s, ir.UseSwizzle) for s in kernel.body) or kernel.attrs.get("cluster_dims"):
        return kernel
    gx, gy = kernel.grid[0], kernel.grid[1]
    if gx * gy < MIN_BLOCKS or gy < 2 * PANEL:
        return kernel
    if not any(isinstance(s, low.MbarrierPipeline) for s in kernel.body):
        return kernel
    return kernel.replace(body=(ir.UseSwizzle(PANEL, "row", kernel.loc),) + tuple(kernel.body))
