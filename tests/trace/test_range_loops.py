"""`for i in range(...)` inside `with T.Kernel` is TileLang's `T.serial`: one loop in the IR
(and the CUDA) with a traced index, any static step (negative counts down), Python's own loop
outside the kernel block or when `range` is not the builtin."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jtile
import jtile.language as T
from jtile.ir import nodes as ir
from tests.trace.helpers import body_of, located

ROWS, COLS = 8, 32


def _x(seed=0):
    return jax.random.normal(jax.random.PRNGKey(seed), (ROWS, COLS), jnp.float32)


def weighted_rows(X):
    """O[0] = fold of acc * 2 + X[r] over r = 7, 5, 3, 1: the order of the rows matters."""
    O = T.empty((1, COLS), "float32")
    with T.Kernel(1, threads=COLS):
        acc = T.alloc_fragment((COLS,), "float32")
        T.clear(acc)
        for r in range(ROWS - 1, -1, -2):
            for j in T.Parallel(COLS):
                acc[j] = acc[j] * 2 + X[r, j]
        for j in T.Parallel(COLS):
            O[0, j] = acc[j]
    return O


def test_a_range_loop_in_the_kernel_is_one_serial_loop():
    def kernel(X, O):
        with T.Kernel(1, threads=64):
            for k in range(4):
                for i in T.Parallel(16):
                    O[k * 16 + i] = X[k * 16 + i] + 1

    (loop,) = body_of(kernel)
    assert isinstance(loop, ir.For) and loop.kind is ir.LoopKind.SERIAL
    assert (loop.start.value, loop.extent.value, loop.step) == (0, 4, 1)


def test_a_counting_down_range_runs_in_order_in_both_modes():
    x = _x()
    call = jtile.pallas_like(weighted_rows, interpret=True)
    expected = np.zeros(COLS)
    for r in (7, 5, 3, 1):
        expected = expected * 2 + np.asarray(x[r], np.float64)
    np.testing.assert_allclose(np.asarray(call(x))[0], expected, rtol=1e-6, atol=1e-6)
    source = jtile.pallas_like(weighted_rows).lower(x, target="sm_90a").cuda_source()
    assert "for (int k = 0; k < 4; ++k)" in source and "((k * -2) + 7)" in source


def test_range_outside_the_kernel_block_is_pythons():
    seen = []

    def kernel(X, O):
        for n in range(2):   # before T.Kernel: plain Python, the index an int
            seen.append(n)
        with T.Kernel(1, threads=64):
            for i in T.Parallel(64):
                O[i] = X[i]

    body_of(kernel)
    assert seen == [0, 1]


def test_a_shadowed_range_is_called_as_written():
    def range(n):   # noqa: A001 (the kernel's own `range`)
        return (0, 1)

    def kernel(X, O):
        with T.Kernel(1, threads=64):
            for k in range(99):
                for i in T.Parallel(32):
                    O[k * 32 + i] = X[k * 32 + i]

    body = body_of(kernel)
    assert len(body) == 2 and all(isinstance(s, ir.ParallelFor) for s in body)


def test_the_traced_index_used_as_a_python_index_is_refused_with_the_way_out():
    def kernel(X, O):
        with T.Kernel(1, threads=64):
            offsets = [0, 32]
            for k in range(2):
                for i in T.Parallel(32):
                    O[offsets[k] + i] = X[i]

    with pytest.raises(jtile.JtileTraceError,
                       match=located("kernel", "loop over a tuple", "test_range_loops.py")):
        body_of(kernel)


def test_a_zero_step_is_refused():
    def kernel(X, O):
        with T.Kernel(1, threads=64):
            for k in range(0, 4, 0):
                O[k] = X[k]

    with pytest.raises(jtile.JtileTraceError, match="step 0 must be a nonzero static int"):
        body_of(kernel)


def test_pipelined_refuses_a_negative_stage_count():
    # TileLang's T.Pipelined(start, stop, num_stages): the third positional argument is the
    # stage count, not a step.
    def kernel(X, O):
        with T.Kernel(1, threads=64):
            s = T.alloc_shared((16,), "float32")
            for k in T.Pipelined(3, 0, -1):
                T.copy(X[k * 16:(k + 1) * 16], s)
                T.copy(s, O[k * 16:(k + 1) * 16])

    with pytest.raises(jtile.JtileTraceError, match="T.Pipelined: num_stages -1 must be"):
        body_of(kernel)


def test_a_python_name_accumulated_in_the_loop_is_refused_with_the_way_to_accumulate():
    def kernel(X):
        Y = T.empty((64,), "float32")
        with T.Kernel(1, threads=64):
            for n in T.Parallel(64):
                acc = X[n, 0]
                for k in range(1, 4):
                    acc = acc + X[n, k]   # one traced iteration's expression
                Y[n] = acc
        return Y

    x = np.ones((64, 4), np.float32)
    rule = "the loop index k is used after its loop.*Accumulate into a T.alloc_var"
    with pytest.raises(jtile.JtileTraceError, match=rule):
        jtile.pallas_like(kernel, interpret=True)(x)
    with pytest.raises(jtile.JtileTraceError, match=rule):   # not a CUDA compile error
        jtile.pallas_like(kernel).lower(x, target="sm_90a").cuda_source()
