"""The attention block's q, k, v from one packed projection, rotated, in one jtile kernel.

XLA merges the q, k and v projections of the same activations into one GEMM and slices its
output for the ops that take q, k and v (copies it fuses away when its own ops consume them,
not when jtile's custom calls do). With the weights concatenated the model runs that GEMM
itself, and this kernel reads each token's packed heads once: q and k rotated (rotary position
embedding, as `jtile.ops.rotary`), v copied, each written as `jtile.ops.attention` takes it.
The backward rotates dq and dk back and writes them with dv into the packed gradient that the
GEMM's transpose reads, where XLA would concatenate them. The tables are constants (their
gradient is not computed).
"""

from __future__ import annotations

import functools

import jax

import jtile
import jtile.language as T
from jtile.ops.mode import resolve_interpret
from jtile.ops.rotary import rotary_threads, rotated
from jtile.ops.rows import next_power_of_2

F32 = "float32"


def _rotate(src, src_head, dst, dst_head, count, C, S, token, pos, sign):
    """dst[token, dst_head + h] = src[token, src_head + h] rotated by `sign` times the angle
    of position `pos`, for h < count. Tiles are a power of 2 of heads: rows past `count` read
    the next heads (or zeros past the array) and are not stored."""
    D = src.shape[-1]
    half = D // 2
    rows = next_power_of_2(count)
    x1 = T.alloc_fragment((rows, half), src.dtype)
    x2 = T.alloc_fragment((rows, half), src.dtype)
    # Results go to fragments of their own: `a` and `b` are read again where used.
    y1 = T.alloc_fragment((rows, half), src.dtype)
    y2 = T.alloc_fragment((rows, half), src.dtype)
    T.copy(src[token, src_head, 0], x1)
    T.copy(src[token, src_head, half], x2)
    for h, j in T.Parallel(rows, half):
        c = T.cast(C[pos, j], F32)
        s = T.cast(S[pos, j], F32) * sign
        a = T.cast(x1[h, j], F32)
        b = T.cast(x2[h, j], F32)
        r1, r2 = rotated(a, b, c, s)
        y1[h, j] = T.cast(r1, src.dtype)
        y2[h, j] = T.cast(r2, src.dtype)
    _store(y1, dst, token, dst_head, 0, count)
    _store(y2, dst, token, dst_head, half, count)


def _store(frag, dst, token, head, col, count):
    """The first `count` rows of `frag` into dst[token, head:head + count, col:]."""
    rows, width = frag.shape
    if head == 0 and count == dst.shape[1]:   # rows past the array are dropped by the copy
        T.copy(frag, dst[token, 0, col])
        return
    for h, j in T.Parallel(rows, width):
        with T.If(h < count):
            dst[token, head + h, col + j] = frag[h, j]


def _copy_heads(src, src_head, dst, dst_head, count, token):
    rows = next_power_of_2(count)
    tile = T.alloc_fragment((rows, src.shape[-1]), src.dtype)
    T.copy(src[token, src_head, 0], tile)
    _store(tile, dst, token, dst_head, 0, count)


def qkv_rotary_fwd_kernel(QKV, C, S, *, heads, kv_heads, seq):
    """QKV (tokens, heads + 2 kv_heads, D) packed q | k | v; C, S (seq, D // 2); outputs
    Q (tokens, heads, D), K and V (tokens, kv_heads, D)."""
    R, _, D = QKV.shape
    Q = T.empty((R, heads, D), QKV.dtype)
    K = T.empty((R, kv_heads, D), QKV.dtype)
    V = T.empty((R, kv_heads, D), QKV.dtype)
    with T.Kernel(R, threads=rotary_threads(heads, D // 2)) as token:
        pos = token % seq
        _rotate(QKV, 0, Q, 0, heads, C, S, token, pos, 1.0)
        _rotate(QKV, heads, K, 0, kv_heads, C, S, token, pos, 1.0)
        _copy_heads(QKV, heads + kv_heads, V, 0, kv_heads, token)
    return Q, K, V


def qkv_rotary_bwd_kernel(DQ, DK, DV, C, S, *, seq):
    """The packed gradient DQKV (tokens, heads + 2 kv_heads, D): dq and dk rotated back, dv."""
    R, heads, D = DQ.shape
    kv_heads = DK.shape[1]
    DQKV = T.empty((R, heads + 2 * kv_heads, D), DQ.dtype)
    with T.Kernel(R, threads=rotary_threads(heads, D // 2)) as token:
        pos = token % seq
        _rotate(DQ, 0, DQKV, 0, heads, C, S, token, pos, -1.0)
        _rotate(DK, 0, DQKV, heads, kv_heads, C, S, token, pos, -1.0)
        _copy_heads(DV, 0, DQKV, heads + kv_heads, kv_heads, token)
    return DQKV


@functools.lru_cache(maxsize=None)
def _launcher(kernel, name: str, interpret, **static):
    return jtile.pallas_like(functools.partial(kernel, **static), name=name,
                             interpret=interpret)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4, 5))
def _qkv_rotary(qkv, cos, sin, heads, kv_heads, interpret):
    batch, seq = qkv.shape[:2]
    launch = _launcher(qkv_rotary_fwd_kernel, "qkv_rotary_fwd", interpret, heads=heads,
                       kv_heads=kv_heads, seq=seq)
    q, k, v = launch(qkv.reshape(batch * seq, heads + 2 * kv_heads, -1), cos, sin)
    return tuple(x.reshape(batch, seq, -1, x.shape[-1]) for x in (q, k, v))


def _qkv_rotary_fwd(qkv, cos, sin, heads, kv_heads, interpret):
    return _qkv_rotary(qkv, cos, sin, heads, kv_heads, interpret), (cos, sin)


def _qkv_rotary_bwd(heads, kv_heads, interpret, saved, cotangents):
    cos, sin = saved
    dq, dk, dv = cotangents
    batch, seq = dq.shape[:2]
    launch = _launcher(qkv_rotary_bwd_kernel, "qkv_rotary_bwd", interpret, seq=seq)
    dqkv = launch(*(x.reshape(batch * seq, -1, x.shape[-1]) for x in (dq, dk, dv)), cos, sin)
    # The tables are constants of the model: no gradient flows to them.
    return dqkv.reshape(batch, seq, heads + 2 * kv_heads, -1), None, None


_qkv_rotary.defvjp(_qkv_rotary_fwd, _qkv_rotary_bwd)


def qkv_rotary(qkv, cos, sin, *, heads: int, kv_heads: int, interpret=None):
    """(q, k, v) from the packed projection `qkv` (batch, seq, heads + 2 kv_heads, head_dim):
    q and k rotated by `jtile.ops.rotary`'s definition with tables (seq, head_dim // 2), v as
    it is. Differentiable in qkv; the tables are taken as constants."""
    return _qkv_rotary(qkv, jax.lax.stop_gradient(cos), jax.lax.stop_gradient(sin), heads,
                       kv_heads, resolve_interpret(interpret))
