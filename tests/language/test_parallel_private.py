"""A T.Parallel whose stores all go to thread-private buffers runs whole in every thread, as
in TileLang: each thread fills its own copy (interpret mode, compiled for sm_80 and sm_90a,
and run compiled where a GPU is present)."""

import jax
import jax.numpy as jnp
import numpy as np

import jtile.language as T
from tests.language.kernel_runs import run_both_ways


def test_every_thread_fills_its_own_local_tile():
    def kernel(A, C):
        with T.Kernel(2, threads=64) as bx:
            tx = T.get_thread_binding()
            tile = T.alloc_local((6,), "float32")
            for i in T.Parallel(6):
                tile[i] = A[bx, i] * (i + 1)
            C[bx, tx] = tile[0] + tile[1] + tile[2] + tile[3] + tile[4] + tile[5] + tx

    a = np.random.default_rng(2).standard_normal((2, 6)).astype(np.float32)
    (c,), source = run_both_ways(kernel, [a], jax.ShapeDtypeStruct((2, 64), jnp.float32),
                                  rtol=1e-6, atol=1e-6)
    row = (a * np.arange(1, 7)).sum(1, keepdims=True)
    np.testing.assert_allclose(c, row + np.arange(64), rtol=1e-5, atol=1e-5)
    assert "< 6; ++" in source      # the whole loop, not a slice per thread
