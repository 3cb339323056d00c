"""Tile scheduling: the order in which a grid's tiles run, and which block runs each.

Rasterisation. A warp-specialised wgmma kernel over a large 2-D grid streams A row panels and
B column panels from memory; run in plain x-fastest order, one wave of blocks touches every
column panel of B. Rasterising the grid in panels of `PANEL` rows (TileLang's
`T.use_swizzle(PANEL)`, the compiler's own choice here) makes each wave touch a few rows and a
few columns, so tiles are read from L2 instead of HBM. A kernel that asks for its own order
keeps it.

Persistence. When every tile does the same work (the ring's trip count does not depend on the
block indices), the kernel becomes a persistent tile loop (`kernel.attrs["persistent"]`): as
many blocks as the GPU has SMs each run tiles blockIdx.x, blockIdx.x + gridDim.x, ... over the
x-y grid, and the stage ring runs on across tiles, so the producer warpgroup loads the next
tile's first stages while the consumers still store the last tile's results. Tiles of unequal
work (a causal mask's loop bound) keep one block per tile: the hardware's dynamic scheduling
balances them better than a fixed round-robin. When the ring cannot stay resident beside the
epilogue's staged stores, `plan_shared_memory` stores the fragments directly, or, when even
that does not fit, drops persistence.

Which kernels. Persistence pays where the epilogue is a large share of a tile's time and the
producer can load the next tile meanwhile without giving anything up: a GEMM main loop (one
T.gemm per stage) whose stores leave through TMA stores of two column panels at a time beside
the full ring (`plan_shared_memory` checks that, `persistent_if_staged`, and runs one block per
tile otherwise). Measured on an H200, such 128x256 GEMMs ran 0.2-3.6% faster than one block per
tile, while a 256x128 tile storing its fragments directly (before it got one panel slot, its
two panels being the whole 64 KiB output) ran 4-7% slower; persistent attention (two GEMMs a stage), its output
through panel slots too, ran 0.97x (head dim 64) and 1.01x (128) one block per tile.
`JTILE_PERSISTENT=1` makes every eligible kernel persistent, `=0` none.
"""

from __future__ import annotations

from jtile import config
from jtile.ir import lowered as low
from jtile.ir import nodes as ir
from jtile.ir.walk import statements, sub_expressions

PANEL = 8
MIN_BLOCKS = 256  # below about two waves the order does not matter


def remappable_cluster(cluster_dims) -> bool:
    """Whether the T.use_swizzle remap can move the kernel's clusters whole: none, or clusters
    spanning x or y (not both, not z)."""
    cluster = tuple(cluster_dims or ()) + (1, 1, 1)
    return cluster[2] == 1 and not (cluster[0] > 1 and cluster[1] > 1)


def _rasterise(kernel: ir.Kernel) -> ir.Kernel:
    if len(kernel.block_vars) < 2:
        return kernel
    if any(isinstance(s, ir.UseSwizzle) for s in kernel.body):
        return kernel
    if not remappable_cluster(kernel.attrs.get("cluster_dims")):
        return kernel
    cluster = tuple(kernel.attrs.get("cluster_dims") or ()) + (1, 1)
    gx, gy = kernel.grid[0] // cluster[0], kernel.grid[1] // cluster[1]
    if gx * gy < MIN_BLOCKS or gy < 2 * PANEL:
        return kernel
    return kernel.replace(body=(ir.UseSwizzle(PANEL, "row", kernel.loc),) + tuple(kernel.body))


def _uniform_work(pipe: low.MbarrierPipeline, kernel: ir.Kernel) -> bool:
    """Whether the ring's trip count is the same for every block."""
    block_vars = set(kernel.block_vars)
    for x in sub_expressions(ir.as_expr(pipe.extent)):
        if isinstance(x, ir.Load) or (isinstance(x, ir.Var) and x in block_vars):
            return False
    return True


def _persistent(kernel: ir.Kernel) -> bool:
    pipes = [s for s in kernel.body if isinstance(s, low.MbarrierPipeline)]
    if len(pipes) != 1 or not pipes[0].producer_threads or kernel.attrs.get("cluster_dims"):
        return False
    grid = tuple(kernel.grid) + (1,) * (3 - len(kernel.grid))
    return grid[0] * grid[1] > 1 and _uniform_work(pipes[0], kernel)


def _gemm_main_loop(kernel: ir.Kernel) -> bool:
    """Whether the kernel's stage ring feeds one tensor-core GEMM per stage."""
    pipe = next(s for s in kernel.body if isinstance(s, low.MbarrierPipeline))
    gemms = [s for s in statements(pipe.body) if isinstance(s, low.WgmmaGemm)]
    return len(gemms) == 1


def schedule_tiles(kernel: ir.Kernel, target) -> ir.Kernel:
    if kernel.attrs.get("warp_roles") is None:
        return kernel
    if not any(isinstance(s, low.MbarrierPipeline) for s in kernel.body):
        return kernel
    kernel = _rasterise(kernel)
    choice = config.persistent_tiles()
    if choice is False or not _persistent(kernel):
        return kernel
    if choice:
        return kernel.replace(attrs=dict(kernel.attrs, persistent=True))
    if _gemm_main_loop(kernel):
        return kernel.replace(attrs=dict(kernel.attrs, persistent=True,
                                         persistent_if_staged=True))
    return kernel
