"""Level 5: column sums and maxima with T.alloc_reducer.

Every thread accumulates into its own copy of the reducer inside T.Parallel; one
T.finalize_reducer combines the copies (warp shuffles, then across warps) before the result
is read.
"""

import functools

import jax
import jax.numpy as jnp

import jtile
import jtile.language as T

try:
    from examples._common import INTERPRET, check
except ImportError:
    from _common import INTERPRET, check


def column_stats_kernel(X, *, block_rows, block_cols, threads):
    M, N = X.shape
    Sum = T.empty((N,), "float32")
    Max = T.empty((N,), "float32")
    with T.Kernel(T.ceildiv(N, block_cols), threads=threads) as bx:
        tile = T.alloc_shared((block_rows, block_cols), X.dtype)
        total = T.alloc_reducer((block_cols,), "float32", op="sum")
        peak = T.alloc_reducer((block_cols,), "float32", op="max")
        T.fill(total, 0)
        T.fill(peak, T.min_value("float32"))
        for k in T.serial(T.ceildiv(M, block_rows)):
            T.copy(X[k * block_rows, bx * block_cols], tile)
            for i, j in T.Parallel(block_rows, block_cols):
                with T.If(k * block_rows + i < M):
                    total[j] += tile[i, j]
                    peak[j] = T.max(peak[j], tile[i, j])
        T.finalize_reducer(total)
        T.finalize_reducer(peak)
        for j in T.Parallel(block_cols):
            with T.If(bx * block_cols + j < N):
                Sum[bx * block_cols + j] = total[j]
                Max[bx * block_cols + j] = peak[j]
    return Sum, Max


def column_stats(x, *, block_rows=32, block_cols=32, threads=128, interpret=INTERPRET):
    kernel = functools.partial(column_stats_kernel, block_rows=block_rows,
                               block_cols=block_cols, threads=threads)
    return jtile.pallas_like(kernel, name="column_stats", interpret=interpret)(x)


def main():
    x = jax.random.normal(jax.random.key(0), (300, 96), jnp.float32)
    total, peak = jax.jit(column_stats)(x)
    check("reducer column sums (300, 96)", total, x.sum(0), 1e-5)
    check("reducer column maxima (300, 96)", peak, x.max(0), 1e-6)


if __name__ == "__main__":
    main()
