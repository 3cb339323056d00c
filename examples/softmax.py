"""Level 2: row softmax over register fragments, with block-wide reductions.

Each block takes BLOCK_ROWS rows into a fragment (16-byte vector loads), reduces each row's
max and sum (in-thread, then warp shuffles, then across warps), and writes the result.
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


def softmax_kernel(X, *, block_rows, threads):
    M, N = X.shape
    O = T.empty((M, N), X.dtype)
    with T.Kernel(T.ceildiv(M, block_rows), threads=threads) as bx:
        x = T.alloc_fragment((block_rows, N), "float32")
        row_max = T.alloc_fragment((block_rows,), "float32")
        row_sum = T.alloc_fragment((block_rows,), "float32")
        T.copy(X[bx * block_rows, 0], x)
        T.reduce_max(x, row_max, dim=1)
        for i, j in T.Parallel(block_rows, N):
            x[i, j] = T.exp2((x[i, j] - row_max[i]) * 1.4426950408889634)
        T.reduce_sum(x, row_sum, dim=1)
        for i, j in T.Parallel(block_rows, N):
            x[i, j] = x[i, j] / row_sum[i]
        T.copy(x, O[bx * block_rows, 0])
    return O


def softmax(x, *, block_rows=1, threads=256, interpret=INTERPRET):
    kernel = functools.partial(softmax_kernel, block_rows=block_rows, threads=threads)
    return jtile.pallas_like(kernel, name="softmax", interpret=interpret)(x)


def main():
    for dtype, tol in ((jnp.float32, 1e-5), (jnp.bfloat16, 1e-2)):
        x = jax.random.normal(jax.random.key(0), (256, 1024), jnp.float32).astype(dtype)
        out = jax.jit(softmax)(x)
        ref = jax.nn.softmax(x.astype(jnp.float32), axis=-1)
        check(f"softmax (256, 1024) {jnp.dtype(dtype).name}", out, ref, tol)


if __name__ == "__main__":
    main()
