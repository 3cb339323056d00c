"""Per-thread code in interpret mode: statements outside `T.Parallel` that read the thread
index (`T.get_thread_binding()`), or a thread-private buffer holding per-thread values, run
over a vector of the block's threads.

Such a statement is evaluated with the thread index bound to `arange(threads)` as a one-axis
iteration space ("thread space"), exactly as a `T.Parallel` over the threads would be: stores
scatter one element per thread, a `T.If` on a thread-dependent condition masks the threads that
skip it, and a loop whose bound differs between threads runs to the largest bound with the
finished threads masked off. Statements run in program order, so `T.sync_threads()` needs no
model of its own (T.ws regions that hand data over at mbarriers are ordered by
`barrier_schedule.py`); a kernel whose threads would race shows poisoned (NaN) reads.

Thread-private buffers (`T.alloc_local`, `T.alloc_var`, one-element fragments) that per-thread
code writes are "per-thread buffers": each thread has its own copy, as in the compiled code, so
their arrays carry a leading axis of the block's threads. Per-thread code reads and writes its
own lane; block-wide code that writes one (a `T.clear`, a store outside per-thread code)
writes every thread's copy alike. Which buffers are per-thread is decided before running, to a
fixed point (a value read from a per-thread buffer is per-thread too). Private buffers only
block-wide code writes keep one copy per block, and statements that read neither the thread
index nor a per-thread buffer run once per block, so uniform code runs as fast as before:
every thread would do the same. The exception is an element atomic (`T.atomic_add(s[0], 1)`),
which is not idempotent: as in the compiled code, every thread runs it.

What per-thread code cannot hold: operations the whole block runs together (`T.Parallel`,
`T.gemm`, `T.reduce_*`, `T.cumsum`, copies and fills of shared or global tiles); `verify`
refuses them under thread-dependent conditions too. A `T.copy` or `T.fill` that touches a
thread-private buffer is each thread's own work (every thread moves the whole tile), so it runs
per thread. Block-wide operations cannot read a per-thread buffer (`checks.py`).
"""

from __future__ import annotations

import enum
from typing import Iterator

import jax.numpy as jnp

from jtile.ir import nodes as ir
from jtile.ir.types import MemorySpace
from jtile.ir.walk import buffers_written, child_bodies, is_region, statement_exprs, \
    statements, sub_expressions

_PRIVATE = (MemorySpace.LOCAL, MemorySpace.VAR)

# Operations the whole block runs together, each thread doing its share.
_COOPERATIVE = {ir.Copy: "T.copy", ir.Fill: "T.fill", ir.Gemm: "T.gemm", ir.Reduce: "T.reduce",
                ir.FinalizeReducer: "T.finalize_reducer", ir.ParallelFor: "T.Parallel",
                ir.Scan: "T.cumsum", ir.Im2Col: "T.im2col"}


class Mode(enum.Enum):
    """How a statement runs: once for the block, per thread, or as a T.Parallel iteration."""

    BLOCK = "block"
    THREAD = "thread"
    PARALLEL = "parallel"


def storage(buffer: ir.Buffer) -> ir.Buffer:
    """The buffer that owns the bytes (a view stands for the buffer it views)."""
    return buffer if buffer.view_of is None else buffer.view_of


def is_private(buffer: ir.Buffer) -> bool:
    """A buffer every thread holds a whole copy of: local, var, or a one-element fragment
    (which each thread keeps in its own register; reducers are modelled as one tile)."""
    buffer = storage(buffer)
    return buffer.space in _PRIVATE or (
        buffer.space is MemorySpace.FRAGMENT and buffer.reducer_op is None
        and all(d == 1 for d in buffer.shape))


def _touches_private(stmt) -> bool:
    """Copies, fills and tile atomics with a thread-private side: per-thread work."""
    if isinstance(stmt, ir.Copy):
        regions = (stmt.src, stmt.dst)
    elif isinstance(stmt, ir.Fill):
        regions = (stmt.dst,)
    elif isinstance(stmt, ir.AtomicAdd) and isinstance(stmt.value, ir.Region):
        regions = (stmt.dst, stmt.value)
    else:
        return False
    return any(storage(r.buffer).space in _PRIVATE for r in regions)


def cooperative_name(stmt):
    """The `T.` name of `stmt` when the whole block runs it together, else None."""
    if _touches_private(stmt):
        return None
    if isinstance(stmt, ir.AtomicAdd) and isinstance(stmt.value, ir.Region):
        return f"T.atomic_{stmt.op} of a tile"
    return _COOPERATIVE.get(type(stmt))


def _is_thread(kernel: ir.Kernel, e) -> bool:
    return isinstance(e, ir.Var) and (e is kernel.thread_var or e.kind is ir.VarKind.THREAD)


def _own_reads(kernel: ir.Kernel, stmt, per_thread: frozenset) -> bool:
    """Whether `stmt` itself reads the thread index or a per-thread buffer (a T.ws region's
    condition aside: it only names the region's threads)."""
    if is_region(stmt):
        return False
    for e in statement_exprs(stmt):
        for x in sub_expressions(e):
            if _is_thread(kernel, x) or \
                    (isinstance(x, ir.Load) and id(storage(x.buffer)) in per_thread):
                return True
    if isinstance(stmt, ir.Copy):
        return id(storage(stmt.src.buffer)) in per_thread
    if isinstance(stmt, ir.AtomicAdd) and isinstance(stmt.value, ir.Region):
        return id(storage(stmt.value.buffer)) in per_thread
    return False


