"""Interpret-mode rules of T.cumsum / T.cummax (Scan) and T.im2col (Im2Col)."""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax

from jtile.ir.nodes import Im2Col, Scan
from jtile.ir.types import DType
from jtile.interpret.expressions import Env, Evaluator
from jtile.interpret.memory import Memory, jnp_dtype
from jtile.interpret.tiles import read_region, write_region


def scan(memory: Memory, env: Env, stmt: Scan) -> None:
    """Inclusive scan along stmt.dim (16-bit floats accumulate in float32, like the GPU)."""
    evaluate = Evaluator(memory, env, stmt.loc)
    tile = read_region(memory, evaluate, stmt.src)
    if stmt.src.dtype in (DType.float16, DType.bfloat16):
        tile = tile.astype(jnp.float32)
    if stmt.reverse:
        tile = jnp.flip(tile, stmt.dim)
    if stmt.op == "sum":
        result = jnp.cumsum(tile, axis=stmt.dim, dtype=tile.dtype)
    else:
        result = lax.cummax(tile, axis=stmt.dim)
    if stmt.reverse:
        result = jnp.flip(result, stmt.dim)
    write_region(memory, evaluate, stmt.dst, result.astype(jnp_dtype(stmt.dst.dtype)))


def im2col_indices(stmt: Im2Col, nhw_step, c_step, rows: int, cols: int):
    """(n, h, w, c) image indices of every tile element and whether it lies in the image.

    Works on jnp arrays (interpret mode) and defines the element order the CUDA code follows.
    """
    batch, height, width, channels = stmt.img.shape
    out_h, out_w = stmt.out_hw
    m = nhw_step * rows + jnp.arange(rows, dtype=jnp.int32)[:, None]
    k = c_step * cols + jnp.arange(cols, dtype=jnp.int32)[None, :]
    n = m // (out_h * out_w)
    oh = (m % (out_h * out_w)) // out_w
    ow = m % out_w
    kh = k // (stmt.kernel * channels)
    kw = (k // channels) % stmt.kernel
    c = k % channels
    h = oh * stmt.stride - stmt.pad + kh * stmt.dilation
    w = ow * stmt.stride - stmt.pad + kw * stmt.dilation
    inside = ((m < batch * out_h * out_w) & (k < stmt.kernel * stmt.kernel * channels)
              & (h >= 0) & (h < height) & (w >= 0) & (w < width))
    return (n, h, w, c), inside


def im2col(memory: Memory, env: Env, stmt: Im2Col) -> None:
    evaluate = Evaluator(memory, env, stmt.loc)
    rows, cols = stmt.col.extents[-2:]
    (n, h, w, c), inside = im2col_indices(stmt, evaluate.index(stmt.nhw_step),
                                          evaluate.index(stmt.c_step), rows, cols)
    image = memory.read(stmt.img, stmt.loc)
    shape = stmt.img.shape
    clamp = [jnp.clip(i, 0, size - 1) for i, size in zip((n, h, w, c), shape)]
    tile = jnp.where(inside, image[tuple(clamp)], jnp.zeros((), image.dtype))
    write_region(memory, evaluate, stmt.col, tile)
