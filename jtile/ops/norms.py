"""`jtile.ops.rms_norm` and `jtile.ops.layer_norm`: normalisation over the last axis.

Both compute in float32 and return the input's dtype; any leading batch shape is flattened
into rows. Each is a `jax.custom_vjp` over a forward and a backward jtile kernel
(`jtile.ops.norm_kernels`); the weight (and bias) gradients are per-block partial rows summed
by the `column_sum` kernel, and every cotangent takes its input's varying-axes type inside
`shard_map` (`jtile.ops.sharding`).
"""

from __future__ import annotations

import functools

import jax

import jtile
from jtile.ops import checks
from jtile.ops.column_sum import column_sum
from jtile.ops.mode import resolve_interpret
from jtile.ops.norm_kernels import (
    layer_norm_bwd_kernel,
    layer_norm_fwd_kernel,
    rms_norm_bwd_kernel,
    rms_norm_fwd_kernel,
)
from jtile.ops.rows import persistent_blocks, row_tiling, staging_stages
from jtile.ops.sharding import match_varying, witness

__all__ = ["rms_norm", "layer_norm"]


@functools.lru_cache(maxsize=None)
def _launcher(kernel, name: str, interpret: bool, **static):
    return jtile.pallas_like(functools.partial(kernel, **static), name=name, interpret=interpret)


def _backward_grid(op: str, rows: int, columns: int, itemsizes):
    """The backward kernel's tiling, grid and pipeline depth; `itemsizes`: the bytes per
    element of each input it streams row by row."""
    tiling = row_tiling(op, rows, columns)
    blocks, steps = persistent_blocks(rows, tiling.block_rows)
    return dict(tiling=tiling, blocks=blocks, steps=steps,
                stages=staging_stages(tiling, itemsizes))


# ------------------------------------------------------------------------------- rms_norm


def _rms_forward(x, w, residual, eps, interpret):
    tiling = row_tiling("rms_norm", *x.shape)
    launch = _launcher(rms_norm_fwd_kernel, "rms_norm_fwd", interpret, tiling=tiling, eps=eps)
    return launch(x, w) if residual is None else launch(x, w, residual)


def _rms_backward(s, w, dy, rstd, ds, interpret):
    streamed = (s, dy) if ds is None else (s, dy, ds)
    grid = _backward_grid("rms_norm", *s.shape, [a.dtype.itemsize for a in streamed])
    launch = _launcher(rms_norm_bwd_kernel, "rms_norm_bwd", interpret, **grid)
    dx, dw_partial = launch(s, w, dy, rstd) if ds is None else launch(s, w, dy, rstd, ds)
    return dx, column_sum(dw_partial, w.dtype, interpret=interpret)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _rms_norm(x, w, eps, interpret):
    return _rms_forward(x, w, None, eps, interpret)[0]


def _rms_norm_fwd(x, w, eps, interpret):
    y, rstd = _rms_forward(x, w, None, eps, interpret)
    return y, (x, w, rstd)


def _rms_norm_bwd(eps, interpret, saved, dy):
    x, w, rstd = saved
    dx, dw = _rms_backward(x, w, dy, rstd, None, interpret)
    return match_varying(dx, x), match_varying(dw, w)


