"""`jtile.ops.softmax`: `jax.nn.softmax` over one axis, as a forward and a backward jtile kernel.

Forward: each block holds `block_rows` whole rows in registers, reduces their max and their sum
of exponentials across the block and writes the probabilities (one read, one write per
element). Backward: dx = y * (dy - sum(y * dy)), again one pass over whole rows. Any arch
(sm_80+).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp

import jtile
import jtile.language as T
from jtile.ops import checks
from jtile.ops.mode import resolve_interpret
from jtile.ops.row_io import load_rows
from jtile.ops.rows import row_tiling
from jtile.ops.sharding import match_varying

__all__ = ["softmax"]

F32 = "float32"
LOG2_E = 1.4426950408889634


def softmax_fwd_kernel(X, *, tiling):
    """Row softmax. Shapes: X (M, N) in global memory; output (M, N) in X's dtype."""
    M, N = X.shape
    rows, cols = tiling.block_rows, tiling.padded
    Y = T.empty((M, N), X.dtype)
    with T.Kernel(T.ceildiv(M, rows), threads=tiling.threads) as bx:
        x_in = T.alloc_fragment((rows, cols), X.dtype)
        x = T.alloc_fragment((rows, cols), F32)
        row_max = T.alloc_fragment((rows,), F32)
        row_sum = T.alloc_fragment((rows,), F32)
        # Padding columns hold -inf, whose exponential is 0.
        load_rows(X, x_in, bx * rows, tiling, fill=-math.inf)
        for i, j in T.Parallel(rows, cols):
            x[i, j] = T.cast(x_in[i, j], F32)
        T.reduce_max(x, row_max, dim=1)
        for i, j in T.Parallel(rows, cols):
            x[i, j] = T.exp2((x[i, j] - row_max[i]) * LOG2_E)
        T.reduce_sum(x, row_sum, dim=1)
        for i, j in T.Parallel(rows, cols):
            x_in[i, j] = T.cast(x[i, j] / row_sum[i], X.dtype)
        T.copy(x_in, Y[bx * rows, 0])
    return Y


def softmax_bwd_kernel(Y, DY, *, tiling):
    """dx = y * (dy - sum(y * dy)) per row. Shapes: Y, DY (M, N); output (M, N) in Y's dtype."""
    M, N = Y.shape
    rows, cols = tiling.block_rows, tiling.padded
    DX = T.empty((M, N), Y.dtype)
    with T.Kernel(T.ceildiv(M, rows), threads=tiling.threads) as bx:
        y_in = T.alloc_fragment((rows, cols), Y.dtype)
        dy_in = T.alloc_fragment((rows, cols), DY.dtype)
        y = T.alloc_fragment((rows, cols), F32)
        prod = T.alloc_fragment((rows, cols), F32)
        dot = T.alloc_fragment((rows,), F32)
        load_rows(Y, y_in, bx * rows, tiling)
        load_rows(DY, dy_in, bx * rows, tiling)
        for i, j in T.Parallel(rows, cols):
            y[i, j] = T.cast(y_in[i, j], F32)
            prod[i, j] = y[i, j] * T.cast(dy_in[i, j], F32)
        T.reduce_sum(prod, dot, dim=1)
        for i, j in T.Parallel(rows, cols):
            y_in[i, j] = T.cast(y[i, j] * (T.cast(dy_in[i, j], F32) - dot[i]), Y.dtype)
        T.copy(y_in, DX[bx * rows, 0])
    return DX


@functools.lru_cache(maxsize=None)
def _launcher(kernel, name: str, interpret: bool, tiling):
    return jtile.pallas_like(functools.partial(kernel, tiling=tiling), name=name,
                             interpret=interpret)


def _forward(x, interpret):
    tiling = row_tiling("softmax", *x.shape)
    return _launcher(softmax_fwd_kernel, "softmax_fwd", interpret, tiling)(x)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _softmax(x, interpret):
    return _forward(x, interpret)


def _softmax_fwd(x, interpret):
    y = _forward(x, interpret)
    return y, y


def _softmax_bwd(interpret, y, dy):
    tiling = row_tiling("softmax", *y.shape)
    dx = _launcher(softmax_bwd_kernel, "softmax_bwd", interpret, tiling)(y, dy)
    # y varies over every axis x does (it is computed from x alone).
    return (match_varying(dx, y),)


_softmax.defvjp(_softmax_fwd, _softmax_bwd)


def softmax(x, axis=-1, *, interpret=None):
    """`jax.nn.softmax(x, axis)`, computed in float32 and returned in x's dtype.

    The axis is moved last (a transpose when it is not already last) and any other dimensions
    become rows. Differentiable, batchable with vmap, usable inside shard_map.

    Args:
        x: float32, bfloat16 or float16, at most 16384 elements along `axis`.
        axis: the axis to normalise over, a static Python int.
        interpret: True, False, or None (see `jtile.ops.mode.resolve_interpret`).

    Returns:
        An array of x's shape and dtype whose entries along `axis` are positive and sum to 1.

    Raises:
        JtileShapeError: a non-float x, an axis out of range or not a single int.
    """
    op = "softmax"
    checks.require_float(op, "x", x)
    checks.require_rank(op, "x", x, 1)
    checks.require_nonempty(op, "x", x)
    if isinstance(axis, bool) or not isinstance(axis, int):
        raise checks.fail(op, f"axis={axis!r} must be one static Python int (a tuple of axes "
                              "is not supported: reshape them into one)")
    if not -x.ndim <= axis < x.ndim:
        raise checks.fail(op, f"axis={axis} is out of range for x {checks.describe(x)}")
    interpret = resolve_interpret(interpret)
    moved = jnp.moveaxis(x, axis, -1)
    y = _softmax(moved.reshape(-1, moved.shape[-1]), interpret)
    return jnp.moveaxis(y.reshape(moved.shape), -1, axis)
