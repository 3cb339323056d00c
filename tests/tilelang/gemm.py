"""A tiled f16 GEMM written as TileLang's `examples/gemm/example_gemm.py` is.

C = A @ B^T with A (M, K), B (N, K), float32 accumulation and an f16 result. Each block owns a
block_M x block_N tile of C: `T.Pipelined` keeps `num_stages` K-tiles of A and B in flight
while `T.gemm` multiplies the current pair; the tile goes out through shared memory.
`T.use_swizzle` rasterises the grid in panels of 10 block columns for L2 reuse.
"""

import numpy as np

import jtile.language as T


def matmul(M, N, K, block_M, block_N, block_K, num_stages, thread_num, enable_rasteration,
           dtype="float16", accum_dtype="float"):
    """The kernel factory: a `@T.prim_func` for these static sizes and this tiling."""

    @T.prim_func
    def main(
            A: T.Tensor((M, K), dtype),
            B: T.Tensor((N, K), dtype),
            C: T.Tensor((M, N), dtype),
    ):
        with T.Kernel(T.ceildiv(N, block_N), T.ceildiv(M, block_M), threads=thread_num) as (bx, by):
            A_shared = T.alloc_shared((block_M, block_K), dtype)
            B_shared = T.alloc_shared((block_N, block_K), dtype)
            C_local = T.alloc_fragment((block_M, block_N), accum_dtype)
            C_shared = T.alloc_shared((block_M, block_N), dtype)
            T.use_swizzle(panel_size=10, enable=enable_rasteration)
            T.clear(C_local)
            for k in T.Pipelined(T.ceildiv(K, block_K), num_stages=num_stages):
                T.copy(A[by * block_M, k * block_K], A_shared)
                T.copy(B[bx * block_N, k * block_K], B_shared)
                T.gemm(A_shared, B_shared, C_local, transpose_B=True)
            T.copy(C_local, C_shared)
            T.copy(C_shared, C[by * block_M, bx * block_N])

    return main


def reference(a, b):
    """A @ B^T in float32 (the f16 inputs are exact in float32)."""
    return np.asarray(a, np.float32) @ np.asarray(b, np.float32).T
