"""The statement walker: runs a kernel body's statements in program order on `Memory`.

Outside `T.Parallel` a statement runs once per block (TileLang code outside T.Parallel is the
same for every thread), unless it reads the thread index or a per-thread buffer, or is an
element atomic: then it runs over a vector of the block's threads (`threads.py`). A `T.Parallel` loop runs each statement
of its body for all iterations at once before the next statement, which is a faithful order
because its iterations must be independent. Inside it, `T.If` becomes a mask on stores
instead of a branch.
"""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax

from jtile.ir.nodes import (AtomicAdd, BarrierOp, Const, Copy, Fill, FinalizeReducer, For, Gemm,
                            IfThenElse, Load, ParallelFor, Reduce, Store, SyncThreads, While)
from jtile.interpret import (barrier_schedule, barriers, block_swizzle, concurrent_regions,
                             scan_im2col, stores, thread_tiles, threads, tiles)
from jtile.ir.nodes import (AsyncCopyGroup, FenceProxyAsync, Im2Col, Scan, SetMaxNreg,
                            ThreadCopy, UseSwizzle)
from jtile.interpret.expressions import Env, Evaluator
from jtile.interpret.memory import Memory
from jtile.ir.walk import is_region

_TILE_OPS = {Copy: ("T.copy", tiles.copy), Fill: ("T.fill", tiles.fill),
             Gemm: ("T.gemm", tiles.gemm), Reduce: ("T.reduce", tiles.reduce),
             Scan: ("T.cumsum", scan_im2col.scan), Im2Col: ("T.im2col", scan_im2col.im2col)}

# Ordering only: in interpret mode program order already orders every access, so fences and
# block barriers change nothing. (mbarriers order T.ws regions: barriers.py follows them.)
_NO_OPS = (SyncThreads, FinalizeReducer, FenceProxyAsync, SetMaxNreg, AsyncCopyGroup)


def run_body(memory: Memory, env: Env, body: tuple) -> None:
    index = 0
    while index < len(body):
        stmt = body[index]
        index += 1
        if isinstance(stmt, UseSwizzle):  # remaps the block indices of what follows
            env = block_swizzle.swizzled_env(memory.ctx.kernel, env, stmt)
            continue
        if is_region(stmt) and not env.space:
            group = barrier_schedule.group_at(memory, body, index - 1)
            if group is not None:   # regions that hand over through mbarriers
                barrier_schedule.run(memory, env, group, run_statement, run_body)
                index += len(group) - 1
                continue
            group = concurrent_regions.group_at(body, index - 1)
            if group is not None:
                concurrent_regions.run(memory, env, group, run_body)
                index += len(group) - 1
                continue
        run_statement(memory, env, stmt)


def run_statement(memory: Memory, env: Env, stmt) -> None:
    kernel = memory.ctx.kernel
    if not env.space and threads.runs_per_thread(memory.ctx, stmt):
        env = threads.thread_space(kernel, env)  # per-thread code: one lane per thread
    per_thread = threads.in_thread_space(kernel, env)
    if per_thread:
        threads.check_per_thread(memory, stmt)
    if per_thread or not (isinstance(stmt, BarrierOp) or is_region(stmt)):
        # A lax loop or branch, or per-thread code, runs its barrier operations a number of
        # times the trace does not know: their barriers are no longer followed.
        barriers.forget_inside(memory, stmt)
    if isinstance(stmt, Store):
        stores.store(memory, env, stmt)
    elif isinstance(stmt, ParallelFor):
        _parallel(memory, env, stmt)
    elif isinstance(stmt, For):
        _serial(memory, env, stmt)
    elif is_region(stmt) and not per_thread:
        # A T.ws region: tile operations run whole, per-thread code on its threads only.
        run_body(memory, env.in_region(stmt.threads), stmt.then_body)
    elif isinstance(stmt, IfThenElse):
        _branch(memory, env, stmt)
    elif isinstance(stmt, While):
        _while(memory, env, stmt)
    elif per_thread and (isinstance(stmt, (Copy, Fill, ThreadCopy)) or
                         (isinstance(stmt, AtomicAdd) and not isinstance(stmt.dst, Load))):
        thread_tiles.run(memory, env, stmt)   # every thread moves its own whole tile
    elif type(stmt) in _TILE_OPS:
        name, run = _TILE_OPS[type(stmt)]
        _refuse_in_parallel(memory, env, stmt, name)
        run(memory, env, stmt)
    elif isinstance(stmt, AtomicAdd):
        if isinstance(stmt.dst, Load):
            tiles.atomic_element(memory, env, stmt)
        else:
            _refuse_in_parallel(memory, env, stmt, f"T.atomic_{stmt.op} of a tile")
            tiles.atomic_tile(memory, env, stmt)
    elif isinstance(stmt, BarrierOp):
        barriers.run_op(memory, env, stmt, per_thread)
    elif isinstance(stmt, _NO_OPS):
        pass
    else:
        raise memory.ctx.error(f"{type(stmt).__name__} has no interpret-mode rule",
                               getattr(stmt, "loc", None))


