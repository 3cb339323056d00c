"""RMS norm in TileLang's style: one kernel that holds whole rows, and a split-K one that
streams column tiles twice (once for the sum of squares, once to scale).

With `blk_m=1` the split-K kernel keeps each row's statistic in a (1,) fragment that a 2-D
`T.Parallel(1, blk_k)` reads, as TileLang's own rms-norm example does.
"""

import jax
import jax.numpy as jnp

import jtile.language as T


def rms_norm(M, N, blk_m, dtype="float32", eps=1e-6, threads=128):
    """y = x * rsqrt(mean(x**2) + eps) over rows of an (M, N) tensor; whole rows per block."""
    accum_dtype = "float"

    @T.prim_func
    def main(A: T.Tensor((M, N), dtype), B: T.Tensor((M, N), dtype)):
        with T.Kernel(T.ceildiv(M, blk_m), threads=threads) as bx:
            A_shared = T.alloc_shared((blk_m, N), dtype)
            A_local = T.alloc_fragment((blk_m, N), accum_dtype)
            A_pow_local = T.alloc_fragment((blk_m, N), accum_dtype)
            A_powsum = T.alloc_fragment((blk_m,), accum_dtype)

            T.copy(A[bx * blk_m:(bx + 1) * blk_m, :], A_shared)
            T.copy(A_shared, A_local)
            for i, j in T.Parallel(blk_m, N):
                A_pow_local[i, j] = A_local[i, j] * A_local[i, j]
            T.reduce_sum(A_pow_local, A_powsum, dim=1)
            for i in T.Parallel(blk_m):
                A_powsum[i] = T.rsqrt(A_powsum[i] / N + eps)
            for i, j in T.Parallel(blk_m, N):
                A_local[i, j] *= A_powsum[i]
            T.copy(A_local, B[bx * blk_m:(bx + 1) * blk_m, :])

    return main


def rms_norm_splitk(M, N, blk_m, blk_k, dtype="float32", eps=1e-6, threads=128):
    """The same norm reading each row in `blk_k`-wide column tiles (rows longer than a tile)."""
    accum_dtype = "float"

    @T.prim_func
    def main(A: T.Tensor((M, N), dtype), B: T.Tensor((M, N), dtype)):
        with T.Kernel(T.ceildiv(M, blk_m), threads=threads) as bx:
            A_shared = T.alloc_shared((blk_m, blk_k), dtype)
            A_local = T.alloc_fragment((blk_m, blk_k), accum_dtype)
            A_powsum = T.alloc_fragment((blk_m,), accum_dtype)

            num_k_step = T.ceildiv(N, blk_k)
            T.clear(A_local)
            for k in range(num_k_step):
                # Columns past N read as zero, so the ragged last tile adds nothing.
                T.copy(A[bx * blk_m, k * blk_k], A_shared)
                for i, j in T.Parallel(blk_m, blk_k):
                    A_local[i, j] += A_shared[i, j] * A_shared[i, j]
            T.reduce_sum(A_local, A_powsum, dim=1)
            for i in T.Parallel(blk_m):
                A_powsum[i] = T.rsqrt(A_powsum[i] / N + eps)

            for k in range(num_k_step):
                # Last tile first: it is the one the first pass read most recently.
                T.copy(A[bx * blk_m, (num_k_step - 1 - k) * blk_k], A_shared)
                for i, j in T.Parallel(blk_m, blk_k):
                    A_shared[i, j] *= A_powsum[i]
                T.copy(A_shared, B[bx * blk_m, (num_k_step - 1 - k) * blk_k])

    return main


def reference(x, eps=1e-6):
    """x * rsqrt(mean(x**2, -1) + eps), computed in float32."""
    x32 = jnp.asarray(x, jnp.float32)
    return x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + eps)
