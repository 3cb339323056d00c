"""Tile operations on regions: copy, fill, gemm, reduce, and atomic add / max / min (tiles and
elements).

Element t of a region is buffer[starts + t]. Reads outside the buffer give zero and writes
outside it are dropped; this is what lets edge tiles of a shape that is not a multiple of the
tile work without special code, on the GPU and here alike.
"""

from __future__ import annotations

import functools
import operator

import jax
import jax.numpy as jnp
from jax import lax

from jtile.ir.nodes import AtomicAdd, Const, Copy, Fill, Gemm, Reduce, Region
from jtile.ir.types import DType
from jtile.interpret.expressions import Env, Evaluator
from jtile.interpret.memory import Memory, jnp_dtype
from jtile.interpret import threads
from jtile.interpret.stores import UPDATES, scatter_element, scatter_indices


def _static_starts(region: Region):
    """The starts as Python ints when they are constants inside the buffer, else None."""
    starts = []
    for start, extent, size in zip(region.starts, region.extents, region.buffer.shape):
        if not isinstance(start, Const) or not 0 <= start.value <= size - extent:
            return None
        starts.append(int(start.value))
    return starts


def _element_indices(evaluate: Evaluator, region: Region):
    """One index array per dimension (broadcast over the tile) and the in-bounds mask."""
    rank = len(region.extents)
    indices, inside = [], True
    for dim, (start, extent, size) in enumerate(zip(region.starts, region.extents,
                                                    region.buffer.shape)):
        shape = [1] * rank
        shape[dim] = extent
        index = evaluate.index(start) + jnp.arange(extent, dtype=jnp.int32).reshape(shape)
        indices.append(index)
        inside = inside & (index >= 0) & (index < size)
    return indices, jnp.broadcast_to(inside, tuple(region.extents))


def read_region(memory: Memory, evaluate: Evaluator, region: Region) -> jax.Array:
    """The tile, shaped like `region.extents`; elements outside the buffer read as zero."""
    array = memory.read(region.buffer, evaluate.loc)
    static = _static_starts(region)
    if static is not None:
        return lax.slice(array, static, [s + e for s, e in zip(static, region.extents)])
    indices, inside = _element_indices(evaluate, region)
    clamped = tuple(jnp.clip(i, 0, n - 1) for i, n in zip(indices, region.buffer.shape))
    return jnp.where(inside, array[clamped], jnp.zeros((), array.dtype))


def _scatter(memory: Memory, evaluate: Evaluator, region: Region, tile: jax.Array, add: bool):
    buffer = region.buffer
    tile = tile.astype(jnp_dtype(buffer.dtype)).reshape(region.extents)
    static = _static_starts(region)
    if static is not None and not add:
        if tuple(region.extents) == tuple(buffer.shape):
            def update(array):
                return tile
        else:
            def update(array):
                return lax.dynamic_update_slice(array, tile, static)
    else:
        indices, inside = _element_indices(evaluate, region)
        dropped = tuple(jnp.where(inside, i, n) for i, n in zip(indices, buffer.shape))

        def update(array):
            ref = array.at[dropped]
            return ref.add(tile, mode="drop") if add else ref.set(tile, mode="drop")
    memory.update(buffer, update, evaluate.loc)   # a per-thread buffer: every thread's copy


def write_region(memory: Memory, evaluate: Evaluator, region: Region, tile: jax.Array) -> None:
    """Stores `tile` (any shape with the region's element count and order) into the region."""
    _scatter(memory, evaluate, region, tile.reshape(region.extents), add=False)


def copy(memory: Memory, env: Env, stmt: Copy) -> None:
    evaluate = Evaluator(memory, env, stmt.loc)
    tile = read_region(memory, evaluate, stmt.src)
    # Equal squeezed shapes: dropping and inserting unit dimensions is a reshape.
    write_region(memory, evaluate, stmt.dst, tile.reshape(stmt.dst.extents))


def fill(memory: Memory, env: Env, stmt: Fill) -> None:
    evaluate = Evaluator(memory, env, stmt.loc)
    value = evaluate(stmt.value).astype(jnp_dtype(stmt.dst.buffer.dtype))
    write_region(memory, evaluate, stmt.dst, jnp.broadcast_to(value, stmt.dst.extents))


