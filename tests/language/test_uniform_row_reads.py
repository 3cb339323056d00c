"""A fragment reduced along a dimension and also read at one index of that dimension for all
threads (`lse[k, i]` inside T.Parallel, `T.copy(lse[k, :], row)`), as split-KV decoding's
combine step writes it: the reduced dimension stays in every thread's registers, so both the
reduction and the row reads compile. Interpret mode against float64, compiled for sm_80 and
sm_90a, and compiled against interpret mode on a GPU (tests/language/kernel_runs.py)."""

import jax
import jax.numpy as jnp
import numpy as np

import jtile.language as T
from tests.language.kernel_runs import run_both_ways

SPLITS, ROWS, DIM = 4, 128, 64


def combine(lse, partial, out):
    """out[r] = sum_k partial[r, k] * exp2(lse[k, r] - logsumexp2_k lse[:, r])."""
    with T.Kernel(1, threads=128):
        lse_all = T.alloc_fragment((SPLITS, ROWS), "float32")
        row = T.alloc_fragment((ROWS,), "float32")
        lse_max = T.alloc_fragment((ROWS,), "float32")
        total = T.alloc_fragment((ROWS,), "float32")
        scale = T.alloc_fragment((ROWS,), "float32")
        part = T.alloc_fragment((ROWS, DIM), "float32")
        acc = T.alloc_fragment((ROWS, DIM), "float32")
        T.clear(total)
        T.clear(acc)
        T.copy(lse, lse_all)
        T.reduce_max(lse_all, lse_max, dim=0, clear=True)
        for k in T.serial(SPLITS):
            T.copy(lse_all[k, :], row)
            for i in T.Parallel(ROWS):
                total[i] += T.exp2(row[i] - lse_max[i])
        for i in T.Parallel(ROWS):
            total[i] = T.log2(total[i]) + lse_max[i]
        for k in T.serial(SPLITS):
            T.copy(partial[:, k, :], part)
            for i in T.Parallel(ROWS):
                scale[i] = T.exp2(lse_all[k, i] - total[i])
            for i, j in T.Parallel(ROWS, DIM):
                acc[i, j] += part[i, j] * scale[i]
        T.copy(acc, out)


def test_a_reduced_fragment_read_row_by_row_compiles():
    rng = np.random.default_rng(21)
    lse = rng.standard_normal((SPLITS, ROWS)).astype(np.float32) * 3
    partial = rng.standard_normal((ROWS, SPLITS, DIM)).astype(np.float32)
    (got,), _ = run_both_ways(combine, (lse, partial), jax.ShapeDtypeStruct((ROWS, DIM),
                                                                            jnp.float32),
                              rtol=1e-5, atol=1e-6)
    lse64 = lse.astype(np.float64)
    top = lse64.max(axis=0)
    total = np.log2(np.exp2(lse64 - top).sum(axis=0)) + top
    weights = np.exp2(lse64 - total)                       # (SPLITS, ROWS)
    want = np.einsum("rkd,kr->rd", partial.astype(np.float64), weights)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
