"""Per-thread code in interpret mode: statements that read the thread index run over a vector
of the block's threads, in program order, with thread-dependent conditions as masks."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jtile
import jtile.language as T
from examples import producer_consumer
from tests.interpret.interpret_helpers import run


def _x(n, seed=0):
    return np.random.default_rng(seed).standard_normal(n).astype(np.float32)


def test_warp_roles_exchange_data_through_shared_memory():
    def kernel(X, O):
        with T.Kernel(2, threads=128) as bx:
            tid = T.get_thread_binding()
            s = T.alloc_shared((64,), "float32")
            with T.If(tid < 64):                       # warps 0-1 produce
                s[63 - tid] = X[bx * 64 + tid] * 3.0
            T.sync_threads()
            with T.If(tid >= 64):                      # warps 2-3 consume
                O[bx * 64 + tid - 64] = s[tid - 64] + 1.0

    x = _x(128)
    (out,) = run(kernel, [x], [((128,), "float32")])
    expected = np.concatenate([x[64 * b:64 * b + 64][::-1] * 3.0 + 1.0 for b in range(2)])
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=0)


def test_thread_dependent_loop_bound_masks_the_threads_that_finished():
    def kernel(X, O):
        with T.Kernel(1, threads=32):
            tid = T.get_thread_binding()
            for k in T.serial(4):
                O[tid * 4 + k] = 0.0
            for k in T.serial(tid % 4):
                O[tid * 4 + k] = X[tid * 4 + k]

    x = _x(128, seed=1)
    (out,) = run(kernel, [x], [((128,), "float32")])
    keep = (np.arange(128) % 4) < (np.arange(128) // 4) % 4
    np.testing.assert_allclose(out, np.where(keep, x, 0.0), rtol=0, atol=0)


def test_the_producer_consumer_example_matches_numpy_element_wise():
    x = _x(16 * 512, seed=2).reshape(16, 512)
    out = np.asarray(producer_consumer.scaled_rows(jnp.asarray(x), interpret=True))
    np.testing.assert_allclose(out, x * np.arange(1, 17, dtype=np.float32)[:, None],
                               rtol=1e-6, atol=0)


def test_consumers_that_read_before_the_producers_write_see_poison():
    """The model runs statements in program order: a consumer branch placed before the
    producer branch (no barrier could order it after) reads unwritten shared memory, which
    interpret mode poisons, so a broken exchange shows as NaN instead of passing."""
    def consume_first(X, *, width):
        M, N = X.shape
        O = T.empty((M, N), X.dtype)
        with T.Kernel(N // width, threads=2 * width) as bx:
            tid = T.get_thread_binding()
            ring = T.alloc_shared((2, width), X.dtype)
            for r in T.serial(M):
                with T.If(tid >= width):
                    O[r, bx * width + tid - width] = ring[r % 2, tid - width]
                with T.If(tid < width):
                    ring[r % 2, tid] = X[r, bx * width + tid]
        return O

    f = jtile.pallas_like(functools.partial(consume_first, width=32), interpret=True)
    out = np.asarray(f(jnp.asarray(_x(4 * 64).reshape(4, 64))))
    assert np.isnan(out[:2]).all()          # rounds 0 and 1 read stages nobody wrote yet
    assert not np.isnan(out[2:]).any()      # later rounds read the previous use of the stage


def test_jit_and_vmap_of_per_thread_code():
    def kernel(X, O):
        with T.Kernel(1, threads=32):
            tid = T.get_thread_binding()
            O[31 - tid] = X[tid] * 2.0

    f = jtile.pallas_like(kernel, out_shape=jax.ShapeDtypeStruct((32,), jnp.float32),
                          interpret=True)
    xs = _x(3 * 32, seed=4).reshape(3, 32)
    np.testing.assert_allclose(jax.jit(jax.vmap(f))(xs), xs[:, ::-1] * 2.0, rtol=1e-6, atol=0)


@pytest.mark.parametrize("threads", [(8, 16), (4, 2, 8)])
def test_multi_dimensional_thread_blocks_unflatten_x_fastest(threads):
    # TileLang's threads=(x, y[, z]): T.get_thread_binding(d) is threadIdx.x / .y / .z.
    def kernel(O):
        with T.Kernel(1, threads=threads):
            dims = [T.get_thread_binding(d) for d in range(len(threads))]
            flat = T.get_thread_binding(0)
            stride = 1
            for d in list(range(1, len(threads))):   # a Python loop (`range` is T.serial)
                stride *= threads[d - 1]
                flat = flat + dims[d] * stride
            value = dims[0] * 10000
            if len(threads) > 1:
                value = value + dims[1] * 100
            if len(threads) > 2:
                value = value + dims[2]
            O[flat] = value

    total = int(np.prod(threads))
    (out,) = run(kernel, [], [((total,), "int32")])
    t = np.arange(total)
    x, y = t % threads[0], t // threads[0] % threads[1]
    z = t // (threads[0] * threads[1]) if len(threads) > 2 else 0
    np.testing.assert_array_equal(out, x * 10000 + y * 100 + z)
