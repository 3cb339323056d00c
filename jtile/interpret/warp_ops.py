"""Warp-level operations in interpret mode (T.shfl_*, T.warp_reduce_*, votes).

Per-thread code evaluates over a vector of the block's threads (`jtile.interpret.threads`), so a
warp operation is a gather along that vector with the hardware's lane rules (PTX `shfl.sync`:
lanes grouped by `width`, a source outside the allowed range gives the lane its own value),
and a warp reduction combines lanes in the butterfly order the compiled code uses. A value the
same in every thread (block-wide code) is broadcast first, and the result, the same in every
lane, is given back as one value.
"""

from __future__ import annotations

import jax.numpy as jnp

from jtile.ir.nodes import Call
from jtile.ir.warp_ops import REDUCTIONS, SHUFFLES, VOTES

WARP = 32


def warp_call(evaluate, e: Call):
    from jtile.interpret.expressions import _as, _compute_dtype
    from jtile.interpret.tiles import combine

    threads = evaluate.memory.ctx.kernel.threads
    value = evaluate(e.args[0])
    uniform = value.ndim == 0
    if not uniform and value.shape != (threads,):
        raise evaluate.memory.ctx.error(
            f"T.{e.fn} over values shaped {value.shape}: warp operations belong to per-thread "
            "code (one value per thread)", evaluate.loc)
    value = jnp.broadcast_to(value, (threads,))
    t = jnp.arange(threads, dtype=jnp.int32)
    lane, base = t & (WARP - 1), t - (t & (WARP - 1))
    if e.fn in SHUFFLES:
        arg = jnp.broadcast_to(evaluate.index(e.args[1]), (threads,))
        width = int(e.args[2].value)
        out = value[base + _source_lane(e.fn, lane, arg & (WARP - 1), width)]
    elif e.fn in REDUCTIONS:
        kind = e.fn[len("warp_reduce_"):]
        compute = _compute_dtype(e.dtype)
        out = value
        for offset in (16, 8, 4, 2, 1):
            a, b = out.astype(compute), out[base + (lane ^ offset)].astype(compute)
            out = _as(combine(kind, a, b), e.dtype)
    else:
        pred = value.astype(bool).reshape(threads // WARP, WARP)
        if e.fn == "warp_ballot":
            bits = jnp.left_shift(pred.astype(jnp.uint32), jnp.arange(WARP, dtype=jnp.uint32))
            per_warp = _as(jnp.sum(bits, axis=1, dtype=jnp.uint32), e.dtype)
        else:
            per_warp = (jnp.any if e.fn == "warp_any" else jnp.all)(pred, axis=1)
            per_warp = per_warp.astype(jnp.int32)
        out = jnp.repeat(per_warp, WARP)
    return out[0] if uniform else out


def _source_lane(kind: str, lane, b, width: int):
    """PTX shfl.sync's source lane (`segmask` picks the lane's group of `width`)."""
    segmask = (WARP - width) & (WARP - 1)
    group = lane & segmask
    if kind == "shfl_up":
        j = lane - b
        return jnp.where(j >= group, j, lane)
    last = group | ((WARP - 1) & ~segmask)
    if kind == "shfl_idx":
        return group | (b & ~segmask & (WARP - 1))
    j = lane + b if kind == "shfl_down" else lane ^ b
    return jnp.where(j <= last, j, lane)
