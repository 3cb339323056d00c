"""Barriers under a condition on the thread index: the threads of `if tx < C:` meet at a named
barrier over just them (a block barrier there would wait for threads that never come), and a
branch whose participants are not known is refused where its threads exchange data, unless
each thread only touches its own elements. Interpret mode, compiled for sm_80 / sm_90a, and
compiled against interpret mode on a GPU (tests/language/kernel_runs.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jtile
import jtile.language as T
from tests.language.kernel_runs import run_both_ways


def _spec(shape):
    return jax.ShapeDtypeStruct(shape, jnp.float32)


def halves_then_neighbours(X, Y):
    with T.Kernel(1, threads=256):
        tx = T.get_thread_binding()
        s = T.alloc_shared((256,), "float32")
        s[tx] = X[tx]
        T.sync_threads()
        if tx < 128:
            s[tx] = s[tx] + s[tx + 128]
            Y[tx] = s[(tx + 1) % 128]           # another thread's element: a barrier first
        else:
            s[tx] = s[tx] * 3.0
            Y[tx] = s[(tx - 127) % 128 + 128]   # likewise among the else branch's threads


def test_threads_of_a_branch_meet_at_a_named_barrier_over_them():
    x = np.random.default_rng(11).standard_normal(256).astype(np.float32)
    (y,), source = run_both_ways(halves_then_neighbours, (x,), _spec((256,)))
    first = x[:128] + x[128:]
    second = 3 * x[128:]
    np.testing.assert_array_equal(y[:128], np.roll(first, -1))
    np.testing.assert_array_equal(y[128:], second[(np.arange(128, 256) - 127) % 128])
    branch = source.split("if ((tx < 128))")[1]
    assert "jt::named_barrier_sync(15, 128);" in branch
    assert "jt::named_barrier_sync(14, 128);" in branch
    assert "__syncthreads" not in branch   # a block barrier here waited for the other half


def test_a_branch_inside_a_branch_exchanging_data_is_refused():
    def nested(X, Y):
        with T.Kernel(1, threads=256):
            tx = T.get_thread_binding()
            s = T.alloc_shared((256,), "float32")
            s[tx] = X[tx]
            T.sync_threads()
            if tx < 128:
                if tx % 2 == 0:
                    s[tx] = s[tx] * 2.0
                    Y[tx] = s[tx + 2]

    call = jtile.pallas_like(nested, out_shape=_spec((256,)))
    x = np.zeros(256, np.float32)
    with pytest.raises(jtile.JtileTraceError,
                       match=r"under the condition of T.If .*s \(shared.dyn float32 \(256,\)\).*"
                             r"T.sync_threads\(\)"):
        call.lower(x, target="sm_80")


def test_threads_keeping_to_their_own_elements_need_no_barrier():
    def own_elements(X, Y):
        with T.Kernel(1, threads=128):
            tx = T.get_thread_binding()
            s = T.alloc_shared((128,), "float32")
            if tx % 3 == 0:
                s[tx] = X[tx] * 2.0
                s[tx] = s[tx] + 1.0      # the same element, by the same thread
                Y[tx] = s[tx]
            else:
                Y[tx] = X[tx]

    x = np.random.default_rng(12).standard_normal(128).astype(np.float32)
    (y,), source = run_both_ways(own_elements, (x,), _spec((128,)))
    expected = np.where(np.arange(128) % 3 == 0, 2 * x + 1, x)
    np.testing.assert_array_equal(y, expected)
    assert "__syncthreads" not in source and "named_barrier_sync" not in source


def ping_pong_rows(X, Y):
    """A radix-select round as TileLang's top-k writes it: under a branch that differs between
    threads, each thread reads row r of the shared ping-pong buffer and writes row r ^ 1 (and
    a second buffer at tx and tx + 128): loads and stores never meet, so no barrier."""
    with T.Kernel(1, threads=128):
        tx = T.get_thread_binding()
        rows = T.alloc_shared((2, 128), "float32")
        halves = T.alloc_shared((256,), "float32")
        rows[0, tx] = X[tx]
        halves[tx] = X[tx]
        halves[tx + 128] = 0.0
        T.sync_threads()
        for r in T.serial(3):
            if X[tx] > 0:
                v = rows[r % 2, tx]
                rows[(r % 2) ^ 1, tx] = v * 2.0 + halves[tx]
                halves[tx + 128] = rows[r % 2, tx] + 1.0
            else:
                rows[(r % 2) ^ 1, tx] = rows[r % 2, tx]
            T.sync_threads()
        Y[tx] = rows[1, tx] + halves[tx + 128]


def test_loads_and_stores_that_never_meet_need_no_barrier():
    x = np.random.default_rng(13).standard_normal(128).astype(np.float32)
    (y,), source = run_both_ways(ping_pong_rows, (x,), _spec((128,)))
    row = x.astype(np.float64)
    for _ in range(3):
        last = row
        row = np.where(x > 0, row * 2 + x, row)
    expected = np.where(x > 0, row + last + 1, row + 0)
    np.testing.assert_allclose(y, expected, rtol=1e-6, atol=1e-6)
    assert "named_barrier_sync" not in source


def test_rows_that_meet_in_the_next_iteration_of_a_loop_in_the_branch_are_refused():
    def rounds_inside(X, Y):
        with T.Kernel(1, threads=128):
            tx = T.get_thread_binding()
            rows = T.alloc_shared((2, 128), "float32")
            rows[0, tx] = X[tx]
            T.sync_threads()
            if X[tx] > 0:
                for r in T.serial(3):   # round r + 1 reads the row round r wrote
                    v = rows[r % 2, (tx + 1) % 128]
                    rows[(r % 2) ^ 1, tx] = v * 2.0
            Y[tx] = rows[1, tx]

    call = jtile.pallas_like(rounds_inside, out_shape=_spec((128,)))
    with pytest.raises(jtile.JtileTraceError, match=r"exchange data through shared memory "
                       r"\(rows"):
        call.lower(np.zeros(128, np.float32), target="sm_80")


def test_named_barriers_written_by_the_user():
    """TileLang's `T.sync_threads(barrier_id, arrive_count)`: the first 128 threads run a
    Hillis-Steele prefix sum over shared memory among themselves, meeting at barrier 3; the
    branch barriers jtile adds take ids the kernel does not use."""
    def prefix_sums(X, Y):
        with T.Kernel(1, threads=256):
            tx = T.get_thread_binding()
            s = T.alloc_shared((128,), "float32")
            t = T.alloc_shared((128,), "float32")
            if tx < 128:
                s[tx] = X[tx]
                T.sync_threads(3, 128)
                for step in T.serial(7):
                    shift = 1 << step
                    t[tx] = T.if_then_else(tx >= shift, s[tx - shift], 0.0) + s[tx]
                    T.sync_threads(15, 128)
                    s[tx] = t[tx]
                    T.sync_threads(3, 128)
                Y[tx] = s[tx]
            else:
                Y[tx] = X[tx] * 2.0

    x = np.random.default_rng(13).integers(-8, 8, 256).astype(np.float32)
    (y,), source = run_both_ways(prefix_sums, (x,), _spec((256,)))
    np.testing.assert_array_equal(y[:128], np.cumsum(x[:128]))
    np.testing.assert_array_equal(y[128:], 2 * x[128:])
    assert "jt::named_barrier_sync(3, 128);" in source
    assert "jt::named_barrier_sync(15, 128);" in source
    assert "__syncthreads" not in source.split("if ((tx < 128))")[1]
    # Barriers jtile places in the branch (if any) avoid the user's ids 3 and 15.
    for line in source.splitlines():
        if "named_barrier_sync(" in line and "(3, 128)" not in line and "(15, 128)" not in line:
            assert "(14, " in line or "(13, " in line, line


@pytest.mark.parametrize("split", ["ge", "gt_const"])
def test_the_other_spellings_of_a_split_at_a_warp_boundary(split):
    def upper_half(X, Y):
        with T.Kernel(1, threads=128):
            tx = T.get_thread_binding()
            s = T.alloc_shared((128,), "float32")
            cond = tx >= 64 if split == "ge" else 64 <= tx
            if cond:
                s[tx] = X[tx] * 2.0
                Y[tx] = s[(tx - 63) % 64 + 64]
            else:
                Y[tx] = X[tx]

    x = np.random.default_rng(16).standard_normal(128).astype(np.float32)
    (y,), source = run_both_ways(upper_half, (x,), _spec((128,)))
    expected = x.copy()
    expected[64:] = 2 * x[64 + (np.arange(64, 128) - 63) % 64]
    np.testing.assert_array_equal(y, expected)
    assert "jt::named_barrier_sync(15, 64);" in source and "__syncthreads" not in source


@pytest.mark.parametrize("where, count, arriving", [("top", 96, 128), ("branch", 64, 96)])
def test_a_named_barrier_count_that_would_hang_is_refused(where, count, arriving):
    """bar.sync lets `count` threads through at a time: 128 threads at a 96-thread barrier,
    or a 96-thread branch at a 64-thread one, would leave the last threads waiting forever."""
    def kernel(X, Y):
        with T.Kernel(1, threads=128):
            tx = T.get_thread_binding()
            if where == "top":
                T.sync_threads(1, count)
            else:
                if tx < 96:
                    T.sync_threads(1, count)
            Y[tx] = X[tx]

    for interpret in (True, False):
        call = jtile.pallas_like(kernel, out_shape=_spec((128,)), interpret=interpret)
        with pytest.raises(jtile.JtileTraceError,
                           match=rf"arrive_count={count}\) is reached by {arriving} threads here"):
            if interpret:
                call(np.zeros(128, np.float32))
            else:
                call.lower(np.zeros(128, np.float32), target="sm_80")
