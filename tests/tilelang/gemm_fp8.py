"""FP8 GEMM, C = A @ B^T with float8_e4m3 inputs and float32 accumulation, as TileLang's
`gemm_fp8` example writes it: B is given as (N, K) and multiplied with transpose_B=True.

Tensor-core fp8 MMAs need wgmma here, so the kernel compiles for sm_90a (not sm_80).
"""

import numpy as np

import jtile.language as T


def matmul(M, N, K, block_M, block_N, block_K, dtype=T.float8_e4m3, out_dtype=None,
           accum_dtype=T.float32, num_stages=3, threads=128):
    # TileLang's example writes C in the input dtype; out_dtype=T.float32 keeps the accumulator.
    out_dtype = dtype if out_dtype is None else out_dtype

    @T.prim_func
    def gemm_fp8(
        A: T.Tensor((M, K), dtype),
        B: T.Tensor((N, K), dtype),
        C: T.Tensor((M, N), out_dtype),
    ):
        with T.Kernel(T.ceildiv(N, block_N), T.ceildiv(M, block_M), threads=threads) as (bx, by):
            A_shared = T.alloc_shared((block_M, block_K), dtype)
            B_shared = T.alloc_shared((block_N, block_K), dtype)
            C_local = T.alloc_fragment((block_M, block_N), accum_dtype)

            T.clear(C_local)
            for k in T.Pipelined(T.ceildiv(K, block_K), num_stages=num_stages):
                T.copy(A[by * block_M, k * block_K], A_shared)
                T.copy(B[bx * block_N, k * block_K], B_shared)
                T.gemm(A_shared, B_shared, C_local, transpose_B=True)

            T.copy(C_local, C[by * block_M, bx * block_N])

    return gemm_fp8


def reference(a, b):
    """A @ B^T of the fp8 values, exactly (float64), as float32."""
    return (np.asarray(a, np.float64) @ np.asarray(b, np.float64).T).astype(np.float32)
