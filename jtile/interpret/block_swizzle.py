"""T.use_swizzle in interpret mode: the same block-index remap the compiled prologue applies."""

from __future__ import annotations

import jax.numpy as jnp

from jtile.ir.nodes import Kernel, UseSwizzle
from jtile.interpret.expressions import Env


def rasterize(panel: int, order: str, bx, by, gx: int, gy: int):
    """TileLang's rasterization2DRow / 2DColumn: (bx, by) -> the block this one runs.

    The flat block number f = bx + by * gx walks panels of `panel` rows (order "row") or
    columns ("column"); the last panel may be narrower; odd panels run backwards. Works on
    Python ints and on integer arrays alike (the compiled prologue evaluates the same formula).
    """
    f = bx + by * gx
    size = gx * gy
    lanes, across = (gx, gy) if order == "row" else (gy, gx)   # panel length, panel count axis
    panel_size = panel * lanes
    offset = f % panel_size
    index = f // panel_size
    total = -(-size // panel_size)
    last_width = (size - index * panel_size) // lanes
    stride = _where(index + 1 < total, panel, last_width)
    major = _where(index % 2 == 1, lanes - 1 - offset // stride, offset // stride)
    minor = offset % stride + index * panel
    return (major, minor) if order == "row" else (minor, major)


def _where(cond, a, b):
    if isinstance(cond, bool):
        return a if cond else b
    return jnp.where(cond, a, b)


def swizzled_env(kernel: Kernel, env: Env, stmt: UseSwizzle) -> Env:
    """`env` with the x and y block indices remapped (z is kept)."""
    bx_var, by_var = kernel.block_vars[0], kernel.block_vars[1]
    bx, by = env.values[id(bx_var)], env.values[id(by_var)]
    x, y = rasterize(stmt.panel_size, stmt.order, bx, by, kernel.grid[0], kernel.grid[1])
    return env.bind(bx_var, x).bind(by_var, y)
