"""Split-K GEMM written as TileLang's `examples/gemm_splitk` is.

C = A @ B with A (M, K), B (K, N) in f16 and C (M, N) in float32. The K dimension is cut into
`split_k` slices, one per grid z-index; each block multiplies its slice into a float32
fragment and adds the partial tile into C with `T.atomic_add`, so C must start at zero.
"""

import numpy as np

import jtile.language as T


def matmul(M, N, K, block_M, block_N, block_K, split_k, dtype="float16", accum_dtype="float",
           out_dtype="float32"):
    """The kernel factory: a `@T.prim_func` that adds A @ B into C (zeroed by the caller)."""
    splitK = K // split_k

    @T.prim_func
    def main(
            A: T.Tensor((M, K), dtype),
            B: T.Tensor((K, N), dtype),
            C: T.Tensor((M, N), out_dtype),
    ):
        with T.Kernel(T.ceildiv(N, block_N), T.ceildiv(M, block_M), split_k,
                      threads=128) as (bx, by, bz):
            A_shared = T.alloc_shared((block_M, block_K), dtype)
            B_shared = T.alloc_shared((block_K, block_N), dtype)
            C_shared = T.alloc_shared((block_M, block_N), out_dtype)
            C_local = T.alloc_fragment((block_M, block_N), accum_dtype)

            T.clear(C_local)
            for ko in T.Pipelined(T.ceildiv(splitK, block_K), num_stages=0):
                T.copy(A[by * block_M, bz * splitK + ko * block_K], A_shared)
                T.copy(B[bz * splitK + ko * block_K, bx * block_N], B_shared)
                T.gemm(A_shared, B_shared, C_local)

            T.copy(C_local, C_shared)

            for i, j in T.Parallel(block_M, block_N):
                if by * block_M + i < M and bx * block_N + j < N:
                    T.atomic_add(C[by * block_M + i, bx * block_N + j], C_shared[i, j])

    return main


def reference(a, b):
    """A @ B in float32."""
    return np.asarray(a, np.float32) @ np.asarray(b, np.float32)
