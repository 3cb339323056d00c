"""Per-thread code in interpret mode: statements outside `T.Parallel` that read the thread
index (`T.get_thread_binding()`) run over a vector of the block's threads.

Such a statement is evaluated with the thread index bound to `arange(threads)` as a one-axis
iteration space, exactly as a `T.Parallel` over the threads would be: stores scatter one
element per thread, a `T.If` on a thread-dependent condition masks the threads that skip it,
and a loop whose bound differs between threads runs to the largest bound with the finished
threads masked off. Statements run in program order, so `T.sync_threads()` and mbarrier waits
need no model of their own; a kernel whose threads would race shows poisoned (NaN) reads.

Statements that do not read the thread index keep running once per block, so kernels that
never read it run exactly as fast as before. What per-thread code cannot hold:

- tile operations and `T.Parallel`, which the whole block runs together (`verify` already
  refuses them under thread-dependent conditions);
- stores into thread-private buffers (`T.alloc_local`, `T.alloc_var`): interpret mode keeps
  one copy of those per block, so a per-thread value there has no model; shared memory
  indexed by the thread index holds it instead.
"""

from __future__ import annotations

import jax.numpy as jnp

from jtile.ir import nodes as ir
from jtile.ir.types import MemorySpace
from jtile.ir.walk import child_bodies, statement_exprs, statements, sub_expressions

_PRIVATE = (MemorySpace.LOCAL, MemorySpace.VAR)

_BLOCK_OPS = (ir.Copy, ir.Fill, ir.Gemm, ir.Reduce, ir.FinalizeReducer, ir.ParallelFor)


def _is_thread(kernel: ir.Kernel, e) -> bool:
    return isinstance(e, ir.Var) and (e is kernel.thread_var or e.kind is ir.VarKind.THREAD)


def _own_reads(kernel: ir.Kernel, stmt) -> bool:
    return any(_is_thread(kernel, x) for e in statement_exprs(stmt) for x in sub_expressions(e))


def _holds_block_op(stmt) -> bool:
    for s in statements((stmt,)):
        if isinstance(s, _BLOCK_OPS) or \
                (isinstance(s, ir.AtomicAdd) and isinstance(s.value, ir.Region)):
            return True
    return False


def reads_thread_index(kernel: ir.Kernel, stmt) -> bool:
    """Whether `stmt`, run outside T.Parallel, must run per thread: it reads the thread index
    itself, or it is a loop or condition of element statements of which one reads it. A loop
    or condition holding block-wide operations runs per thread only when its own bound or
    condition reads the index (then `check_per_thread` refuses those operations)."""
    if kernel.thread_var is None or isinstance(stmt, ir.ParallelFor):
        return False
    if _own_reads(kernel, stmt):
        return True
    if not child_bodies(stmt) or _holds_block_op(stmt):
        return False
    return any(_own_reads(kernel, s) for s in statements((stmt,)))


def thread_space(kernel: ir.Kernel, env):
    """`env` with a one-axis iteration space over the block's threads, the thread index bound
    to `arange(threads)` along it."""
    inner = env.with_space((kernel.threads,))
    return inner.bind(kernel.thread_var, jnp.arange(kernel.threads, dtype=jnp.int32))


def in_thread_space(kernel: ir.Kernel, env) -> bool:
    return kernel.thread_var is not None and id(kernel.thread_var) in env.values


def check_per_thread(memory, stmt, block_op_name) -> None:
    """Refuses what per-thread code cannot hold (see the module docstring)."""
    if block_op_name is not None:
        raise memory.ctx.error(
            f"{block_op_name} in per-thread code (code that reads the thread index, "
            "T.get_thread_binding, or runs under a condition or loop bound that does): "
            f"{block_op_name} runs once for the whole block, with every thread doing its share; "
            "move it out of the per-thread code", stmt.loc)
    if isinstance(stmt, ir.Store) and stmt.buffer.space in _PRIVATE:
        raise memory.ctx.error(
            f"this statement writes {stmt.buffer.describe()} per thread (it reads the thread "
            "index, T.get_thread_binding, or runs under code that does); interpret mode keeps "
            "one copy of a thread-private buffer per block, so per-thread values have no model "
            "there: keep them in shared memory indexed by the thread index", stmt.loc)