def _refuse_in_parallel(memory: Memory, env: Env, stmt, name: str) -> None:
    if env.space:
        raise memory.ctx.error(f"{name} inside T.Parallel: tile operations work on whole tiles "
                               "and belong outside element-wise loops", stmt.loc)


def _parallel(memory: Memory, env: Env, stmt: ParallelFor) -> None:
    """Binds each loop variable to an iota along its own axis of the iteration space."""
    inner = env.with_space(tuple(stmt.extents))
    rank, offset = len(inner.space), len(env.space)
    for axis, (var, extent) in enumerate(zip(stmt.vars, stmt.extents)):
        shape = [1] * rank
        shape[offset + axis] = extent
        inner = inner.bind(var, jnp.arange(extent, dtype=jnp.int32).reshape(shape))
    run_body(memory, inner, stmt.body)


def _serial(memory: Memory, env: Env, stmt: For) -> None:
    """A sequential loop (serial, unroll, pipelined): lax.fori_loop with memory as the carry.

    The loop variable is the trip counter k in [0, extent); the body's index expressions
    already hold `k * step + start` (that is how T.serial traces a start and a step).
    A trip count that varies across T.Parallel iterations runs to the largest one with the
    others masked off.
    """
    if isinstance(stmt.extent, Const):
        bound, extent = int(stmt.extent.value), None
    else:
        extent = Evaluator(memory, env, stmt.loc).index(stmt.extent)
        bound = jnp.max(extent) if extent.ndim else extent

    def body(k, carry):
        inner = memory.fork(carry)
        loop_env = env.bind(stmt.var, k)
        if extent is not None and extent.ndim:
            loop_env = loop_env.masked(k < extent)
        run_body(inner, loop_env, stmt.body)
        return inner.carry()

    memory.arrays = list(lax.fori_loop(0, bound, body, memory.carry()))


def _branch(memory: Memory, env: Env, stmt: IfThenElse) -> None:
    # The condition is evaluated once, before either branch changes memory it may read.
    cond = Evaluator(memory, env, stmt.loc)(stmt.cond).astype(bool)
    if env.space:
        run_body(memory, env.masked(cond), stmt.then_body)
        if stmt.else_body:
            run_body(memory, env.masked(jnp.logical_not(cond)), stmt.else_body)
        return

    def branch(body):
        def run(carry):
            inner = memory.fork(carry)
            run_body(inner, env, body)
            return inner.carry()
        return run

    memory.arrays = list(lax.cond(cond, branch(stmt.then_body), branch(stmt.else_body),
                                  memory.carry()))


def _while(memory: Memory, env: Env, stmt: While) -> None:
    """A while loop: lax.while_loop with memory as the carry, the condition read from memory
    before every iteration. Inside T.Parallel each iteration has its own condition: the loop
    runs while any iteration is still active, an iteration stays off once its condition
    fails (a thread leaves its loop for good), and stores are masked to the active ones."""
    def condition(arrays):
        return Evaluator(memory.fork(arrays), env, stmt.loc)(stmt.cond).astype(bool)

    if not env.space:
        def body(arrays):
            inner = memory.fork(arrays)
            run_body(inner, env, stmt.body)
            return inner.carry()

        memory.arrays = list(lax.while_loop(condition, body, memory.carry()))
        return

    start = jnp.broadcast_to(condition(memory.carry()), env.space)
    if env.mask is not None:
        start = start & jnp.broadcast_to(env.mask, env.space)

    def vector_body(state):
        arrays, active = state
        inner = memory.fork(arrays)
        run_body(inner, env.masked(active), stmt.body)
        still = active & jnp.broadcast_to(condition(inner.carry()), env.space)
        return inner.carry(), still

    arrays, _ = lax.while_loop(lambda state: jnp.any(state[1]), vector_body,
                               (memory.carry(), start))
    memory.arrays = list(arrays)