def gemm(memory: Memory, env: Env, stmt: Gemm) -> None:
    """C = (0 if clear_accum else C) + op(A) @ op(B), float32 accumulation (int32 for 8-bit
    integer inputs: exact, wrapping as the GPU's integer adds do; a float16 accumulator
    rounded after every 16-deep k-step).

    f16/bf16 products are exact in float32, so upcasting first and multiplying in float32 at
    HIGHEST precision matches tensor-core MMA up to summation order.
    """
    evaluate = Evaluator(memory, env, stmt.loc)
    acc = jnp_dtype(stmt.c.dtype)  # float32, or int32 for integer inputs (checked at trace)

    def operand(region: Region, transpose: bool):
        tile = read_region(memory, evaluate, region).reshape(region.squeezed_shape())
        tile = tile.astype(acc)
        return tile.T if transpose else tile

    a = operand(stmt.a, stmt.transpose_a)
    b = operand(stmt.b, stmt.transpose_b)
    if stmt.c.dtype is DType.float16:
        # A float16 accumulator rounds at every 16-deep k-step, as mma.sync and wgmma do.
        c = jnp.zeros((a.shape[0], b.shape[1]), jnp.float32) if stmt.clear_accum else \
            read_region(memory, evaluate, stmt.c).reshape(a.shape[0], b.shape[1])
        # reduce_precision, not a float16 round trip: XLA on a GPU may keep excess precision
        # across converts (xla_allow_excess_precision) and round only once at the end.
        c = c.astype(jnp.float32)
        for k0 in range(0, a.shape[1], 16):
            step = jnp.matmul(a[:, k0:k0 + 16], b[k0:k0 + 16], precision=lax.Precision.HIGHEST,
                              preferred_element_type=jnp.float32)
            c = lax.reduce_precision(c + step, exponent_bits=5, mantissa_bits=10)
        write_region(memory, evaluate, stmt.c, c.astype(jnp.float16))
        return
    if stmt.c.dtype.is_int:
        product = jnp.matmul(a, b, preferred_element_type=acc)
    else:
        product = jnp.matmul(a, b, precision=lax.Precision.HIGHEST,
                             preferred_element_type=jnp.float32)
    if not stmt.clear_accum:
        c = read_region(memory, evaluate, stmt.c).reshape(product.shape).astype(acc)
        product = c + product
    write_region(memory, evaluate, stmt.c, product)


_BITWISE = {"bitand": jnp.bitwise_and, "bitor": jnp.bitwise_or, "bitxor": jnp.bitwise_xor}


def _reduce_tile(op: str, x: jax.Array, dim: int) -> jax.Array:
    if op in _BITWISE:
        return _BITWISE[op].reduce(x, axis=dim)
    if op in ("abssum", "absmax"):
        x = jnp.abs(x)
    if op in ("sum", "abssum"):
        return jnp.sum(x, axis=dim)
    # The compiled reduction combines with fmaxf / fminf: NaN elements drop out.
    if op in ("max", "absmax"):
        return jnp.nanmax(x, axis=dim) if jnp.issubdtype(x.dtype, jnp.floating) else \
            jnp.max(x, axis=dim)
    return jnp.nanmin(x, axis=dim) if jnp.issubdtype(x.dtype, jnp.floating) else \
        jnp.min(x, axis=dim)


def combine(op: str, old: jax.Array, new: jax.Array) -> jax.Array:
    """One step of reduction `op` (T.reduce_* kinds): fmaxf/fminf for max/min, as compiled."""
    if op in _BITWISE:
        return _BITWISE[op](old, new)
    if op in ("sum", "abssum"):
        return old + new
    if op in ("max", "absmax"):
        return jnp.fmax(old, new)
    return jnp.fmin(old, new)


REDUCE_OPS = ("sum", "max", "min", "abssum", "absmax", "bitand", "bitor", "bitxor")


def reduce(memory: Memory, env: Env, stmt: Reduce) -> None:
    """dst = op(src, axis=dim), 16-bit floats accumulated in float32; clear=False folds in dst."""
    if stmt.op not in REDUCE_OPS:
        raise memory.ctx.error(f"reduce op {stmt.op!r} is not one of {REDUCE_OPS}", stmt.loc)
    src = memory.read(stmt.src, stmt.loc)
    if stmt.src.dtype in (DType.float16, DType.bfloat16):
        src = src.astype(jnp.float32)
    result = _reduce_tile(stmt.op, src, stmt.dim)
    if not stmt.clear:
        old = memory.read(stmt.dst, stmt.loc).reshape(result.shape).astype(result.dtype)
        result = combine(stmt.op, old, result)
    result = result.astype(jnp_dtype(stmt.dst.dtype)).reshape(stmt.dst.shape)
    memory.update(stmt.dst, lambda old: result, stmt.loc)


