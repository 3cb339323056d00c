"""A name bound to a value read from a buffer, used after that buffer is written: TileLang
would use the captured value, jtile would read the buffer again, so tracing refuses it."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jtile
import jtile.language as T


def _run(kernel, n=64):
    x = jnp.arange(n, dtype=jnp.float32) + 1.0
    call = jtile.pallas_like(kernel, interpret=True,
                             out_shape=jax.ShapeDtypeStruct((n,), jnp.float32))
    return x, call


def test_use_after_the_buffer_is_written_is_refused_with_both_lines():
    def kernel(X, O):
        with T.Kernel(1, threads=64):
            s = T.alloc_shared((64,), "float32")
            T.copy(X, s)
            for i in T.Parallel(64):
                v = s[i]
                s[i] = 0.0
                O[i] = v  # TileLang stores the captured X[i]; a re-read would store 0

    x, call = _run(kernel)
    with pytest.raises(jtile.JtileTraceError, match=r"`v` was bound at test_bound_values.py:\d+ "
                       r"to a value read from s .* which test_bound_values.py:\d+ has written"):
        call(x)


def test_uses_before_the_write_and_other_buffers_are_fine():
    def kernel(X, O):
        with T.Kernel(1, threads=64):
            s = T.alloc_shared((64,), "float32")
            T.copy(X, s)
            for i in T.Parallel(64):
                v = s[i] * 2.0
                O[i] = v + 1.0     # used before any write of s
                s[i] = v           # the write itself may use it

    x, call = _run(kernel)
    np.testing.assert_allclose(np.asarray(call(x)), np.asarray(x) * 2.0 + 1.0)


def test_a_value_bound_before_a_loop_that_writes_its_buffer_is_refused():
    def kernel(X, O):
        with T.Kernel(1, threads=64):
            s = T.alloc_shared((64,), "float32")
            T.copy(X, s)
            first = s[0]
            for k in T.serial(4):
                O[k] = first      # iteration 2 would read the 0 written below
                s[0] = 0.0

    x, call = _run(kernel)
    with pytest.raises(jtile.JtileTraceError, match=r"`first` was bound at "
                       r"test_bound_values.py:\d+, before this loop, to a value read from s"):
        call(x)


def test_a_value_bound_inside_the_loop_each_iteration_is_fine():
    def kernel(X, O):
        with T.Kernel(1, threads=64):
            s = T.alloc_shared((64,), "float32")
            T.copy(X, s)
            for k in T.serial(4):
                v = s[k]
                O[k] = v * 3.0
                s[k] = 0.0

    x, call = _run(kernel)
    np.testing.assert_allclose(np.asarray(call(x))[:4], np.asarray(x)[:4] * 3.0)


def _read_then_clear(s, i):
    """A plain helper (its source is not rewritten): its `v` is no tracked binding."""
    v = s[i]
    s[i] = 0.0
    return v


def test_a_read_kept_in_a_helper_function_and_used_after_a_write_is_refused():
    def kernel(X, O):
        with T.Kernel(1, threads=64):
            s = T.alloc_shared((64,), "float32")
            T.copy(X, s)
            for i in T.Parallel(64):
                O[i] = _read_then_clear(s, i)   # TileLang stores X[i]; a re-read gives 0

    x, call = _run(kernel)
    with pytest.raises(jtile.JtileTraceError, match=r"test_bound_values.py:\d+: a value read "
                       r"from s \(shared\S* float32 \(64,\)\) is used here after "
                       r"test_bound_values.py:\d+ wrote s; jtile reads it again"):
        call(x)


def test_a_read_kept_in_a_list_before_a_loop_that_writes_its_buffer_is_refused():
    def kernel(X, O):
        with T.Kernel(1, threads=64):
            s = T.alloc_shared((64,), "float32")
            T.copy(X, s)
            kept = [s[0]]
            for k in T.serial(4):
                O[k] = kept[0]
                s[0] = s[0] + 1.0

    x, call = _run(kernel)
    with pytest.raises(jtile.JtileTraceError, match=r"a value read from s .* before this "
                       r"loop is used inside it"):
        call(x)


def test_a_branch_on_a_value_its_body_overwrites_is_fine():
    # The condition is evaluated before the body writes the buffer, in TileLang and in jtile.
    def kernel(X, O):
        with T.Kernel(1, threads=64):
            tx = T.get_thread_binding()
            s = T.alloc_shared((64,), "float32")
            T.copy(X, s)
            c = s[tx]
            if c > 32.0:
                s[tx] = -c
            if s[tx] > 16.0:        # the same with the read written in the condition
                s[tx] = 0.0
            O[tx] = s[tx]

    x, call = _run(kernel)
    want = np.where(np.asarray(x) > 32.0, -np.asarray(x), np.asarray(x))
    want = np.where(want > 16.0, 0.0, want)
    np.testing.assert_allclose(np.asarray(call(x)), want)


def test_a_while_condition_read_again_each_iteration_is_fine():
    def kernel(X, O):
        with T.Kernel(1, threads=64):
            tx = T.get_thread_binding()
            s = T.alloc_shared((64,), "float32")
            T.copy(X, s)
            while s[tx] < 100.0:
                s[tx] = s[tx] * 2.0
            O[tx] = s[tx]

    x, call = _run(kernel)
    want = np.asarray(x).copy()
    while (want < 100.0).any():
        want = np.where(want < 100.0, want * 2.0, want)
    np.testing.assert_allclose(np.asarray(call(x)), want)
