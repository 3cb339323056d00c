"""Element atomics outside T.Parallel run once per thread, as TileLang's scalar code does, and
`T.atomic_add(..., return_prev=True)` returns the element's value from before each thread's
update (a stream compaction takes its slots from one counter). Interpret mode, compiled for
sm_80 and sm_90a, and run compiled on a GPU where one is present."""

import jax
import jax.numpy as jnp
import numpy as np

import jtile
import jtile.language as T
from tests.language.kernel_runs import has_cuda_gpu, run_both_ways


def _spec(shape, dtype=jnp.int32):
    return jax.ShapeDtypeStruct(shape, dtype)


def test_an_element_atomic_outside_parallel_runs_in_every_thread():
    def count_threads(X, C):
        with T.Kernel(1, threads=128):
            s = T.alloc_shared((1,), "float32")
            s[0] = 0.0
            T.sync_threads()
            T.atomic_add(s[0], X[0])
            T.sync_threads()
            C[0] = s[0]

    x = np.array([1.5], np.float32)
    (c,), _ = run_both_ways(count_threads, (x,), _spec((1,), jnp.float32))
    assert c[0] == 128 * 1.5   # interpret mode used to add once for the whole block


def compact(X, Out, Count):
    (n,) = X.shape
    with T.Kernel(1, threads=128):
        tx = T.get_thread_binding()
        counter = T.alloc_shared((1,), "int32")
        if tx == 0:
            counter[0] = 0
        T.sync_threads()
        for i in T.serial(n // 128):
            v = X[i * 128 + tx]
            if v > 0:
                pos = T.atomic_add(counter[0], 1, return_prev=True)
                Out[pos] = v
        T.sync_threads()
        if tx == 0:
            Count[0] = counter[0]


def test_return_prev_gives_each_thread_its_own_slot():
    x = np.random.default_rng(14).integers(-5, 5, 512).astype(np.int32)
    keep = x[x > 0]
    outs = (_spec((512,)), _spec((1,)))
    out, count = jtile.pallas_like(compact, out_shape=outs, interpret=True)(x)
    # Interpret mode takes the threads' updates in thread order: a stable compaction.
    assert int(count[0]) == keep.size
    np.testing.assert_array_equal(np.asarray(out)[:keep.size], keep)
    compiled = jtile.pallas_like(compact, out_shape=outs)
    for target in ("sm_80", "sm_90a"):
        lowered = compiled.lower(x, target=target)
        assert "= jt::atomic_add(&counter_smem[(0)], 1);" in lowered.cuda_source()
        assert lowered.compile().cubin[:4] == b"\x7fELF"
    if has_cuda_gpu():
        # The hardware orders the threads' updates its own way: the same elements, some order.
        out, count = compiled(x)
        assert int(count[0]) == keep.size
        np.testing.assert_array_equal(np.sort(np.asarray(out)[:keep.size]), np.sort(keep))


def test_return_prev_of_max_and_min_in_thread_order():
    def running(X, Before, After):
        with T.Kernel(1, threads=64):
            tx = T.get_thread_binding()
            s = T.alloc_shared((2,), "int32")
            if tx == 0:
                s[0] = -1000
                s[1] = 1000
            T.sync_threads()
            Before[tx] = T.atomic_max(s[0], X[tx], return_prev=True)
            After[tx] = T.atomic_min(s[1], X[tx], return_prev=True)

    x = np.random.default_rng(15).integers(-100, 100, 64).astype(np.int32)
    before, after = jtile.pallas_like(running, out_shape=(_spec((64,)), _spec((64,))),
                                      interpret=True)(x)
    np.testing.assert_array_equal(before, np.maximum.accumulate(np.r_[-1000, x[:-1]]))
    np.testing.assert_array_equal(after, np.minimum.accumulate(np.r_[1000, x[:-1]]))
