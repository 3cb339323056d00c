"""verify refuses tile operations under control flow that differs between a block's threads.

Before this rule, a `T.copy` under `with T.If(tid < 32)` compiled to a copy whose other threads'
shares were silently skipped, with a `__syncthreads()` inside a branch most threads never enter
(a hang on the GPU). Each refused case below went through `verify` without an error then; the
allowed cases are the per-thread work that such branches exist for.
"""

from __future__ import annotations

import inspect
import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jtile
import jtile.language as T
from jtile.ir.types import DType
from jtile.passes.verify import verify
from jtile.trace.trace_kernel import trace

F32 = DType.float32
FILE = os.path.basename(__file__)


def traced(fn, shape=(128,)):
    return trace(fn, [(shape, F32)], [(shape, F32)])


def line_of(fn, marker: str) -> int:
    """The line of `fn`'s source that carries the comment `# <marker>`."""
    lines, first = inspect.getsourcelines(fn)
    (offset,) = [i for i, text in enumerate(lines) if text.rstrip().endswith(f"# {marker}")]
    return first + offset


def refused(fn, op: str, where: str, shape=(128,)):
    """Asserts verify refuses `fn` naming the kernel, `op` at its line and the condition's line."""
    pattern = (rf"^{fn.__name__} \({FILE}:\d+\): {FILE}:{line_of(fn, 'op')}: {re.escape(op)} "
               rf"under {re.escape(where)} at {FILE}:{line_of(fn, 'cond')}, which differs "
               r"between the threads of a block")
    with pytest.raises(jtile.JtileTraceError, match=pattern):
        verify(traced(fn, shape))


# ----------------------------------------------------------------------------- refused


def copy_under_thread_condition(X, O):
    with T.Kernel(1, threads=128):
        tid = T.get_thread_binding()
        s = T.alloc_shared((128,), "float32")
        with T.If(tid < 32):  # cond
            T.copy(X, s)  # op
        T.copy(s, O)


def fill_under_derived_condition(X, O):
    with T.Kernel(1, threads=128):
        warp = T.get_thread_binding() // 32
        frag = T.alloc_fragment((128,), "float32")
        with T.If(warp == 0):  # cond
            T.fill(frag, 1.0)  # op
        T.copy(frag, O)


