"""`T.im2col`: gathers one tile of a convolution's im2col matrix into shared memory."""

from __future__ import annotations

import numpy as np

from jtile.errors import JtileShapeError
from jtile.ir.nodes import Buffer, Expr, Im2Col, Load, as_expr
from jtile.ir.types import MemorySpace
from jtile.trace.builder import current
from jtile.trace.indexing import as_region
from jtile.trace.source import caller_location


def _static(value, what: str, low: int, builder, loc) -> int:
    if isinstance(value, (Expr, bool)) or not isinstance(value, (int, np.integer)) \
            or value < low:
        raise builder.error(f"{what}={value!r} must be a static int >= {low}", loc, op="T.im2col")
    return int(value)


def im2col(img, col, nhw_step, c_step, kernel, stride, dilation, pad, eviction_policy=None,
           annotations=None):
    """Loads tile (nhw_step, c_step) of the im2col matrix of an NHWC image into shared memory.

    The im2col matrix of a square `kernel` x `kernel` convolution has one row per output pixel
    p = (n * OH + oh) * OW + ow and one column per k = (kh * kernel + kw) * C + c, where
    OH = (H + 2 * pad - dilation * (kernel - 1) - 1) // stride + 1 (OW likewise). Element
    (p, k) is img[n, oh * stride - pad + kh * dilation, ow * stride - pad + kw * dilation, c],
    zero outside the image (padding) and for p past N * OH * OW. `col` (rows, cols) receives
    rows nhw_step * rows + [0, rows) and columns c_step * cols + [0, cols).

    Args:
        img: global (N, H, W, C) buffer.
        col: shared tile (or slice) whose last two extents are (rows, cols), same dtype.
        nhw_step, c_step: tile coordinates (traced ints).
        kernel, stride, dilation, pad: static convolution parameters.
        eviction_policy: None or "evict_normal" (others are refused).

    Any arch (sm_80+): a gather by the block's threads. TileLang uses TMA im2col on sm_90.
    """
    builder = current("T.im2col")
    loc = caller_location()
    op = "T.im2col"
    if eviction_policy not in (None, "evict_normal"):
        raise builder.error(f"eviction_policy={eviction_policy!r} is not supported; use None",
                            loc, op=op)
    if annotations:
        raise builder.error(f"annotations={annotations!r} are not supported; drop them", loc,
                            op=op)
    if not isinstance(img, Buffer) or img.space is not MemorySpace.GLOBAL or img.ndim != 4:
        what = img.describe() if isinstance(img, Buffer) else repr(img)
        raise builder.error(f"img {what} must be a whole global (N, H, W, C) buffer", loc, op=op)
    if isinstance(col, Load):
        raise builder.error("col must be a shared buffer or a slice of one", loc, op=op)
    col_r = as_region(col, "col", loc)
    if not col_r.buffer.space.is_shared or len(col_r.extents) < 2 \
            or any(e != 1 for e in col_r.extents[:-2]):
        raise builder.error(f"col {col_r.buffer.describe()} must be a shared tile whose last two "
                            "extents are (rows, cols)", loc, op=op, cls=JtileShapeError)
    if col_r.dtype is not img.dtype:
        raise builder.error(f"col {col_r.buffer.describe()} and img {img.describe()} must have "
                            "one dtype", loc, op=op, cls=JtileShapeError)
    kernel = _static(kernel, "kernel", 1, builder, loc)
    stride = _static(stride, "stride", 1, builder, loc)
    dilation = _static(dilation, "dilation", 1, builder, loc)
    pad = _static(pad, "pad", 0, builder, loc)
    steps = []
    for value, what in ((nhw_step, "nhw_step"), (c_step, "c_step")):
        expr = as_expr(value)
        if not expr.dtype.is_int:
            raise builder.error(f"{what} has dtype {expr.dtype}; it must be an integer", loc,
                                op=op)
        steps.append(expr)
    node = Im2Col(img, col_r, steps[0], steps[1], kernel, stride, dilation, pad, loc)
    oh, ow = node.out_hw
    if oh <= 0 or ow <= 0:
        raise builder.error(f"a {kernel}x{kernel} kernel (stride {stride}, dilation {dilation}, "
                            f"pad {pad}) leaves no output pixels of {img.describe()}", loc, op=op,
                            cls=JtileShapeError)
    builder.emit(node)


def c2d_im2col(img, col, nhw_step, c_step, kernel, stride, dilation, pad, eviction_policy=None,
               annotations=None):
    """TileLang's older name for `T.im2col`."""
    im2col(img, col, nhw_step, c_step, kernel, stride, dilation, pad, eviction_policy,
           annotations)