# How T.atomic_add / max / min combine into an `array.at[...]` reference: iterations or tile
# elements that hit the same element all count, in any order (the ops are commutative).
ATOMIC_UPDATES = {"add": UPDATES["sum"], "max": UPDATES["max"], "min": UPDATES["min"]}


def atomic_tile(memory: Memory, env: Env, stmt: AtomicAdd) -> None:
    """dst tile = op(dst tile, value tile), element by element (out-of-buffer elements dropped);
    the value converts to dst's dtype first, as the generated code does."""
    evaluate = Evaluator(memory, env, stmt.loc)
    buffer = stmt.dst.buffer
    tile = read_region(memory, evaluate, stmt.value).reshape(stmt.dst.extents)
    tile = tile.astype(jnp_dtype(buffer.dtype))
    indices, inside = _element_indices(evaluate, stmt.dst)
    dropped = tuple(jnp.where(inside, i, n) for i, n in zip(indices, buffer.shape))
    memory.update(buffer, lambda array: ATOMIC_UPDATES[stmt.op](array.at[dropped], tile),
                  stmt.loc)


def atomic_element(memory: Memory, env: Env, stmt: AtomicAdd) -> None:
    """`T.atomic_<op>(X[idx], v)` for every (unmasked) iteration of the enclosing T.Parallel
    space, or every thread: colliding ones all count (scatter-add / max / min). With
    return_prev, each gets the element's value from before its own update, the updates taken
    in iteration (thread) order."""
    evaluate = Evaluator(memory, env, stmt.loc)
    value = evaluate(stmt.value)
    previous = None if stmt.prev is None else _previous_values(memory, env, evaluate, stmt, value)
    scatter_element(memory, env, evaluate, stmt.dst.buffer, stmt.dst.indices, value,
                    ATOMIC_UPDATES[stmt.op], stmt.loc)
    if previous is not None:
        scatter_element(memory, env, evaluate, stmt.prev, (Const(0, DType.int32),), previous,
                        UPDATES[None], stmt.loc)


def _previous_values(memory: Memory, env: Env, evaluate: Evaluator, stmt: AtomicAdd, value):
    """What each lane of the space reads back from `T.atomic_<op>(..., return_prev=True)`:
    the element before the update, plus (or max / min with) the values of the earlier lanes
    that update the same element."""
    buffer = stmt.dst.buffer
    dtype = jnp_dtype(buffer.dtype)
    lane = threads.lane(memory, buffer, env, stmt.loc)
    shape = tuple(buffer.shape) if lane is None else \
        (memory.ctx.kernel.threads,) + tuple(buffer.shape)
    where = scatter_indices(evaluate, stmt.dst.indices, shape, env, lane)
    active = functools.reduce(operator.and_, [w < n for w, n in zip(where, shape)])
    clipped = tuple(jnp.minimum(w, n - 1) for w, n in zip(where, shape))
    base = memory.read(buffer, stmt.loc)[clipped].ravel()
    identity = {"add": 0, "max": _lowest(dtype), "min": _highest(dtype)}[stmt.op]
    values = jnp.where(active, jnp.broadcast_to(value.astype(dtype), env.space),
                       jnp.asarray(identity, dtype)).ravel()
    key = jnp.where(active, jnp.ravel_multi_index(clipped, shape, mode="clip"), -1).ravel()
    order = jnp.argsort(key, stable=True)          # lanes of one element together, in order
    keys, ordered = key[order], values[order]
    first = jnp.concatenate([jnp.ones((1,), bool), keys[1:] != keys[:-1]])
    if stmt.op == "add":
        before = jnp.cumsum(ordered) - ordered
        start = lax.cummax(jnp.where(first, jnp.arange(keys.size), 0))
        earlier = before - before[start]
        combine = jnp.add
    else:
        combine = jnp.maximum if stmt.op == "max" else jnp.minimum

        def segment(a, b):
            return jnp.where(b[1], b[0], combine(a[0], b[0])), a[1] | b[1]

        running, _ = lax.associative_scan(segment, (ordered, first))
        earlier = jnp.where(first, jnp.asarray(identity, dtype), jnp.roll(running, 1))
    previous = jnp.zeros_like(ordered).at[order].set(combine(base[order], earlier))
    return previous.reshape(env.space)


def _lowest(dtype):
    return -jnp.inf if jnp.issubdtype(dtype, jnp.floating) else jnp.iinfo(dtype).min


def _highest(dtype):
    return jnp.inf if jnp.issubdtype(dtype, jnp.floating) else jnp.iinfo(dtype).max
