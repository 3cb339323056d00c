"""Element-wise add with a broadcast, written as TileLang's `examples/elementwise` are.

C[y, x] = A[y, x] + B[x]: a (M, N) matrix plus a length-N bias broadcast over the rows. Each
block covers a block_M x block_N tile; `T.Parallel` spreads the tile over the block's threads.
"""

import numpy as np

import jtile.language as T


def elementwise_add(M, N, block_M, block_N, in_dtype, out_dtype, threads):
    """The kernel factory: a `@T.prim_func` for these static sizes and dtypes."""

    @T.prim_func
    def elem_add(A: T.Tensor((M, N), in_dtype), B: T.Tensor((N,), in_dtype),
                 C: T.Tensor((M, N), out_dtype)):
        with T.Kernel(T.ceildiv(N, block_N), T.ceildiv(M, block_M), threads=threads) as (bx, by):
            start_x = bx * block_N
            start_y = by * block_M
            for (local_y, local_x) in T.Parallel(block_M, block_N):
                y = start_y + local_y
                x = start_x + local_x
                if y < M and x < N:
                    C[y, x] = T.Cast(out_dtype, A[y, x] + B[x])

    return elem_add


def reference(a, b, out_dtype):
    """A + B broadcast over rows, computed in float32, rounded once to `out_dtype`."""
    return (np.asarray(a, np.float32) + np.asarray(b, np.float32)[None, :]).astype(out_dtype)
