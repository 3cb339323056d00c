"""Stream-K GEMM written as TileLang's `examples/gemm_streamk` is.

C = A @ B^T with A (M, K), B (N, K). The output tiles' K-iterations form one list of
(tile, k) pairs; each of `programs` persistent blocks takes a contiguous range of it, so the
work splits evenly even when the tiles do not divide among the blocks. A range that covers a
whole tile stores it; a range that covers part of a tile adds its partial sum into C with
`T.atomic_add` (C must start at zero). Tiles left over after the stream-K wave, a whole
number per block, run as ordinary data-parallel tiles.
"""

import math

import numpy as np

import jtile.language as T


def streamk_schedule(M, N, K, block_M, block_N, block_K, programs):
    """The static split of the work: how many tiles go through stream-K, how many K-iterations
    each block takes of them, and how many data-parallel tiles each block runs afterwards."""
    iters_per_tile = math.ceil(K / block_K)
    total_tiles = math.ceil(M / block_M) * math.ceil(N / block_N)
    # The last partial wave, plus one full wave when more remain, is shared out by iterations.
    streamk_tiles = total_tiles % programs
    if total_tiles - streamk_tiles > programs:
        streamk_tiles += programs
    streamk_iters = streamk_tiles * iters_per_tile
    return dict(iters_per_tile=iters_per_tile, streamk_tiles=streamk_tiles,
                streamk_full_tiles=streamk_iters // programs,
                streamk_partial_tiles=streamk_iters % programs,
                sm_partition_factor=(total_tiles - streamk_tiles) // programs)


def tl_matmul_streamk(M, N, K, programs, block_M, block_N, block_K, dtypeAB, dtypeC,
                      accum_dtype, num_stages, threads):
    """The kernel factory: a `@T.prim_func` that adds A @ B^T into C (zeroed by the caller)."""
    schedule = streamk_schedule(M, N, K, block_M, block_N, block_K, programs)
    iters_per_tile = schedule["iters_per_tile"]
    streamk_tiles = schedule["streamk_tiles"]
    streamk_full_tiles = schedule["streamk_full_tiles"]
    streamk_partial_tiles = schedule["streamk_partial_tiles"]
    sm_partition_factor = schedule["sm_partition_factor"]

    @T.macro
    def compute_first_wave(pid: T.int32, A_buf: T.Tensor, A_buf_shared: T.SharedBuffer,
                           B_buf: T.Tensor, B_buf_shared: T.SharedBuffer, C: T.Tensor,
                           C_local: T.LocalBuffer):
        start_iter = T.alloc_fragment((1,), "int32", "local")
        end_iter = T.alloc_fragment((1,), "int32", "local")

        start_iter[0] = pid * streamk_full_tiles + T.min(pid, streamk_partial_tiles)
        last_iter = (pid + 1) * streamk_full_tiles + T.min(pid + 1, streamk_partial_tiles)

        while start_iter[0] < last_iter:
            # This block's iterations up to the end of the current tile (or of its range).
            end_iter[0] = T.min(start_iter[0] + (iters_per_tile - (start_iter[0] % iters_per_tile)),
                                last_iter)
            tile_id = start_iter[0] // iters_per_tile
            remain_iters = start_iter[0] % iters_per_tile
            pid_m = tile_id // T.ceildiv(N, block_N)
            pid_n = tile_id % T.ceildiv(N, block_N)

            T.clear(C_local)
            for k in T.Pipelined(end_iter[0] - start_iter[0], num_stages=num_stages):
                T.copy(A_buf[pid_m * block_M, (k + remain_iters) * block_K], A_buf_shared)
                T.copy(B_buf[pid_n * block_N, (k + remain_iters) * block_K], B_buf_shared)
                T.gemm(A_buf_shared, B_buf_shared, C_local, transpose_B=True)

            if remain_iters == 0 and (end_iter[0] % iters_per_tile == 0):
                # The whole tile was this block's: a plain store.
                T.copy(C_local, C[pid_m * block_M, pid_n * block_N])
            else:
                for i, j in T.Parallel(block_M, block_N):
                    if pid_m * block_M + i < M and pid_n * block_N + j < N:
                        T.atomic_add(C[pid_m * block_M + i, pid_n * block_N + j], C_local[i, j])

            start_iter[0] = end_iter[0]

    @T.macro
    def compute_full_tiles(pid: T.int32, A_buf: T.Tensor, A_shared: T.SharedBuffer,
                           B_buf: T.Tensor, B_shared: T.SharedBuffer, C: T.Tensor,
                           C_local: T.LocalBuffer):
        for p in T.serial(sm_partition_factor):
            tile_id = pid + streamk_tiles + p * programs
            pid_m = tile_id // T.ceildiv(N, block_N)
            pid_n = tile_id % T.ceildiv(N, block_N)
            T.clear(C_local)
            for k in T.Pipelined(T.ceildiv(K, block_K), num_stages=num_stages):
                T.copy(A_buf[pid_m * block_M, k * block_K], A_shared)
                T.copy(B_buf[pid_n * block_N, k * block_K], B_shared)
                T.gemm(A_shared, B_shared, C_local, transpose_B=True)
            T.copy(C_local, C[pid_m * block_M, pid_n * block_N])

    @T.prim_func
    def main(
            A: T.Tensor((M, K), dtypeAB),
            B: T.Tensor((N, K), dtypeAB),
            C: T.Tensor((M, N), dtypeC),
    ):
        with T.Kernel(programs, threads=threads) as pid:
            A_shared = T.alloc_shared((block_M, block_K), dtypeAB)
            B_shared = T.alloc_shared((block_N, block_K), dtypeAB)
            A_shared_full_tiles = T.alloc_shared((block_M, block_K), dtypeAB)
            B_shared_full_tiles = T.alloc_shared((block_N, block_K), dtypeAB)
            C_local = T.alloc_fragment((block_M, block_N), accum_dtype)

            compute_first_wave(pid, A, A_shared, B, B_shared, C, C_local)

            if sm_partition_factor > 0:
                compute_full_tiles(pid, A, A_shared_full_tiles, B, B_shared_full_tiles, C,
                                   C_local)

    return main


def reference(a, b):
    """A @ B^T in float32."""
    return np.asarray(a, np.float32) @ np.asarray(b, np.float32).T
