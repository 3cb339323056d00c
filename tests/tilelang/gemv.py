"""GEMV, y = B @ a with B (N, K) and a (K,), two ways TileLang users write it.

`gemv`: tile style. A block owns block_N rows; each pipelined step multiplies a (block_N,
block_K) tile of B by a slice of a element-wise into a fragment, and `T.reduce_sum` over the K
axis (the block reduction) gives the rows' sums at the end.

`splitk_gemv`: TileLang's split-K example. A 2-D thread block (BLOCK_N, reduce_threads) gives
thread (tn, tk) a share of row tn, accumulated in registers (`T.alloc_local`); the
reduce_threads partial sums of a row meet in shared memory through `T.atomic_add`.

`allreduce_gemv`: the same split, eager style, the partial sums combined by TVM's cross-thread
reduction (`T.attr(T.comm_reducer(...), "reduce_scope", ...)` around
`T.tvm_thread_allreduce`), as TileLang's vectorised GEMV example does.
"""

import numpy as np

import jtile.language as T


def gemv(N, K, block_N, block_K, dtype="float16", accum_dtype="float", num_stages=2,
         threads=128):
    @T.prim_func
    def main(
            A: T.Tensor((K,), dtype),
            B: T.Tensor((N, K), dtype),
            C: T.Tensor((N,), dtype),
    ):
        with T.Kernel(T.ceildiv(N, block_N), threads=threads) as bn:
            A_shared = T.alloc_shared((block_K,), dtype)
            B_shared = T.alloc_shared((block_N, block_K), dtype)
            partial = T.alloc_fragment((block_N, block_K), accum_dtype)
            C_local = T.alloc_fragment((block_N,), accum_dtype)
            T.clear(partial)
            for k in T.Pipelined(T.ceildiv(K, block_K), num_stages=num_stages):
                T.copy(A[k * block_K], A_shared)
                T.copy(B[bn * block_N, k * block_K], B_shared)
                for i, j in T.Parallel(block_N, block_K):
                    partial[i, j] += A_shared[j].astype(accum_dtype) * B_shared[i, j].astype(
                        accum_dtype)
            T.reduce_sum(partial, C_local, dim=1)
            T.copy(C_local, C[bn * block_N])

    return main


def splitk_gemv(N, K, BLOCK_N, reduce_threads, TILE_K=4, dtype="float16", accum_dtype="float"):
    BLOCK_K = reduce_threads * TILE_K

    @T.prim_func
    def main(
            A: T.Tensor((K,), dtype),
            B: T.Tensor((N, K), dtype),
            C: T.Tensor((N,), dtype),
    ):
        with T.Kernel(T.ceildiv(N, BLOCK_N), threads=(BLOCK_N, reduce_threads)) as bn:
            tn = T.get_thread_binding(0)
            tk = T.get_thread_binding(1)
            A_local = T.alloc_local((TILE_K,), dtype)
            B_local = T.alloc_local((TILE_K,), dtype)
            C_shared = T.alloc_shared((BLOCK_N,), accum_dtype)
            C_accum = T.alloc_local((1,), accum_dtype)
            if tk == 0:
                C_shared[tn] = 0
            T.clear(C_accum)
            row = bn * BLOCK_N + tn
            for bk in T.serial(T.ceildiv(K, BLOCK_K)):
                for k in T.serial(TILE_K):
                    col = bk * BLOCK_K + tk * TILE_K + k
                    # Ragged edges: rows past N and columns past K contribute zero.
                    in_bounds = row < N and col < K
                    A_local[k] = T.if_then_else(in_bounds, A[col], 0)
                    B_local[k] = T.if_then_else(in_bounds, B[row, col], 0)
                for k in T.serial(TILE_K):
                    C_accum[0] += A_local[k].astype(accum_dtype) * B_local[k].astype(accum_dtype)
            T.atomic_add(C_shared[tn], C_accum[0])
            if row < N:
                C[row] = C_shared[tn]

    return main


def allreduce_gemv(A, B, BLOCK_N, reduce_threads, TILE_K=8, dtype="float16", accum_dtype="float"):
    N, K = T.const("N, K")
    BLOCK_K = reduce_threads * TILE_K
    A: T.Tensor((K,), dtype)
    B: T.Tensor((N, K), dtype)
    C = T.empty((N,), dtype)

    with T.Kernel(T.ceildiv(N, BLOCK_N), threads=(BLOCK_N, reduce_threads)) as bn:
        tn = T.get_thread_binding(0)
        tk = T.get_thread_binding(1)
        A_local = T.alloc_local((TILE_K,), dtype)
        B_local = T.alloc_local((TILE_K,), dtype)
        C_accum = T.alloc_local((1,), accum_dtype)
        C_reduced = T.alloc_local((1,), accum_dtype)
        T.clear(C_accum)
        for bk in T.serial(T.ceildiv(K, BLOCK_K)):
            for k in T.vectorized(TILE_K):
                A_local[k] = A[bk * BLOCK_K + tk * TILE_K + k]
                B_local[k] = B[bn * BLOCK_N + tn, bk * BLOCK_K + tk * TILE_K + k]
            for k in T.serial(TILE_K):
                C_accum[0] += A_local[k].astype(accum_dtype) * B_local[k].astype(accum_dtype)
        with T.attr(T.comm_reducer(lambda x, y: x + y, [T.cast(0, accum_dtype)]),
                    "reduce_scope", T.reinterpret(T.uint64(0), dtype="handle")):
            T.evaluate(T.tvm_thread_allreduce(T.uint32(1), C_accum[0], True, C_reduced[0], tk,
                                              dtype="handle"))
        C[bn * BLOCK_N + tn] = C_reduced[0]
    return C


def reference(a, b):
    """y = B @ a in float32 (a (K,), b (N, K))."""
    return np.asarray(b, np.float32) @ np.asarray(a, np.float32)
