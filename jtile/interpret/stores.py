"""Element stores and element atomic adds, vectorised over a T.Parallel space.

A store inside `T.Parallel` writes every (unmasked) iteration's element in one scatter. Indices
out of the buffer, and iterations masked off by an enclosing `T.If`, are sent one past the end
of their dimension and dropped (`mode="drop"`), so they never write.

Reducer buffers (`T.alloc_reducer`) are the exception to "one writer per element": iterations
that hit the same element all count, so their updates become scatter-add / max / min.
"""

from __future__ import annotations

import jax.numpy as jnp

from jtile.ir.nodes import BinOp, Call, Cast, Expr, Load, Store
from jtile.ir.printer import expr_text
from jtile.interpret.expressions import Env, Evaluator
from jtile.interpret.memory import Memory, jnp_dtype


def scatter_indices(evaluate: Evaluator, indices: tuple, shape: tuple, env: Env) -> tuple:
    """Integer index arrays over the whole iteration space; dropped lanes point past the end."""
    space = env.space
    ok = True if env.mask is None else env.mask
    raw = [evaluate.index(i) for i in indices]
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
    array = memory.read(buffer, stmt.loc)
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
    value = evaluate(value_expr).astype(jnp_dtype(buffer.dtype))
    indices = scatter_indices(evaluate, stmt.indices, buffer.shape, env)
    value = jnp.broadcast_to(value, env.space)
    ref = array.at[indices]
    if accumulate == "sum":
        result = ref.add(value, mode="drop")
    elif accumulate == "max":
        result = ref.max(value, mode="drop")
    elif accumulate == "min":
        result = ref.min(value, mode="drop")
    else:
        result = ref.set(value, mode="drop")
    memory.write(buffer, result, stmt.loc)


def atomic_add_element(memory: Memory, env: Env, dst: Load, value: Expr, loc) -> None:
    """`T.atomic_add(X[idx], v)`: colliding iterations all add (scatter-add)."""
    buffer = dst.buffer
    evaluate = Evaluator(memory, env, loc)
    array = memory.read(buffer, loc)
    addend = jnp.broadcast_to(evaluate(value).astype(array.dtype), env.space)
    indices = scatter_indices(evaluate, dst.indices, buffer.shape, env)
    memory.write(buffer, array.at[indices].add(addend, mode="drop"), loc)