_rms_norm.defvjp(_rms_norm_fwd, _rms_norm_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def _rms_norm_residual(x, residual, w, eps, interpret):
    y, _, s = _rms_forward(x, w, residual, eps, interpret)
    return y, s


def _rms_norm_residual_fwd(x, residual, w, eps, interpret):
    y, rstd, s = _rms_forward(x, w, residual, eps, interpret)
    return (y, s), (s, w, rstd, witness(x), witness(residual))


def _rms_norm_residual_bwd(eps, interpret, saved, cotangents):
    s, w, rstd, x_type, residual_type = saved
    dy, ds = cotangents
    dsum, dw = _rms_backward(s, w, dy, rstd, ds, interpret)
    # d(x + residual)/dx = d(x + residual)/dresidual = 1: both receive the sum's gradient.
    return (match_varying(dsum, x_type), match_varying(dsum, residual_type),
            match_varying(dw, w))


_rms_norm_residual.defvjp(_rms_norm_residual_fwd, _rms_norm_residual_bwd)


def rms_norm(x, w, *, eps=1e-6, residual=None, interpret=None):
    """RMS normalisation over the last axis: `x * rsqrt(mean(x**2) + eps) * w`.

    Computed in float32 and returned in x's dtype. With `residual`, normalises `s = x +
    residual` (rounded to x's dtype, as `jnp` adds them) and returns `(y, s)`, the pre-norm
    residual stream of a transformer block. Differentiable in x, w and residual; batchable with
    vmap; inside shard_map the gradient of a replicated `w` comes back replicated.

    Args:
        x: (..., N) float32, bfloat16 or float16; N at most 16384.
        w: (N,) float weight (any of those dtypes; its gradient has its dtype).
        eps: added to the mean square, a static Python number.
        residual: optional (..., N) array of x's shape and dtype.
        interpret: True for interpret mode, False for compiled CUDA, None to follow
            `JTILE_INTERPRET` and the default backend (`jtile.ops.mode.resolve_interpret`).

    Returns:
        y of x's shape and dtype, or `(y, x + residual)` when `residual` is given.

    Raises:
        JtileShapeError: a non-float input, w not (N,), a residual of another shape or dtype.
    """
    op = "rms_norm"
    checks.require_float(op, "x", x)
    checks.require_rank(op, "x", x, 1)
    checks.require_nonempty(op, "x", x)
    checks.require_float(op, "w", w)
    checks.require_shape(op, "w", w, x.shape[-1:], f"one weight per element of x's last axis "
                         f"(x is {checks.describe(x)})")
    eps = checks.require_static_float(op, "eps", eps)
    interpret = resolve_interpret(interpret)
    n = x.shape[-1]
    rows = x.reshape(-1, n)
    if residual is None:
        return _rms_norm(rows, w, eps, interpret).reshape(x.shape)
    checks.require_float(op, "residual", residual)
    checks.require_shape(op, "residual", residual, x.shape, "the residual is added to x")
    checks.require_same_dtype(op, ("x", "residual"), (x, residual))
    y, s = _rms_norm_residual(rows, residual.reshape(-1, n), w, eps, interpret)
    return y.reshape(x.shape), s.reshape(x.shape)


# ------------------------------------------------------------------------------- layer_norm


def _ln_forward(x, w, b, eps, interpret):
    tiling = row_tiling("layer_norm", *x.shape)
    launch = _launcher(layer_norm_fwd_kernel, "layer_norm_fwd", interpret, tiling=tiling, eps=eps)
    return launch(x, w, b)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def _layer_norm(x, w, b, eps, interpret):
    return _ln_forward(x, w, b, eps, interpret)[0]


def _layer_norm_fwd(x, w, b, eps, interpret):
    y, mean, rstd = _ln_forward(x, w, b, eps, interpret)
    return y, (x, w, mean, rstd, witness(b))


def _layer_norm_bwd(eps, interpret, saved, dy):
    x, w, mean, rstd, b_type = saved
    grid = _backward_grid("layer_norm", *x.shape, [x.dtype.itemsize, dy.dtype.itemsize])
    launch = _launcher(layer_norm_bwd_kernel, "layer_norm_bwd", interpret, **grid)
    dx, dw_partial, db_partial = launch(x, w, dy, mean, rstd)
    dw = column_sum(dw_partial, w.dtype, interpret=interpret)
    db = column_sum(db_partial, b_type.dtype, interpret=interpret)
    return match_varying(dx, x), match_varying(dw, w), match_varying(db, b_type)


_layer_norm.defvjp(_layer_norm_fwd, _layer_norm_bwd)


def layer_norm(x, w, b, *, eps=1e-5, interpret=None):
    """Layer normalisation over the last axis with float32 statistics.

    `(x - mean) * rsqrt(var + eps) * w + b` with the mean and the (biased) variance of each
    row, computed in float32 and returned in x's dtype. Differentiable in x, w and b; batchable
    with vmap; inside shard_map the gradients of a replicated w and b come back replicated.

    Args:
        x: (..., N) float32, bfloat16 or float16; N at most 16384.
        w: (N,) float scale.
        b: (N,) float shift.
        eps: added to the variance, a static Python number.
        interpret: True, False, or None (see `jtile.ops.mode.resolve_interpret`).

    Returns:
        An array of x's shape and dtype.

    Raises:
        JtileShapeError: a non-float input, or w or b not (N,).
    """
    op = "layer_norm"
    checks.require_float(op, "x", x)
    checks.require_rank(op, "x", x, 1)
    checks.require_nonempty(op, "x", x)
    for name, param in (("w", w), ("b", b)):
        checks.require_float(op, name, param)
        checks.require_shape(op, name, param, x.shape[-1:], f"one value per element of x's "
                             f"last axis (x is {checks.describe(x)})")
    eps = checks.require_static_float(op, "eps", eps)
    interpret = resolve_interpret(interpret)
    n = x.shape[-1]
    return _layer_norm(x.reshape(-1, n), w, b, eps, interpret).reshape(x.shape)


