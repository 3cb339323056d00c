"""`jtile.ops.rotary`: rotary position embedding on (batch, seq, heads, dim) activations.

With halves `x1, x2 = x[..., :d/2], x[..., d/2:]` the result is `concat(x1*cos - x2*sin,
x2*cos + x1*sin)`, cos and sin of shape (seq, d/2). One block per (batch, position) rotates all
heads of that token: the two halves move as (heads, d/2) tiles. The backward rotates the
cotangent by the opposite angle (the forward kernel, when cos and sin are constants) and, when
cos or sin is differentiated, sums `dy * x` products over the heads in registers and over the
batch with `column_sum`. Any arch (sm_80+).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.custom_derivatives import SymbolicZero

import jtile
import jtile.language as T
from jtile.ops import checks
from jtile.ops.column_sum import column_sum
from jtile.ops.mode import resolve_interpret
from jtile.ops.rows import next_power_of_2
from jtile.ops.sharding import match_varying, witness

__all__ = ["rotary"]

F32 = "float32"


def rotary_threads(heads: int, half: int) -> int:
    """Threads of a block that rotates one token's `heads` rows of `half`-wide halves."""
    return max(32, min(256, next_power_of_2(heads) * next_power_of_2(half) // 8))


def rotated(a, b, c, s):
    """The float32 halves (a, b) rotated by the angle whose cosine and sine are c, s:
    (a c - b s, b c + a s). Kernels that rotate x1 | x2 halves share this one definition."""
    return a * c - b * s, b * c + a * s


def _load_half(X, frag, token, col0):
    """`frag[h, j] = X[token, h, col0 + j]` for one half of every head of one token, zeros
    in the padding. With whole halves, one tile copy: its rows past the heads read zeros (the
    copy bounds each dimension), its rows move in 16-byte vectors; a padded half (whose
    columns would reach into the other half) goes element by element."""
    _, H, D = X.shape
    heads, half = frag.shape
    if half == D // 2:
        T.copy(X[token, 0, col0], frag)
        return
    for h, j in T.Parallel(heads, half):
        frag[h, j] = T.if_then_else((h < H) & (j < D // 2),
                                    X[token, T.min(h, H - 1), col0 + T.min(j, D // 2 - 1)],
                                    T.cast(0.0, frag.dtype))


def _store_half(frag, X, token, col0):
    _, H, D = X.shape
    heads, half = frag.shape
    if half == D // 2:  # rows past the heads are dropped (the copy bounds each dimension)
        T.copy(frag, X[token, 0, col0])
        return
    for h, j in T.Parallel(heads, half):
        with T.If((h < H) & (j < D // 2)):
            X[token, h, col0 + j] = frag[h, j]


def rotary_fwd_kernel(X, C, S, *, seq, sign):
    """Rotates each token's heads by its position's angle (by minus it when sign = -1).

    Shapes: X (B * seq, H, D) in global memory, C and S (seq, D // 2); output (B * seq, H, D)
    in X's dtype.
    """
    R, H, D = X.shape
    half = D // 2
    heads_p, half_p = next_power_of_2(H), next_power_of_2(half)
    Y = T.empty((R, H, D), X.dtype)
    with T.Kernel(R, threads=rotary_threads(H, half)) as token:
        x1 = T.alloc_fragment((heads_p, half_p), X.dtype)
        x2 = T.alloc_fragment((heads_p, half_p), X.dtype)
        # Results go to fragments of their own: `a` and `b` below are re-read where used.
        y1 = T.alloc_fragment((heads_p, half_p), X.dtype)
        y2 = T.alloc_fragment((heads_p, half_p), X.dtype)
        _load_half(X, x1, token, 0)
        _load_half(X, x2, token, half)
        pos = token % seq
        for h, j in T.Parallel(heads_p, half_p):
            jj = T.min(j, half - 1)
            c = T.cast(C[pos, jj], F32)
            s = T.cast(S[pos, jj], F32) * sign
            a = T.cast(x1[h, j], F32)
            b = T.cast(x2[h, j], F32)
            r1, r2 = rotated(a, b, c, s)
            y1[h, j] = T.cast(r1, X.dtype)
            y2[h, j] = T.cast(r2, X.dtype)
        _store_half(y1, Y, token, 0)
        _store_half(y2, Y, token, half)
    return Y


def rotary_bwd_kernel(X, C, S, DY, *, seq):
    """dX (the cotangent rotated back), and per-token partial gradients of cos and sin.

    Shapes: X, DY (B * seq, H, D), C and S (seq, D // 2); outputs DX (B * seq, H, D) in X's
    dtype, DCp and DSp (B * seq, D // 2) float32 (summed over the heads; the batch sum is left
    to `column_sum`).
    """
    R, H, D = X.shape
    half = D // 2
    heads_p, half_p = next_power_of_2(H), next_power_of_2(half)
    DX = T.empty((R, H, D), X.dtype)
    DCp = T.empty((R, half), F32)
    DSp = T.empty((R, half), F32)
    with T.Kernel(R, threads=rotary_threads(H, half)) as token:
        x1 = T.alloc_fragment((heads_p, half_p), X.dtype)
        x2 = T.alloc_fragment((heads_p, half_p), X.dtype)
        d1 = T.alloc_fragment((heads_p, half_p), DY.dtype)
        d2 = T.alloc_fragment((heads_p, half_p), DY.dtype)
        dc = T.alloc_fragment((heads_p, half_p), F32)
        ds = T.alloc_fragment((heads_p, half_p), F32)
        dc_sum = T.alloc_fragment((half_p,), F32)
        ds_sum = T.alloc_fragment((half_p,), F32)
        _load_half(X, x1, token, 0)
        _load_half(X, x2, token, half)
        _load_half(DY, d1, token, 0)
        _load_half(DY, d2, token, half)
        pos = token % seq
        for h, j in T.Parallel(heads_p, half_p):
            jj = T.min(j, half - 1)
            c = T.cast(C[pos, jj], F32)
            s = T.cast(S[pos, jj], F32)
            a = T.cast(x1[h, j], F32)
            b = T.cast(x2[h, j], F32)
            g1 = T.cast(d1[h, j], F32)
            g2 = T.cast(d2[h, j], F32)
            # Padding holds zeros in x and dy, so it adds nothing to the sums below.
            dc[h, j] = g1 * a + g2 * b
            ds[h, j] = g2 * a - g1 * b
            # x1 and x2 are no longer read once dc and ds hold their products.
            x1[h, j] = T.cast(g1 * c + g2 * s, X.dtype)
            x2[h, j] = T.cast(g2 * c - g1 * s, X.dtype)
        _store_half(x1, DX, token, 0)
        _store_half(x2, DX, token, half)
        T.reduce_sum(dc, dc_sum, dim=0)
        T.reduce_sum(ds, ds_sum, dim=0)
        for j in T.Parallel(half_p):
            with T.If(j < half):
                DCp[token, j] = dc_sum[j]
                DSp[token, j] = ds_sum[j]
    return DX, DCp, DSp


@functools.lru_cache(maxsize=None)
def _launcher(kernel, name: str, interpret: bool, **static):
    return jtile.pallas_like(functools.partial(kernel, **static), name=name,
                             interpret=interpret)


def _tokens(x):
    batch, seq, heads, dim = x.shape
    return x.reshape(batch * seq, heads, dim)


def _rotate(x, cos, sin, interpret, sign):
    launch = _launcher(rotary_fwd_kernel, "rotary_fwd" if sign > 0 else "rotary_back",
                       interpret, seq=x.shape[1], sign=sign)
    return launch(_tokens(x), cos, sin).reshape(x.shape)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _rotary(x, cos, sin, interpret):
    return _rotate(x, cos, sin, interpret, 1.0)


def _rotary_fwd(x, cos, sin, interpret):
    # Tables computed from constants (the usual case) are not differentiated: their
    # gradient needs x again and a sum over the batch, so x is saved only when one is.
    tables = cos.perturbed or sin.perturbed
    y = _rotary(x.value, cos.value, sin.value, interpret)
    return y, (x.value if tables else None, witness(x.value), cos.value, sin.value)


def _rotary_bwd(interpret, saved, dy):
    x, x_type, cos, sin = saved
    if isinstance(dy, SymbolicZero):
        dy = jnp.zeros(dy.shape, dy.dtype)
    if x is None:  # dx alone: dy rotated back by the forward kernel
        return match_varying(_rotate(dy, cos, sin, interpret, -1.0), x_type), None, None
    batch, seq, _, dim = x.shape
    launch = _launcher(rotary_bwd_kernel, "rotary_bwd", interpret, seq=seq)
    dx, dcos_partial, dsin_partial = launch(_tokens(x), cos, sin, _tokens(dy))
    dcos = column_sum(dcos_partial.reshape(batch, -1), cos.dtype, interpret=interpret)
    dsin = column_sum(dsin_partial.reshape(batch, -1), sin.dtype, interpret=interpret)
    return (match_varying(dx.reshape(x.shape), x), match_varying(dcos.reshape(cos.shape), cos),
            match_varying(dsin.reshape(sin.shape), sin))


_rotary.defvjp(_rotary_fwd, _rotary_bwd, symbolic_zeros=True)


def rotary(x, cos, sin, *, interpret=None):
    """Rotary position embedding: `concat(x1*cos - x2*sin, x2*cos + x1*sin)` on the last axis.

    `x1, x2` are the first and second halves of each head's vector. Computed in float32 and
    returned in x's dtype. Differentiable in x, cos and sin; batchable with vmap; usable inside
    shard_map (batch, sequence or heads sharded; cos and sin sharded along seq with x's seq).

    Args:
        x: (batch, seq, heads, dim) float32, bfloat16 or float16, dim even.
        cos: (seq, dim // 2) float array.
        sin: (seq, dim // 2) float array.
        interpret: True, False, or None (see `jtile.ops.mode.resolve_interpret`).

    Returns:
        An array of x's shape and dtype.

    Raises:
        JtileShapeError: x not 4-D or with an odd dim, cos or sin not (seq, dim // 2), or
            non-float inputs.
    """
    op = "rotary"
    checks.require_float(op, "x", x)
    if x.ndim != 4:
        raise checks.fail(op, f"x is {checks.describe(x)}; it must be (batch, seq, heads, dim)")
    checks.require_nonempty(op, "x", x)
    dim = x.shape[-1]
    if dim % 2:
        raise checks.fail(op, f"x is {checks.describe(x)}; dim = {dim} must be even (the "
                              "rotation pairs x[..., j] with x[..., j + dim // 2])")
    for name, table in (("cos", cos), ("sin", sin)):
        checks.require_float(op, name, table)
        checks.require_shape(op, name, table, (x.shape[1], dim // 2),
                             f"one angle per (position, pair) of x {checks.describe(x)}, "
                             "i.e. (seq, dim // 2)")
    interpret = resolve_interpret(interpret)
    return _rotary(x, cos, sin, interpret)
