"""`jtile.ops.attention`: `jax.nn.dot_product_attention` as flash-attention jtile kernels.

The forward is one flash-attention kernel that also writes the float32 log-sum-exp; the
backward (FlashAttention-2) is a preprocess kernel for `delta = rowsum(dO * O)` and one kernel
per key/value block that accumulates dK and dV in registers and adds dQ into a float32 buffer
with atomics (`jtile.ops.attention_kernels`). Atomics rather than a second kernel per query
block: the second kernel would recompute Q K^T and dO V^T, 7 tile gemms per (query, key) tile
pair instead of 5, while the atomic adds cost one float32 read-modify-write of a query tile per
key block, which the L2 absorbs.

Grouped-query attention needs no copies of k and v: the forward reads the key/value head of
query head h as h // (heads // kv_heads), and the backward kernel of a key/value head loops
over its query heads, so dK and dV are already the sums over the group.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

import jtile
from jtile.ops import checks
from jtile.ops.attention_kernels import (
    attention_bwd_kernel,
    attention_bwd_preprocess_kernel,
    attention_bwd_segmented_kernel,
    attention_fwd_kernel,
    attention_fwd_segmented_kernel,
)
from jtile.ops.mode import resolve_interpret
from jtile.ops.sharding import match_varying

__all__ = ["attention"]

OP = "attention"
HEAD_DIMS = (64, 128, 256)
DTYPES = ("float16", "bfloat16")

# Tile shapes per head dim. On sm_90a (wgmma, 227 KB of shared memory) the forward takes
# 192 queries per block on three consumer warpgroups (64 rows each) with key tiles of 128 at
# head dim 64 (on an H200 5-8% faster than 128 x 128 on two: benchmarks/results/
# h200_bench_attention_tiles_fwd_192.log), 128 x 128 at 128 (192 rows there leave 160
# registers, and with a ragged or segment mask ptxas serializes the wgmmas), both in three
# stages, so that P V overlaps the next tile's softmax on one copy of P (1.05-1.09x:
# h200_attention_overlap_one_copy.log), 128 x 64 at 256; the backward keeps P^T and dS^T in shared memory and 128 keys per block (64 at head
# dim 256), with query tiles of at least 64 rows, which wgmma needs for dQ, and dQ staged in
# shared memory for the TMA engine's reduce where it fits (not at head dim 256), and issues
# dP^T's gemm before the exponentials so that it runs beside them; at head dim 128 the step's
# scores are queries by keys (S = Q K^T: 1.03-1.04x fwd+bwd, no spills against 7 registers'
# worth; at 64 it loses 13% on full attention: h200_bench_attention_bwd_variants_s22.log). Elsewhere
# (mma.sync, 163 KB on sm_80) the tiles are smaller so that they fit.
HOPPER_TILES = {
    64: (dict(block_m=192, block_n=128, stages=3, threads=384),
         dict(block_m=128, block_n=128, stages=2, threads=256, stage_dq=True, early_dp=True)),
    128: (dict(block_m=128, block_n=128, stages=3, threads=256),
          dict(block_m=128, block_n=64, stages=2, threads=256, stage_dq=True, early_dp=True,
               queries_by_keys=True)),
    256: (dict(block_m=128, block_n=64, stages=2, threads=256),
          dict(block_m=64, block_n=64, stages=2, threads=256, early_dp=True)),
}
PORTABLE_TILES = {
    64: (dict(block_m=128, block_n=128, stages=2, threads=256),
         dict(block_m=128, block_n=64, stages=2, threads=256)),
    128: (dict(block_m=128, block_n=64, stages=2, threads=256),
          dict(block_m=64, block_n=64, stages=2, threads=256)),
    256: (dict(block_m=64, block_n=64, stages=1, threads=128),
          dict(block_m=64, block_n=32, stages=1, threads=256)),
}


# Forward tiles for sequences of at most SHORT_SEQ on sm_90a: with few key tiles per block,
# a block's start (its Q load, the first K/V loads) and end weigh more than its loop, and
# blocks of 64 queries with one consumer warpgroup (128 registers a thread: two blocks share
# an SM) hide them behind each other. On an H200, B16 S1024 H12/4 D64 causal bfloat16:
# 0.136 ms against 0.148-0.150 for 128 x 128 (benchmarks/bench_attention_tiles.py --forward).
SHORT_SEQ = 1024
HOPPER_SHORT_FORWARD = {
    64: dict(block_m=64, block_n=64, stages=2, threads=128),
}

# The longest tile along the sequence; shorter sequences are padded to it.
MIN_SEQ = 128


def tiles(head_dim: int, target=None, seq: int | None = None) -> tuple:
    """`(forward, backward)` tile shapes for `head_dim` on `target` (a `Target`; None: the
    Hopper shapes, which interpret mode uses too) for sequences of `seq` (None: long)."""
    if target is not None and not target.has_wgmma:
        return PORTABLE_TILES[head_dim]
    forward, backward = HOPPER_TILES[head_dim]
    if seq is not None and seq <= SHORT_SEQ and head_dim in HOPPER_SHORT_FORWARD:
        forward = HOPPER_SHORT_FORWARD[head_dim]
    return forward, backward


def _target(interpret: bool):
    if interpret:
        return None
    from jtile.compiler.target import default_target

    return default_target()


@functools.lru_cache(maxsize=None)
def _launcher(kernel, name: str, interpret: bool, aliases=None, out_shape=None, **static):
    return jtile.pallas_like(functools.partial(kernel, **static), name=name,
                             interpret=interpret, out_shape=out_shape,
                             input_output_aliases=dict(aliases) if aliases else None)


def _forward(q, k, v, segment_ids, causal, scale, seq_len, interpret):
    d = q.shape[-1]
    forward_tiles = dict(tiles(d, _target(interpret), q.shape[1])[0], seq_len=seq_len)
    name = f"attention_fwd_d{d}{'_causal' if causal else ''}"
    if segment_ids is None:
        launch = _launcher(attention_fwd_kernel, name, interpret, causal=causal, scale=scale,
                           **forward_tiles)
        return launch(q, k, v)
    launch = _launcher(attention_fwd_segmented_kernel, name + "_segmented", interpret,
                       causal=causal, scale=scale, **forward_tiles)
    return launch(q, k, v, segment_ids)


def _backward(q, k, v, o, lse, do, segment_ids, causal, scale, interpret):
    d = q.shape[-1]
    backward_tiles = tiles(d, _target(interpret))[1]
    block = 8192 // d
    prep = _launcher(attention_bwd_preprocess_kernel, f"attention_bwd_delta_d{d}", interpret,
                     block=block, threads=128)
    delta = prep(o, do)
    segmented = segment_ids is not None
    inputs = (q, k, v, do, lse, delta) + ((segment_ids,) if segmented else ())
    inputs += (jnp.zeros(q.shape, jnp.float32),)
    out_shape = (jax.ShapeDtypeStruct(q.shape, jnp.float32),
                 jax.ShapeDtypeStruct(k.shape, k.dtype),
                 jax.ShapeDtypeStruct(v.shape, v.dtype))
    name = f"attention_bwd_d{d}{'_causal' if causal else ''}{'_segmented' if segmented else ''}"
    kernel = attention_bwd_segmented_kernel if segmented else attention_bwd_kernel
    launch = _launcher(kernel, name, interpret, aliases=((len(inputs) - 1, 0),),
                       out_shape=out_shape, causal=causal, scale=scale, **backward_tiles)
    dq, dk, dv = launch(*inputs)
    return dq.astype(q.dtype), dk, dv


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5, 6, 7))
def _attention(q, k, v, segment_ids, causal, scale, seq_len, interpret):
    return _forward(q, k, v, segment_ids, causal, scale, seq_len, interpret)[0]


def _attention_fwd(q, k, v, segment_ids, causal, scale, seq_len, interpret):
    o, lse = _forward(q, k, v, segment_ids, causal, scale, seq_len, interpret)
    return o, (q, k, v, segment_ids, o, lse)


def _attention_bwd(causal, scale, seq_len, interpret, saved, do):
    q, k, v, segment_ids, o, lse = saved
    dq, dk, dv = _backward(q, k, v, o, lse, do, segment_ids, causal, scale, interpret)
    # Padding keys (K = V = 0) add nothing to dQ; their own dK and dV are sliced off.
    # Integer segment ids have no gradient: their cotangent is float0 zeros.
    dseg = None if segment_ids is None else np.zeros(segment_ids.shape, jax.dtypes.float0)
    return match_varying(dq, q), match_varying(dk, k), match_varying(dv, v), dseg


_attention.defvjp(_attention_fwd, _attention_bwd)


def _check(q, k, v, segment_ids, scale):
    for name, x in (("q", q), ("k", k), ("v", v)):
        checks.require_array(OP, name, x)
        if x.ndim != 4:
            raise checks.fail(OP, f"{name} is {checks.describe(x)}; q, k and v must be "
                                  "(batch, seq, heads, head_dim)")
        if np.dtype(x.dtype).name not in DTYPES:
            raise checks.fail(OP, f"{name} is {checks.describe(x)}; attention takes float16 or "
                                  "bfloat16 (tensor-core inputs, float32 accumulation)")
        checks.require_nonempty(OP, name, x)
    checks.require_same_dtype(OP, ("q", "k", "v"), (q, k, v))
    batch, seq, heads, dim = q.shape
    if dim not in HEAD_DIMS:
        raise checks.fail(OP, f"q is {checks.describe(q)}; head_dim {dim} is not supported, "
                              f"only {', '.join(map(str, HEAD_DIMS))} (pad the head dim)")
    checks.require_shape(OP, "v", v, k.shape, "keys and values come in pairs")
    kv_batch, kv_seq, kv_heads, kv_dim = k.shape
    if kv_seq != seq:
        raise checks.fail(OP, f"q is {checks.describe(q)} and k is {checks.describe(k)}; query "
                              "and key sequences must have the same length (self-attention); "
                              "use jax.nn.dot_product_attention for cross-attention")
    if kv_batch != batch or kv_dim != dim:
        raise checks.fail(OP, f"q is {checks.describe(q)} and k is {checks.describe(k)}; they "
                              "must share batch and head_dim")
    if heads % kv_heads:
        raise checks.fail(OP, f"q is {checks.describe(q)} and k is {checks.describe(k)}; q's "
                              f"heads ({heads}) must be a multiple of k's ({kv_heads}) "
                              "(grouped-query attention)")
    if segment_ids is not None:
        checks.require_integer(OP, "segment_ids", segment_ids)
        checks.require_shape(OP, "segment_ids", segment_ids, (batch, seq),
                             "one segment id per token (batch, seq)")
    if scale is None:
        return 1.0 / math.sqrt(dim)
    return checks.require_static_float(OP, "scale", scale)


def attention(q, k, v, *, causal=False, scale=None, segment_ids=None, interpret=None):
    """Multi-head self-attention, `jax.nn.dot_product_attention` on (batch, seq, heads, dim).

    `softmax(q k^T * scale + mask) v` per head, with float32 scores and softmax and the result
    in q's dtype. Differentiable in q, k and v (FlashAttention-2 backward); batchable with
    vmap (extra leading axes fold into the kernels' grids); inside shard_map it may be sharded
    over batch or heads, and the gradients come back with their inputs' varying axes.

    Queries and keys share one sequence: q, k and v must have the same seq length
    (cross-attention and differing lengths are refused). With `segment_ids`, query i attends to
    key j only if `segment_ids[b, i] == segment_ids[b, j]` (packed sequences); every token sees
    at least itself, so no row is empty. The sequence need not be a multiple of the tiles.

    Args:
        q: (batch, seq, heads, head_dim) float16 or bfloat16; head_dim 64, 128 or 256.
        k: (batch, seq, kv_heads, head_dim), q's dtype; heads a multiple of kv_heads
            (grouped-query attention: query head h reads key/value head
            h // (heads // kv_heads)).
        v: like k.
        causal: query i sees keys j <= i only.
        scale: the score scale, a static Python float; default 1 / sqrt(head_dim).
        segment_ids: optional (batch, seq) integer array (cast to int32).
        interpret: True for interpret mode, False for compiled CUDA, None to follow
            `JTILE_INTERPRET` and the default backend (`jtile.ops.mode.resolve_interpret`).

    Returns:
        (batch, seq, heads, head_dim) in q's dtype.

    Raises:
        JtileShapeError: wrong ranks, dtypes, head_dim, head counts, sequence lengths, a
            segment_ids of the wrong shape or dtype, or a non-static scale.
    """
    scale = _check(q, k, v, segment_ids, scale)
    interpret = resolve_interpret(interpret)
    if segment_ids is not None:
        segment_ids = segment_ids.astype(jnp.int32)
    seq = q.shape[1]
    if seq >= MIN_SEQ:
        return _attention(q, k, v, segment_ids, bool(causal), scale, seq, interpret)
    # A tile cannot be longer than its tensor: a short sequence is padded with zeros to one
    # tile, the kernel masks the padding keys out, and the padding rows are sliced off.
    pad = lambda x: jnp.pad(x, [(0, 0), (0, MIN_SEQ - seq)] + [(0, 0)] * (x.ndim - 2))  # noqa
    if segment_ids is not None:
        segment_ids = pad(segment_ids)
    out = _attention(pad(q), pad(k), pad(v), segment_ids, bool(causal), scale, seq, interpret)
    return out[:, :seq]
