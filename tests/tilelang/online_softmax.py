"""Row softmax in one pass over column tiles, TileLang's online-softmax style.

A block owns one row. The first loop streams `BN`-wide tiles and keeps the running
log-sum-exp in a (1,) fragment (base-2 units): each tile's max and sum of exponentials fold
into it with `lse = m + log2(2**(lse - m) + sum)`. The second loop streams the tiles again and
writes `2**(x * log2(e) - lse)`. Columns past N read as zero in the copy and are masked out of
the sum; their results are never stored.
"""

import jax
import jax.numpy as jnp

import jtile.language as T


def next_power_of_2(n):
    return 1 << (int(n) - 1).bit_length()


def softmax_kernel(M, N, dtype="float16", max_block=8192, threads=128):
    """softmax(X, axis=1) for X (M, N); one block per row, tiles of BN columns."""
    BN = min(next_power_of_2(N), max_block)
    NN = T.ceildiv(N, BN)
    accum_dtype = "float"
    scale = 1.44269504  # log2(e)

    @T.prim_func
    def main(X: T.Tensor([M, N], dtype), Y: T.Tensor([M, N], dtype)):
        with T.Kernel(M, threads=threads) as (i_m):
            x = T.alloc_fragment([BN], dtype)
            y = T.alloc_fragment([BN], dtype)
            lse = T.alloc_fragment([1], accum_dtype)
            max_x = T.alloc_fragment([1], dtype)
            exp_x = T.alloc_fragment([BN], accum_dtype)
            sum_exp_x = T.alloc_fragment([1], accum_dtype)
            T.fill(lse, -T.infinity(accum_dtype))

            for i_n in T.Pipelined(0, NN):
                T.copy(X[i_m, i_n * BN:(i_n + 1) * BN], x)
                T.reduce_max(x, max_x, dim=0, clear=True)
                for j in T.Parallel(BN):
                    exp_x[j] = T.if_then_else(j + i_n * BN < N,
                                              T.exp2(x[j] * scale - max_x[0] * scale), 0)
                T.reduce_sum(exp_x, sum_exp_x, dim=0, clear=True)
                lse[0] = max_x[0] * scale + T.log2(T.exp2(lse[0] - max_x[0] * scale) +
                                                   sum_exp_x[0])

            for i_n in T.Pipelined(0, NN):
                T.copy(X[i_m, i_n * BN:(i_n + 1) * BN], x)
                for j in T.Parallel(BN):
                    if j + i_n * BN < N:
                        y[j] = T.exp2(x[j] * scale - lse[0])
                T.copy(y, Y[i_m, i_n * BN:(i_n + 1) * BN])

    return main


def reference(x):
    """jax.nn.softmax over the last axis, in float32."""
    return jax.nn.softmax(jnp.asarray(x, jnp.float32), axis=-1)
