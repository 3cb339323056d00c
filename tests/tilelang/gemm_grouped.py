"""Grouped GEMM written as TileLang's `examples/grouped_gemm/example_grouped_gemm_fwd.py` is.

Several GEMMs of different M in one launch: group g multiplies its rows of A (batch_sizes[g]
consecutive rows starting at batch_offsets[g]) by its own B[g]. Every group's rows are padded
to a whole number of block_M tiles in the grid's x-axis; a block finds its group by comparing
its padded start row with the small `batch_padded_offsets` tensor, then stores only the rows
that belong to that group.
"""

import math

import numpy as np

import jtile.language as T


def grouped_gemm(batch_sizes_list, K, N, block_M, block_N, block_K, num_stages=2, threads=128,
                 dtype="float16"):
    """The kernel factory: a `@T.prim_func` for these static group sizes and tiles."""
    batch_sum = sum(batch_sizes_list)
    batch_count = len(batch_sizes_list)
    accum_dtype = "float32"

    @T.prim_func
    def kernel(
            A: T.Tensor([batch_sum, K], dtype),
            B: T.Tensor([batch_count, K, N], dtype),
            C: T.Tensor([batch_sum, N], dtype),
            batch_sizes: T.Tensor([batch_count], "int32"),
            batch_offsets: T.Tensor([batch_count], "int32"),
            batch_padded_offsets: T.Tensor([batch_count], "int32"),
    ):
        with T.Kernel(T.ceildiv(batch_sum, block_M) + batch_count, T.ceildiv(N, block_N),
                      threads=threads) as (bx, by):
            A_shared = T.alloc_shared([block_M, block_K], dtype)
            B_shared = T.alloc_shared([block_K, block_N], dtype)
            C_local = T.alloc_fragment([block_M, block_N], accum_dtype)
            cur_batch_idx = T.alloc_local([1], "int32")
            cur_batch_size = T.alloc_local([1], "int32")

            m_start_padded = bx * block_M

            # The last group whose padded start is at or before this block's: its group.
            for i in range(batch_count):
                in_cur_batch_idx = m_start_padded >= batch_padded_offsets[i]
                cur_batch_idx[0] = T.if_then_else(in_cur_batch_idx, i, cur_batch_idx[0])

            cur_batch_size[0] = batch_sizes[cur_batch_idx[0]]
            m_start = (m_start_padded - batch_padded_offsets[cur_batch_idx[0]] +
                       batch_offsets[cur_batch_idx[0]])
            actual_rows = T.max(
                0, T.min(block_M, cur_batch_size[0] + batch_padded_offsets[cur_batch_idx[0]] -
                         m_start_padded))

            T.clear(C_local)
            for k in T.Pipelined(T.ceildiv(K, block_K), num_stages=num_stages):
                T.copy(A[m_start:m_start + block_M, k * block_K:(k + 1) * block_K], A_shared)
                T.copy(B[cur_batch_idx[0], k * block_K:(k + 1) * block_K,
                         by * block_N:(by + 1) * block_N], B_shared)
                T.gemm(A_shared, B_shared, C_local)

            for i, j in T.Parallel(block_M, block_N):
                with T.If(i < actual_rows), T.Then():
                    C[m_start + i, by * block_N + j] = C_local[i, j]

    return kernel


def group_tables(batch_sizes_list, block_M):
    """batch_sizes, batch_offsets and batch_padded_offsets as int32 arrays. Each group's padded
    extent is (size + 1) rounded up to block_M, as TileLang's example lays it out."""
    offsets, padded = [0], [0]
    for size in batch_sizes_list[:-1]:
        offsets.append(offsets[-1] + size)
        padded.append(padded[-1] + math.ceil((size + 1) / block_M) * block_M)
    as_int32 = lambda values: np.asarray(values, np.int32)  # noqa: E731
    return as_int32(batch_sizes_list), as_int32(offsets), as_int32(padded)


def reference(a, b, batch_sizes_list):
    """Each group's rows of A times its B[g], in float32."""
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    out, start = [], 0
    for g, size in enumerate(batch_sizes_list):
        out.append(a[start:start + size] @ b[g])
        start += size
    return np.concatenate(out, axis=0)