def _holds_cooperative(stmt) -> bool:
    return any(cooperative_name(s) is not None for s in statements((stmt,)))


def _runs_per_thread(kernel: ir.Kernel, stmt, per_thread: frozenset) -> bool:
    """Whether `stmt`, reached in block-wide code, must run per thread: it reads the thread
    index or a per-thread buffer itself, or it is a loop or condition of per-thread work of
    which one statement does. A loop or condition holding block-wide operations runs per thread
    only when its own bound or condition is per-thread (then `check_per_thread` refuses
    those operations); its other statements each decide for themselves."""
    if kernel.thread_var is None or isinstance(stmt, ir.ParallelFor):
        return False
    if isinstance(stmt, ir.ThreadCopy):
        return True   # T.ptx_cp_async: each thread's own copy, wherever it is written
    if isinstance(stmt, ir.AtomicAdd) and isinstance(stmt.dst, ir.Load):
        # Outside T.Parallel every thread runs an element atomic (TileLang's scalar code runs
        # on all threads): `T.atomic_add(s[0], 1)` adds once per thread.
        return True
    if _own_reads(kernel, stmt, per_thread):
        return True
    if not child_bodies(stmt) or _holds_cooperative(stmt):
        return False
    return any(_own_reads(kernel, s, per_thread) for s in statements((stmt,)))


def statement_modes(kernel: ir.Kernel, per_thread: frozenset) -> Iterator:
    """(statement, Mode) for every statement, in program order, as the interpreter runs it."""
    def visit(body, mode):
        for s in body:
            if mode is Mode.BLOCK and _runs_per_thread(kernel, s, per_thread):
                mode_here = Mode.THREAD
            else:
                mode_here = mode
            yield s, mode_here
            inner = Mode.PARALLEL if isinstance(s, ir.ParallelFor) else mode_here
            for child in child_bodies(s):
                yield from visit(child, inner)

    yield from visit(kernel.body, Mode.BLOCK)


def _init_reads_thread(kernel: ir.Kernel, buffer: ir.Buffer) -> bool:
    return buffer.init is not None and \
        any(_is_thread(kernel, x) for x in sub_expressions(buffer.init))


def per_thread_buffers(kernel: ir.Kernel) -> frozenset:
    """ids of the private buffers that hold one value per thread: written by per-thread code
    or initialised from the thread index. A fixed point, since reading one makes a statement
    per-thread (and a loop carries values backwards, so order does not matter)."""
    if kernel.thread_var is None:
        return frozenset()
    found = {id(b) for b in kernel.allocations
             if is_private(b) and _init_reads_thread(kernel, b)}
    while True:
        before = len(found)
        for s, mode in statement_modes(kernel, frozenset(found)):
            if mode is Mode.THREAD:
                found |= {id(b) for b in buffers_written(s) if is_private(b)}
        if len(found) == before:
            return frozenset(found)


def runs_per_thread(ctx, stmt) -> bool:
    """`_runs_per_thread` for the interpreted kernel, remembered per statement."""
    cache = ctx.runs_per_thread
    key = id(stmt)
    if key not in cache:
        cache[key] = (stmt, _runs_per_thread(ctx.kernel, stmt, ctx.per_thread))
    return cache[key][1]


def thread_space(kernel: ir.Kernel, env):
    """`env` with a one-axis iteration space over the block's threads, the thread index bound
    to `arange(threads)` along it."""
    inner = env.with_space((kernel.threads,))
    tid = jnp.arange(kernel.threads, dtype=jnp.int32)
    inner = inner.bind(kernel.thread_var, tid)
    if env.region is not None:   # inside T.ws: the region's threads only
        first, count = env.region
        inner = inner.masked((tid >= first) & (tid < first + count))
    return inner


def in_thread_space(kernel: ir.Kernel, env) -> bool:
    return kernel.thread_var is not None and id(kernel.thread_var) in env.values


def lane(memory, buffer: ir.Buffer, env, loc=None):
    """The thread index (over the thread space) that selects each thread's copy of `buffer`,
    or None when `buffer` has one copy per block."""
    if id(storage(buffer)) not in memory.ctx.per_thread:
        return None
    kernel = memory.ctx.kernel
    if not in_thread_space(kernel, env):
        raise memory.ctx.error(
            f"block-wide code reads {buffer.describe()}, which holds a different value in each "
            "thread (per-thread code writes it); read it in per-thread code (code that reads "
            "the thread index, T.get_thread_binding) and pass the value on through shared "
            "memory", loc)
    return env.values[id(kernel.thread_var)]


def check_per_thread(memory, stmt) -> None:
    """Refuses a block-wide operation in per-thread code (see the module docstring)."""
    name = cooperative_name(stmt)
    if name is not None:
        raise memory.ctx.error(
            f"{name} in per-thread code (code that reads the thread index, "
            "T.get_thread_binding, or a thread-private buffer holding per-thread values, or "
            f"runs under a condition or loop bound that does): {name} runs once for the whole "
            "block, with every thread doing its share; move it out of the per-thread code",
            stmt.loc)
