"""T.max / T.min and the max / min reductions follow fmaxf / fminf in both modes: a NaN
operand gives the other one (interpret mode used jnp.maximum, which returns the NaN, so the
two modes disagreed on any input with a NaN). Interpret mode, compiled for sm_80 and sm_90a,
and run on a GPU where one is present."""

import jax
import jax.numpy as jnp
import numpy as np

import jtile.language as T
from tests.language.kernel_runs import run_both_ways


def maxima(X, Y, M, R, W):
    rows, cols = X.shape
    with T.Kernel(1, threads=128):
        tx = T.get_thread_binding()
        x = T.alloc_fragment((rows, cols), "float32")
        row_max = T.alloc_fragment((rows,), "float32")
        row_min = T.alloc_fragment((rows,), "float32")
        T.copy(X, x)
        for i, j in T.Parallel(rows, cols):
            M[i, j] = T.max(x[i, j], Y[i, j]) + T.min(x[i, j], Y[i, j])
        T.reduce_max(x, row_max, dim=1)
        T.reduce_min(x, row_min, dim=1)
        for i in T.Parallel(rows):
            R[i] = row_max[i] - row_min[i]
        W[tx] = T.warp_reduce_max(X[tx // 8, tx % 8])


def test_nan_operands_drop_out_of_max_and_min():
    rng = np.random.default_rng(31)
    x = rng.standard_normal((16, 8)).astype(np.float32)
    y = rng.standard_normal((16, 8)).astype(np.float32)
    x[::3, 2] = np.nan          # some NaN in most rows, none where both sides are NaN
    y[1::4, 5] = np.nan
    outs = (jax.ShapeDtypeStruct((16, 8), jnp.float32), jax.ShapeDtypeStruct((16,), jnp.float32),
            jax.ShapeDtypeStruct((128,), jnp.float32))
    (m, r, w), _ = run_both_ways(maxima, (x, y), outs)
    np.testing.assert_array_equal(m, np.fmax(x, y) + np.fmin(x, y))
    np.testing.assert_array_equal(r, np.nanmax(x, axis=1) - np.nanmin(x, axis=1))
    np.testing.assert_array_equal(w, np.repeat(np.nanmax(x.reshape(4, 32), axis=1), 32))
