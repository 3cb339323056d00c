"""Element stores and element atomic adds, vectorised over a T.Parallel space.

A store inside `T.Parallel` writes every (unmasked) iteration's element in one scatter. Indices
out of the buffer, and iterations masked off by an enclosing `T.If`, are sent one past the end
of their dimension and dropped (`mode="drop"`), so they never write.

In per-thread code (`threads.py`) the space is the block's threads, and a store into a
per-thread buffer writes each thread's own copy.

Reducer buffers (`T.alloc_reducer`) are the exception to "one writer per element": iterations
that hit the same element all count, so their updates become scatter-add / max / min.
"""

from __future__ import annotations

import jax.numpy as jnp

from jtile.ir.nodes import BinOp, Call, Cast, Expr, Load, Store
from jtile.ir.printer import expr_text
from jtile.interpret import threads
from jtile.interpret.expressions import Env, Evaluator, stored
from jtile.interpret.memory import Memory, jnp_dtype


def scatter_indices(evaluate: Evaluator, indices: tuple, shape: tuple, env: Env,
                    lane=None) -> tuple:
    """Integer index arrays over the whole iteration space; dropped lanes point past the end.

    `lane` (the thread index over the thread space) selects each thread's own copy of a
    per-thread buffer: it is prepended to the indices, and `shape` starts with the threads."""
    space = env.space
    ok = True if env.mask is None else env.mask
    raw = [evaluate.index(i) for i in indices]
    if lane is not None:
        raw = [lane] + raw
    for value, n in zip(raw, shape):
        ok = ok & (value >= 0) & (value < n)
    ok = jnp.broadcast_to(jnp.asarray(ok, bool), space)
    return tuple(jnp.where(ok, jnp.broadcast_to(value, space), n)
                 for value, n in zip(raw, shape))


def _same_indices(a: tuple, b: tuple) -> bool:
    return len(a) == len(b) and all(x is y or expr_text(x) == expr_text(y) for x, y in zip(a, b))


def reducer_update(store: Store):
    """The `v` of `r[idx] = r[idx] + v` (sum) or `r[idx] = T.max(r[idx], v)` (max, min)."""
    buffer, op = store.buffer, store.buffer.reducer_op
    value = store.value
    if isinstance(value, Cast) and value.dtype is buffer.dtype:
        value = value.value
    if isinstance(value, BinOp) and value.op == ("add" if op == "sum" else op):
        operands = (value.a, value.b)
    elif isinstance(value, Call) and op in ("max", "min") and value.fn == op \
            and len(value.args) == 2:
        operands = value.args
    else:
        return None
    for mine, other in ((operands[0], operands[1]), (operands[1], operands[0])):
        if isinstance(mine, Load) and mine.buffer is buffer \
                and _same_indices(mine.indices, store.indices):
            return other
    return None


def store(memory: Memory, env: Env, stmt: Store) -> None:
    """`buffer[indices] = value` for every iteration of the enclosing T.Parallel space."""
    buffer = stmt.buffer
    evaluate = Evaluator(memory, env, stmt.loc)
    accumulate = None
    value_expr: Expr = stmt.value
    if buffer.reducer_op is not None and env.space:
        value_expr = reducer_update(stmt)
        if value_expr is None:
            form = ("r[idx] = r[idx] + v" if buffer.reducer_op == "sum"
                    else f"r[idx] = T.{buffer.reducer_op}(r[idx], v)")
            raise memory.ctx.error(
                f"a store to reducer {buffer.describe()} inside T.Parallel must update it as "
                f"`{form}` ({buffer.reducer_op} reducer); other stores would race between "
                "iterations", stmt.loc)
        accumulate = buffer.reducer_op
    value = evaluate(value_expr)
    scatter_element(memory, env, evaluate, buffer, stmt.indices, value, UPDATES[accumulate],
                    stmt.loc)


# How a store (None) or an accumulating update combines into an `array.at[...]` reference:
# iterations that hit the same element all count, in any order (the ops are commutative).
UPDATES = {
    None: lambda ref, value: ref.set(value, mode="drop"),
    "sum": lambda ref, value: ref.add(value, mode="drop"),
    "max": lambda ref, value: ref.max(value, mode="drop"),
    "min": lambda ref, value: ref.min(value, mode="drop"),
}


def scatter_element(memory: Memory, env: Env, evaluate: Evaluator, buffer, indices: tuple,
                    value, update, loc) -> None:
    """`update(array.at[indices], value)` for every (unmasked) iteration of `env`'s space.

    Per-thread code writes each thread's own copy of a per-thread buffer; block-wide code
    writes every thread's copy alike."""
    value = jnp.broadcast_to(stored(value, buffer.dtype), env.space)
    if memory.per_thread(buffer) and not threads.in_thread_space(memory.ctx.kernel, env):
        where = scatter_indices(evaluate, indices, buffer.shape, env)
        memory.update(buffer, lambda array: update(array.at[where], value), loc)
        return
    lane = threads.lane(memory, buffer, env, loc)
    shape = tuple(buffer.shape) if lane is None else (memory.ctx.kernel.threads,) + \
        tuple(buffer.shape)
    where = scatter_indices(evaluate, indices, shape, env, lane)
    memory.write(buffer, update(memory.read(buffer, loc).at[where], value), loc)
