"""Kernel prologue pieces: the T.use_swizzle block-index remap and buffer-view pointers."""

from __future__ import annotations

from jtile.ir import nodes as ir
from jtile.ir.types import MemorySpace


def remap_block_indices(em) -> None:
    """T.use_swizzle: bx, by become TileLang's rasterised indices (rasterization2DRow /
    2DColumn) for the whole kernel; the raw ones stay under their names, unused after."""
    swizzle = next((s for s in em.kernel.body if isinstance(s, ir.UseSwizzle)), None)
    if swizzle is None:
        return
    k = em.kernel
    bx_var, by_var = k.block_vars[0], k.block_vars[1]
    bx, by = em.var_name(bx_var), em.var_name(by_var)
    # A cluster along x or y moves as one: the remap runs on cluster coordinates and each
    # block keeps its place inside its cluster.
    cluster = tuple(k.attrs.get("cluster_dims") or ()) + (1, 1)
    cx, cy = cluster[0], cluster[1]
    if cx > 1 or cy > 1:
        em.line(f"const int jt_cx = {bx} / {cx};")
        em.line(f"const int jt_cy = {by} / {cy};")
        bx, by = "jt_cx", "jt_cy"
    gx, gy = k.grid[0] // cx, k.grid[1] // cy
    lanes = gx if swizzle.order == "row" else gy
    panel = swizzle.panel_size
    panel_size = panel * lanes
    total = -(-(gx * gy) // panel_size)
    em.comment_loc(swizzle.loc)
    em.line(f"const int jt_flat = {bx} + {by} * {gx};")
    em.line(f"const int jt_panel = jt_flat / {panel_size};")
    em.line(f"const int jt_offset = jt_flat % {panel_size};")
    em.line(f"const int jt_stride = jt_panel + 1 < {total} ? {panel} : "
            f"({gx * gy} - jt_panel * {panel_size}) / {lanes};")
    em.line(f"const int jt_major = (jt_panel & 1) ? {lanes - 1} - jt_offset / jt_stride : "
            "jt_offset / jt_stride;")
    em.line(f"const int jt_minor = jt_offset % jt_stride + jt_panel * {panel};")
    x, y = ("jt_major", "jt_minor") if swizzle.order == "row" else ("jt_minor", "jt_major")
    # Named once here: the same expression inlined into every address made ptxas serialize
    # the main loop's wgmmas (C7514).
    if cx > 1:
        em.line(f"const int jt_bx = {x} * {cx} + {em.var_name(bx_var)} % {cx};")
        x = "jt_bx"
    if cy > 1:
        em.line(f"const int jt_by = {y} * {cy} + {em.var_name(by_var)} % {cy};")
        y = "jt_by"
    em.var_override[bx_var] = x
    em.var_override[by_var] = y


def declare_views(em) -> None:
    """A typed pointer per view (T.view, T.Tensor(..., buf.data)) into its buffer's bytes."""
    k = em.kernel
    for view in k.attrs.get("views", ()):
        base = view.view_of
        c = view.dtype.c_name
        const = "const " if base in k.inputs else ""
        if base.space is MemorySpace.GLOBAL or base.space.is_shared \
                or base.space is MemorySpace.LOCAL:
            em.line(f"{const}{c}* {em.name(view)} = "
                    f"reinterpret_cast<{const}{c}*>({em.name(base)});")