def gemm_in_else(X, O):
    with T.Kernel(1, threads=128):
        tid = T.get_thread_binding()
        a = T.alloc_shared((16, 16), "float16")
        acc = T.alloc_fragment((16, 16), "float32")
        T.clear(acc)
        with T.If(tid >= 64):  # cond
            O[tid // 16, tid % 16] = X[tid // 16, tid % 16]
        with T.Else():
            T.gemm(a, a, acc)  # op
        T.copy(acc, O[0:16, 0:16])


def reduce_under_local_copy_of_tid(X, O):
    with T.Kernel(1, threads=128):
        tid = T.get_thread_binding()
        lane = T.alloc_local((1,), "int32")
        lane[0] = tid % 32
        frag = T.alloc_fragment((128,), "float32")
        total = T.alloc_fragment((1,), "float32")
        T.copy(X, frag)
        with T.If(lane[0] == 0):  # cond
            T.reduce_sum(frag, total, dim=0)  # op
        T.copy(frag, O)


def sync_under_thread_condition(X, O):
    with T.Kernel(1, threads=128):
        tid = T.get_thread_binding()
        with T.If(tid < 64):  # cond
            O[tid] = X[tid]
            T.sync_threads()  # op
        with T.Else():
            O[tid] = X[tid] * 2.0


def parallel_under_thread_condition(X, O):
    with T.Kernel(1, threads=128):
        tid = T.get_thread_binding()
        with T.If(tid < 64):  # cond
            for i in T.Parallel(128):  # op
                O[i] = X[i]


def copy_in_thread_dependent_loop(X, O):
    with T.Kernel(1, threads=128):
        tid = T.get_thread_binding()
        s = T.alloc_shared((128,), "float32")
        for _ in T.serial(tid // 32):  # cond
            T.copy(X, s)  # op
        T.copy(s, O)


def copy_under_shared_element_at_tid(X, O):
    with T.Kernel(1, threads=128):
        tid = T.get_thread_binding()
        s = T.alloc_shared((128,), "float32")
        T.copy(X, s)
        with T.If(s[tid] > 0):  # cond
            T.copy(s, O)  # op


def tile_atomic_in_nested_uniform_if(X, O):
    with T.Kernel(2, threads=128) as bx:
        tid = T.get_thread_binding()
        with T.If(tid == 0):  # cond
            with T.If(bx == 0):
                T.atomic_add(O[0:128], X[0:128])  # op


@pytest.mark.parametrize("fn, op, where", [
    (copy_under_thread_condition, "T.copy", "the condition of T.If"),
    (fill_under_derived_condition, "T.fill", "the condition of T.If"),
    (gemm_in_else, "T.gemm", "T.Else of the T.If"),
    (reduce_under_local_copy_of_tid, "T.reduce_sum", "the condition of T.If"),
    (sync_under_thread_condition, "T.sync_threads", "the condition of T.If"),
    (parallel_under_thread_condition, "T.Parallel", "the condition of T.If"),
    (copy_in_thread_dependent_loop, "T.copy", "the bound of the loop"),
    (copy_under_shared_element_at_tid, "T.copy", "the condition of T.If"),
    (tile_atomic_in_nested_uniform_if, "T.atomic_add of a tile", "the condition of T.If"),
], ids=lambda v: getattr(v, "__name__", None))
def test_cooperative_work_under_thread_dependent_control_is_refused(fn, op, where):
    refused(fn, op, where, shape=(16, 16) if fn is gemm_in_else else (128,))


def test_interpret_mode_refuses_it_too():
    f = jtile.pallas_like(copy_under_thread_condition,
                          out_shape=jax.ShapeDtypeStruct((128,), jnp.float32), interpret=True)
    with pytest.raises(jtile.JtileError, match=r"T.copy under the condition of T.If"):
        f(jnp.ones(128, jnp.float32))


def test_compiled_lowering_refuses_it_before_generating_code():
    f = jtile.pallas_like(sync_under_thread_condition,
                          out_shape=jax.ShapeDtypeStruct((128,), jnp.float32))
    with pytest.raises(jtile.JtileError, match=r"T.sync_threads under the condition of T.If"):
        f.lower(jax.ShapeDtypeStruct((128,), jnp.float32), target="sm_80")


# ----------------------------------------------------------------------------- allowed


def element_work_per_thread(X, O):
    with T.Kernel(2, threads=128) as bx:
        tid = T.get_thread_binding()
        s = T.alloc_shared((128,), "float32")
        bar = T.alloc_barrier([64])
        scratch = T.alloc_local((4,), "float32")
        T.copy(X[0:128], s)
        with T.If(tid < 64):
            O[tid] = s[tid] * 2.0
            T.mbarrier_arrive(bar[0])
        with T.Else():
            T.mbarrier_wait_parity(bar[0], 0)
            T.fill(scratch, 3.0)                   # a thread-private tile: per-thread work
            T.copy(X[tid - 64:tid - 60], scratch)  # likewise
            O[tid] = scratch[0] + s[tid]
        with T.If(bx == 0):                        # uniform over the block
            T.copy(s, O)
        T.sync_threads()                           # after the branches, every thread


def test_per_thread_work_and_uniform_conditions_are_allowed():
    kernel = traced(element_work_per_thread)
    assert verify(kernel) is kernel


def test_a_uniform_value_in_a_private_buffer_keeps_tile_ops_allowed():
    def uniform_flag(X, O):
        with T.Kernel(4, threads=128) as bx:
            flag = T.alloc_local((1,), "int32")
            flag[0] = bx % 2
            with T.If(flag[0] == 0):
                T.copy(X, O)
            with T.Else():
                T.fill(O, 0.0)

    kernel = traced(uniform_flag)
    assert verify(kernel) is kernel
    f = jtile.pallas_like(uniform_flag, out_shape=jax.ShapeDtypeStruct((128,), jnp.float32),
                          interpret=True)
    x = np.random.default_rng(0).standard_normal(128).astype(np.float32)
    np.testing.assert_allclose(f(x), np.zeros(128, np.float32))  # the last block (bx 3) fills
