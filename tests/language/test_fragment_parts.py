"""`T.copy` and `T.fill` on part of a fragment, as TileLang allows: the first rows of an
accumulator (`acc_o[:valid, :]` in a decoding kernel), one row of a 2-D fragment, a column
block filled. Interpret mode, compiled for sm_80 and sm_90a, and run compiled on a GPU."""

import jax
import jax.numpy as jnp
import numpy as np

import jtile.language as T
from tests.language.kernel_runs import run_both_ways


def _spec(shape, dtype):
    return jax.ShapeDtypeStruct(shape, dtype)


def test_copies_and_fills_of_fragment_parts():
    rows, cols, valid = 64, 32, 5

    def kernel(A, First, Row, Filled):
        with T.Kernel(2, threads=128) as bx:
            acc = T.alloc_fragment((rows, cols), "float32")
            out = T.alloc_shared((valid, cols), "float16")
            T.copy(A[bx, :, :], acc)
            for i, j in T.Parallel(rows, cols):
                acc[i, j] = acc[i, j] * 2
            T.copy(acc[:valid, :], out)                 # the first rows, cast to float16
            T.copy(out, First[bx, :, :])
            T.copy(acc[bx + 7, :], Row[bx, :])          # one row, at a traced offset
            T.fill(acc[:, 8:16], -1.0)                  # a column block
            T.copy(acc, Filled[bx, :, :])

    a = np.random.default_rng(4).standard_normal((2, rows, cols)).astype(np.float32)
    (first, row, filled), _ = run_both_ways(
        kernel, [a], (_spec((2, valid, cols), jnp.float16), _spec((2, cols), jnp.float32),
                      _spec((2, rows, cols), jnp.float32)))
    np.testing.assert_array_equal(first, (2 * a[:, :valid]).astype(np.float16))
    np.testing.assert_array_equal(row, np.stack([2 * a[b, b + 7] for b in range(2)]))
    expected = 2 * a
    expected[:, :, 8:16] = -1.0
    np.testing.assert_array_equal(filled, expected)


def test_a_row_of_a_fragment_copies_into_another_fragment():
    """Split-KV decoding's combine step: `T.copy(lse[k, :], lse_split)` with k the loop index,
    then the row in an element-wise loop (both fragments)."""
    splits, rows = 4, 128

    def combine(Lse, Out):
        with T.Kernel(2, threads=128) as bx:
            lse = T.alloc_fragment((splits, rows), "float32")
            row = T.alloc_fragment((rows,), "float32")
            acc = T.alloc_fragment((rows,), "float32")
            T.copy(Lse[bx, :, :], lse)
            T.clear(acc)
            for k in T.Pipelined(splits):
                T.copy(lse[k, :], row)
                for i in T.Parallel(rows):
                    acc[i] += row[i] * (k + 1)
            T.copy(acc, lse[splits - 1, :])     # and back into the last row
            T.copy(lse, Out[bx, :, :])

    x = np.random.default_rng(5).standard_normal((2, splits, rows)).astype(np.float32)
    (out,), _ = run_both_ways(combine, [x], _spec((2, splits, rows), jnp.float32),
                              rtol=1e-6, atol=1e-6)
    expected = x.copy()
    expected[:, -1] = (x * np.arange(1, splits + 1)[None, :, None]).sum(1)
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-6)
