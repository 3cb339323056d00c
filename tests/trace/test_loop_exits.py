"""`break` and `continue` of a `for` loop, as TileLang gives them: on static values in a loop
Python runs they exit as Python does; under a traced condition, or in a loop recorded for the
GPU (`T.serial`, `T.unroll`, `T.Pipelined`), a flag skips the rest of the loop. Interpret mode,
compiled for sm_80 and sm_90a, and run on a GPU where one is present."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jtile
import jtile.language as T
from tests.language.kernel_runs import run_both_ways


def _spec(shape, dtype=jnp.float32):
    return jax.ShapeDtypeStruct(shape, dtype)


def _python_sum(row):
    """What the kernels below compute for one row, by Python's rules."""
    total = 0.0
    for value in row:
        if value < 0:
            break
        if value > 5:
            continue
        total += value
    return total


def sum_until_negative(X, O, *, loop):
    """Per thread: sum its row until a negative value, skipping values above 5. `loop` is
    T.serial (recorded for the GPU) or range (unrolled while tracing: the exits are traced)."""
    N, L = X.shape
    with T.Kernel(1, threads=128):
        tx = T.get_thread_binding()
        acc = T.alloc_var("float32")
        for i in loop(L):
            if X[tx, i] < 0:
                break
            if X[tx, i] > 5:
                continue
            acc = acc + X[tx, i]
        O[tx] = acc


@pytest.mark.parametrize("loop", [T.serial, range])
def test_break_and_continue_under_a_thread_dependent_condition(loop):
    rng = np.random.default_rng(8)
    x = rng.integers(-2, 9, (128, 12)).astype(np.float32)
    kernel = functools.partial(sum_until_negative, loop=loop)
    (out,), cuda = run_both_ways(kernel, (x,), _spec((128,)))
    np.testing.assert_array_equal(out, [_python_sum(row) for row in x])
    assert "loop_broke" in cuda and "loop_skips" in cuda


def test_a_static_break_in_a_python_loop_stays_a_python_break():
    def first_two(X, O):
        with T.Kernel(1, threads=32):
            tx = T.get_thread_binding()
            acc = T.alloc_var("float32")
            for i in list(range(8)):   # a Python loop (`range` alone is T.serial)
                if i == 2:
                    break
                acc = acc + X[tx, i]
            O[tx] = acc

    x = np.random.default_rng(9).standard_normal((32, 8)).astype(np.float32)
    (out,), cuda = run_both_ways(first_two, (x,), _spec((32,)), rtol=1e-6)
    np.testing.assert_allclose(out, x[:, 0] + x[:, 1], rtol=1e-6)
    assert "loop_broke" not in cuda and "for (" not in cuda.split("__global__")[1]


def test_an_inner_break_starts_again_at_each_outer_iteration():
    def first_positive_per_row(X, O):
        R, L = X.shape
        with T.Kernel(1, threads=32):
            tx = T.get_thread_binding()
            for r in T.serial(R):
                found = T.alloc_var("int32")
                found = -1
                for i in T.serial(L):
                    if X[r, i] > 0:
                        found = i
                        break
                if tx == 0:
                    O[r] = found

    x = np.random.default_rng(10).standard_normal((6, 9)).astype(np.float32)
    x[3] = -1.0  # no positive value: -1
    (out,), _ = run_both_ways(first_positive_per_row, (x,), _spec((6,), jnp.int32))
    want = [int(np.argmax(row > 0)) if (row > 0).any() else -1 for row in x]
    np.testing.assert_array_equal(out, want)


def test_for_else_runs_when_no_traced_break_was_taken():
    def flag_rows(X, O):
        R, L = X.shape
        with T.Kernel(1, threads=32):
            tx = T.get_thread_binding()
            if tx < R:
                O[tx] = 0
                for i in T.serial(L):
                    if X[tx, i] > 2:
                        break
                else:
                    O[tx] = 1

    x = np.random.default_rng(11).standard_normal((32, 6)).astype(np.float32)
    (out,), _ = run_both_ways(flag_rows, (x,), _spec((32,), jnp.int32))
    np.testing.assert_array_equal(out, (x <= 2).all(axis=1).astype(np.int32))


def test_a_uniform_break_before_block_barriers_in_the_loop():
    """TileLang's top-k selector shape: rounds end early on a block-uniform value, and the
    loop body synchronises the block."""
    def rounds(X, O):
        (N,) = X.shape
        with T.Kernel(1, threads=128):
            tx = T.get_thread_binding()
            total = T.alloc_shared((1,), "float32")
            left = T.alloc_var("float32")
            if tx == 0:
                total[0] = 0.0
            T.sync_threads()
            left = X[0]
            for r in T.serial(N - 1):
                if left <= 0:
                    break
                T.sync_threads()
                if tx == 0:
                    total[0] = total[0] + X[r + 1]
                T.sync_threads()
                left = left - 1
            O[tx] = total[0]

    x = np.array([3, 10, 20, 30, 40, 50], np.float32)
    (out,), _ = run_both_ways(rounds, (x,), _spec((128,)))
    np.testing.assert_array_equal(out, np.full(128, 60.0, np.float32))


def test_break_continue_and_else_of_a_traced_while():
    def sum_row(X, O):
        N, L = X.shape
        with T.Kernel(1, threads=128):
            tx = T.get_thread_binding()
            i = T.alloc_var("int32")
            acc = T.alloc_var("float32")
            v = T.alloc_var("float32")
            while i < L:
                v = X[tx, i]
                i = i + 1
                if v < 0:
                    break
                if v > 5:
                    continue
                acc = acc + v
            else:
                acc = acc + 1000
            O[tx] = acc

    rng = np.random.default_rng(13)
    x = rng.integers(-2, 9, (128, 12)).astype(np.float32)
    x[5] = 1.0   # no negative value: the else runs
    (out,), _ = run_both_ways(sum_row, (x,), _spec((128,)))
    want = [_python_sum(row) + (1000 if (row >= 0).all() else 0) for row in x]
    np.testing.assert_array_equal(out, want)


def test_return_from_a_traced_loop_is_still_refused():
    def leaves(X, O):
        with T.Kernel(1, threads=32):
            i = T.alloc_var("int32")
            while i < 8:
                if X[i] < 0:
                    return
                i = i + 1
            O[0] = i

    launch = jtile.pallas_like(leaves, out_shape=_spec((1,), jnp.int32), interpret=True)
    with pytest.raises(jtile.JtileTraceError, match=r"`return` at test_loop_exits.py:\d+ would "
                                                    r"leave an `if`"):
        launch(np.ones(8, np.float32))
