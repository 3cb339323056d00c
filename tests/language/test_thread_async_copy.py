"""T.access_ptr + T.ptx_cp_async (one thread's cp.async), T.ptx_commit_group, T.ptx_wait_group
and T.cp_async_barrier_noinc: interpret mode against NumPy, compiled for sm_80 / sm_90a (and run
on a GPU where one is present), the CUDA they become, and the rules they enforce."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jtile
import jtile.language as T
from jtile import JtileError
from tests.gpu.compare import seed_of
from tests.language.kernel_runs import has_cuda_gpu, run_both_ways

ROWS, COLS = 32, 64


def gather_rows(X, Idx, elems: int, threads: int = 128):
    """Y[r, :] = X[Idx[r], :] (zeros where Idx[r] < 0 or past X's rows), each thread copying
    runs of `elems` elements with cp.async, then one wait and one barrier before the tile is
    read by all threads."""
    dtype = X.dtype
    runs_per_row = COLS // elems
    Y = T.empty((ROWS, COLS), dtype)
    with T.Kernel(1, threads=threads) as bx:
        tile = T.alloc_shared((ROWS, COLS), dtype)
        tx = T.get_thread_binding()
        for step in T.serial(ROWS * runs_per_row // threads):
            run = step * threads + tx
            r = run // runs_per_row
            c = (run % runs_per_row) * elems
            T.ptx_cp_async(T.access_ptr(tile[r, c], "w", elems),
                           T.access_ptr(X[Idx[r], c], "r", elems), elems,
                           predicate=Idx[r] >= 0)
        T.ptx_commit_group()
        T.ptx_wait_group(0)
        T.sync_threads()
        T.copy(tile, Y)
    return Y


def _rows_reference(x, idx):
    want = np.zeros((ROWS, COLS), np.float64)
    for r, i in enumerate(idx):
        if 0 <= i < x.shape[0]:
            want[r] = x[i]
    return want


def _inputs(name, rows, dtype):
    key = jax.random.PRNGKey(seed_of("thread_cp_async:" + name))
    kx, ki = jax.random.split(key)
    x = jax.random.normal(kx, (rows, COLS), jnp.float32).astype(dtype)
    # Some rows past the end (read as zeros) and some negative (the predicate is false).
    idx = jax.random.randint(ki, (ROWS,), -4, rows + 4, jnp.int32)
    return x, idx


@pytest.mark.parametrize("dtype,elems", [("float16", 8), ("float16", 4), ("float16", 2),
                                         ("bfloat16", 8), ("float32", 4), ("float32", 1)])
def test_gathered_rows_match_numpy_in_both_modes(dtype, elems):
    x, idx = _inputs(f"{dtype}{elems}", 40, dtype)
    kernel = functools.partial(gather_rows, elems=elems)
    (got,), cuda = run_both_ways(kernel, (x, idx), None)
    want = _rows_reference(np.asarray(x, np.float64), np.asarray(idx))
    np.testing.assert_array_equal(got.astype(np.float64), want)
    nbytes = elems * np.dtype(jnp.dtype(dtype)).itemsize
    assert f"jt::cp_async_{nbytes}(" in cuda
    assert "jt::cp_async_commit();" in cuda and "jt::cp_async_wait<0>();" in cuda


def test_successive_copies_need_no_barrier_between_them():
    """Each thread writes its own runs: the loop of copies gets no barrier per iteration (it
    would wait for every copy to land, serialising them); the read after T.sync_threads does."""
    x, idx = _inputs("barriers", 40, "float16")
    lowered = jtile.pallas_like(functools.partial(gather_rows, elems=8)).lower(
        x, idx, target="sm_90a")
    cuda = lowered.cuda_source()
    loop = cuda[cuda.index("jt::cp_async_16("):cuda.index("jt::cp_async_commit();")]
    assert "__syncthreads" not in loop and "cp_async_wait_all" not in loop
    # The barrier the user wrote before the tile is read waits for every copy to land.
    after = cuda[cuda.index("jt::cp_async_wait<0>();"):]
    assert after.index("jt::cp_async_wait_all();") < after.index("__syncthreads();")


def producer_consumer(X, Idx, stages: int = 2):
    """A producer warpgroup gathers 16-row tiles of X by index with cp.async and arrives on a
    stage's barrier once they land (cp.async.mbarrier.arrive.noinc); the consumer warpgroup
    waits, adds the tile into its running sum and frees the stage."""
    rows_per_tile = 16
    tiles = Idx.shape[0] // rows_per_tile
    Y = T.empty((rows_per_tile, COLS), "float32")
    with T.Kernel(1, threads=256) as bx:
        ring = T.alloc_shared((stages, rows_per_tile, COLS), "float16")
        total = T.alloc_fragment((rows_per_tile, COLS), "float32")
        full = T.alloc_barrier([128] * stages)
        empty = T.alloc_barrier([128] * stages)
        tx = T.get_thread_binding()
        with T.ws(1):
            for t in T.serial(tiles):
                s = t % stages
                T.mbarrier_wait_parity(empty[s], (t // stages) % 2 ^ 1)
                p = tx - 128
                for half in T.unroll(2):
                    r = half * 8 + p // 16
                    c = (p % 16) * 4
                    T.ptx_cp_async(T.access_ptr(ring[s, r, c], "w", 4),
                                   T.access_ptr(X[Idx[t * rows_per_tile + r], c], "r", 4), 4)
                T.cp_async_barrier_noinc(full[s])
        with T.ws(0):
            T.clear(total)
            for t in T.serial(tiles):
                s = t % stages
                T.mbarrier_wait_parity(full[s], (t // stages) % 2)
                for i, j in T.Parallel(rows_per_tile, COLS):
                    total[i, j] += ring[s, i, j]
                T.mbarrier_arrive(empty[s])
            T.copy(total, Y)
    return Y


def test_producer_arrives_when_copies_land():
    key = jax.random.PRNGKey(seed_of("thread_cp_async:ring"))
    kx, ki = jax.random.split(key)
    x = jax.random.normal(kx, (200, COLS), jnp.float32).astype(jnp.float16)
    idx = jax.random.randint(ki, (16 * 5,), 0, 200, jnp.int32)
    launch = functools.partial(jtile.pallas_like, producer_consumer)
    got = np.asarray(launch(interpret=True)(x, idx), np.float64)
    rows = np.asarray(x, np.float64)[np.asarray(idx)].reshape(5, 16, COLS)
    np.testing.assert_allclose(got, rows.sum(0), rtol=1e-6, atol=1e-6)
    lowered = launch().lower(x, idx, target="sm_90a")
    cuda = lowered.cuda_source()
    assert "jt::cp_async_mbarrier_arrive_noinc(" in cuda and "jt::cp_async_8(" in cuda
    # The consumer orders what the copies wrote (generic proxy) before its own reads through
    # the async proxy; the producer, which issues them, needs no fence after its waits.
    def after_wait(barrier):
        lines = cuda[cuda.index(f"jt::mbarrier_wait_parity(&{barrier}"):].splitlines()[1:]
        return next(line.strip() for line in lines if not line.strip().startswith("//"))

    assert after_wait("full") == "jt::fence_proxy_async_shared();"
    assert "fence_proxy_async" not in after_wait("empty")
    assert lowered.compile().cubin[:4] == b"\x7fELF"
    if has_cuda_gpu():
        compiled = np.asarray(launch()(x, idx), np.float64)
        np.testing.assert_allclose(compiled, got, rtol=1e-6, atol=1e-6)


def _refused(body, match, args=None, target=None):
    def kernel(X: T.Tensor((8, 64), "float16")):
        Y = T.empty((8, 64), "float16")
        with T.Kernel(1, threads=32) as bx:
            s = T.alloc_shared((8, 64), "float16")
            tx = T.get_thread_binding()
            body(X, s, tx)
            T.ptx_commit_group()
            T.ptx_wait_group(0)
            T.sync_threads()
            T.copy(s, Y)
        return Y

    x = jnp.ones((8, 64), jnp.float16)
    with pytest.raises(JtileError, match=match):
        if target is None:
            jtile.pallas_like(kernel, interpret=True)(x)
        else:
            jtile.pallas_like(kernel).lower(x, target=target)


@pytest.mark.parametrize("body,match", [
    (lambda X, s, tx: T.ptx_cp_async(T.access_ptr(X[0, 0], "w", 8), T.access_ptr(s[0, 0], "r", 8),
                                      8), "copies global memory into shared memory"),
    (lambda X, s, tx: T.ptx_cp_async(T.access_ptr(s[0, tx], "w", 6),
                                     T.access_ptr(X[0, tx], "r", 6), 6), "is 12 bytes"),
    (lambda X, s, tx: T.ptx_cp_async(T.access_ptr(s[0, 60], "w", 8),
                                     T.access_ptr(X[0, 0], "r", 8), 8), "run past"),
    (lambda X, s, tx: T.ptx_cp_async(T.access_ptr(s[0, 0], "w", 4),
                                     T.access_ptr(X[0, 0], "r", 4), 8), "spans 4"),
    (lambda X, s, tx: T.ptx_cp_async(T.access_ptr(s[0, 0], "r", 8),
                                     T.access_ptr(X[0, 0], "r", 8), 8), "'w'"),
    (lambda X, s, tx: T.ptx_cp_async(s[0, 0], X[0, 0], 8), "must be T.access_ptr"),
    (lambda X, s, tx: T.access_ptr(s[0, 0], "w", 8, offset=8), "offset=8"),
    (lambda X, s, tx: T.access_ptr(s[0, 0], "x"), "access_type 'x'"),
])
def test_bad_copies_are_refused_by_name(body, match):
    _refused(body, match)


def test_copy_inside_parallel_is_refused():
    def body(X, s, tx):
        for i in T.Parallel(8):
            T.ptx_cp_async(T.access_ptr(s[i, 0], "w", 8), T.access_ptr(X[i, 0], "r", 8), 8)
    _refused(body, "inside T.Parallel")


def test_copy_nobody_waits_for_is_refused():
    def kernel(X: T.Tensor((8, 64), "float16")):
        Y = T.empty((8, 64), "float16")
        with T.Kernel(1, threads=64) as bx:
            s = T.alloc_shared((8, 64), "float16")
            tx = T.get_thread_binding()
            T.ptx_cp_async(T.access_ptr(s[tx // 8, tx % 8 * 8], "w", 8),
                           T.access_ptr(X[tx // 8, tx % 8 * 8], "r", 8), 8)
            T.sync_threads()
            T.copy(s, Y)
        return Y

    with pytest.raises(JtileError, match="nothing in the kernel waits for it"):
        jtile.pallas_like(kernel, interpret=True)(jnp.ones((8, 64), jnp.float16))


def test_barrier_arrival_needs_sm90():
    def kernel(X: T.Tensor((8, 64), "float16")):
        Y = T.empty((8, 64), "float16")
        with T.Kernel(1, threads=64) as bx:
            s = T.alloc_shared((8, 64), "float16")
            bar = T.alloc_barrier(64)
            tx = T.get_thread_binding()
            T.ptx_cp_async(T.access_ptr(s[tx // 8, tx % 8 * 8], "w", 8),
                           T.access_ptr(X[tx // 8, tx % 8 * 8], "r", 8), 8)
            T.cp_async_barrier_noinc(bar)
            T.mbarrier_wait_parity(bar, 0)
            T.copy(s, Y)
        return Y

    x = jnp.ones((8, 64), jnp.float16)
    with pytest.raises(JtileError, match="sm_90"):
        jtile.pallas_like(kernel).lower(x, target="sm_80")
    cuda = jtile.pallas_like(kernel).lower(x, target="sm_90a").cuda_source()
    assert "jt::cp_async_mbarrier_arrive_noinc(" in cuda
    got = jtile.pallas_like(kernel, interpret=True)(x)
    np.testing.assert_array_equal(np.asarray(got), np.asarray(x))
