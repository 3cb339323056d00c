"""T.copy, T.fill and tile atomics in per-thread code, and T.ptx_cp_async: every thread moves
its own whole tile.

A copy or fill with a thread-private side (`T.alloc_local`, `T.alloc_var`) is each thread's own
work in the compiled code, so it may sit in per-thread code (`threads.py`), its region starts
may read the thread index, and a per-thread buffer on either side is that thread's copy. Here
all threads run at once: tiles carry a leading axis of threads, element t of thread p's tile is
buffer[starts(p) + t], reads outside the buffer give zero, and writes outside it, or by
threads a thread-dependent condition masked off, are dropped.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jtile.ir.nodes import AtomicAdd, Copy, Fill, Region, ThreadCopy
from jtile.interpret import threads
from jtile.interpret.expressions import Env, Evaluator
from jtile.interpret.memory import Memory, jnp_dtype
from jtile.interpret.stores import UPDATES
from jtile.interpret.tiles import ATOMIC_UPDATES


def _indices(evaluate: Evaluator, region: Region, count: int):
    """One index array per dimension, shaped (threads, *extents), and the in-buffer mask."""
    rank = len(region.extents)
    full = (count,) + tuple(region.extents)
    indices, inside = [], True
    for dim, (start, extent, size) in enumerate(zip(region.starts, region.extents,
                                                    region.buffer.shape)):
        first = evaluate.index(start)
        first = first.reshape(first.shape + (1,) * rank)   # per thread: (threads, 1, ...)
        shape = [1] * (rank + 1)
        shape[dim + 1] = extent
        index = jnp.broadcast_to(first + jnp.arange(extent, dtype=jnp.int32).reshape(shape), full)
        indices.append(index)
        inside = inside & (index >= 0) & (index < size)
    return indices, jnp.broadcast_to(inside, full)


def _lanes(memory: Memory, env: Env, region: Region, rank: int):
    """The thread index, shaped to lead a tile's indices, when `region`'s buffer is per-thread."""
    lane = threads.lane(memory, region.buffer, env)
    return None if lane is None else lane.reshape((-1,) + (1,) * rank)


def read_tile(memory: Memory, env: Env, evaluate: Evaluator, region: Region) -> jax.Array:
    """Each thread's tile of `region`: shape (threads, *extents)."""
    count = memory.ctx.kernel.threads
    indices, inside = _indices(evaluate, region, count)
    array = memory.read(region.buffer, evaluate.loc)
    clamped = tuple(jnp.clip(i, 0, n - 1) for i, n in zip(indices, region.buffer.shape))
    lane = _lanes(memory, env, region, len(region.extents))
    value = array[clamped if lane is None else (lane,) + clamped]
    return jnp.where(inside, value, jnp.zeros((), value.dtype))


def write_tile(memory: Memory, env: Env, evaluate: Evaluator, region: Region, tile: jax.Array,
               update) -> None:
    """`update(array.at[...], tile)` with each thread's tile (broadcast to (threads, *extents))
    at its region; threads masked off by the environment write nothing."""
    buffer = region.buffer
    count = memory.ctx.kernel.threads
    rank = len(region.extents)
    full = (count,) + tuple(region.extents)
    indices, inside = _indices(evaluate, region, count)
    if env.mask is not None:
        running = jnp.broadcast_to(env.mask, (count,)).reshape((count,) + (1,) * rank)
        inside = inside & running
    lane = _lanes(memory, env, region, rank)
    shape = tuple(buffer.shape)
    if lane is not None:
        indices = [jnp.broadcast_to(lane, full)] + indices
        shape = (count,) + shape
    dropped = tuple(jnp.where(inside, i, n) for i, n in zip(indices, shape))
    tile = jnp.broadcast_to(tile.astype(jnp_dtype(buffer.dtype)), full)
    memory.write(buffer, update(memory.read(buffer, evaluate.loc).at[dropped], tile),
                 evaluate.loc)


def run(memory: Memory, env: Env, stmt) -> None:
    """A T.copy, T.fill or tile T.atomic_* run by every thread on its own tile."""
    evaluate = Evaluator(memory, env, stmt.loc)
    count = memory.ctx.kernel.threads
    if isinstance(stmt, Copy):
        tile = read_tile(memory, env, evaluate, stmt.src)
        write_tile(memory, env, evaluate, stmt.dst,
                   tile.reshape((count,) + tuple(stmt.dst.extents)), UPDATES[None])
    elif isinstance(stmt, ThreadCopy):
        # The copy lands at once here: interpret mode runs every access in program order.
        tile = read_tile(memory, env, evaluate, stmt.src)
        if stmt.predicate is not None:
            keep = jnp.broadcast_to(evaluate(stmt.predicate), (count,))
            keep = keep.reshape((count,) + (1,) * len(stmt.src.extents))
            tile = jnp.where(keep, tile, jnp.zeros((), tile.dtype))
        write_tile(memory, env, evaluate, stmt.dst,
                   tile.reshape((count,) + tuple(stmt.dst.extents)), UPDATES[None])
    elif isinstance(stmt, Fill):
        value = evaluate(stmt.value)
        write_tile(memory, env, evaluate, stmt.dst, value.reshape((-1,) + (1,) * len(
            stmt.dst.extents)), UPDATES[None])
    elif isinstance(stmt, AtomicAdd):
        tile = read_tile(memory, env, evaluate, stmt.value)
        write_tile(memory, env, evaluate, stmt.dst,
                   tile.reshape((count,) + tuple(stmt.dst.extents)), ATOMIC_UPDATES[stmt.op])
    else:
        raise memory.ctx.error(f"{type(stmt).__name__} has no per-thread rule", stmt.loc)
