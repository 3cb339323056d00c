"""The jtile kernels behind `jtile.ops.ragged_dot`: grouped GEMMs over runtime group sizes.

`grouped_gemm_kernel` (forward, and the lhs gradient with the weights transposed) runs one
block per (n tile, row tile). A block reads its row tile's group, first row and group end from
the tile tables (`jtile.ops.ragged_dot_schedule.row_tiles`), multiplies the rows of its tile by
its group's weight matrix in the usual `T.Pipelined` loop of `T.copy` + `T.gemm`, and stores
only the rows inside its group: the tile's other rows belong to the next group's tiles. Tiles
with no group run no K steps and store zeros (the rows past the groups' sum); idle tiles store
nothing. On sm_90a the tile tables are read-only inputs indexed by block indices, so the
compiler turns the loop into TMA loads into an mbarrier ring consumed by wgmma, with a producer
warpgroup and a rasterised grid, exactly as for a dense GEMM.

`group_weight_grad_kernel` (the rhs gradient) runs one block per (n tile, k tile, group) and
loops over its group's row tiles, contracting `X^T @ Y` over rows. One of X and Y is in the
group-padded layout (`pad_rows`), so the rows a tile takes from outside its group meet zeros.

Minimum arch: sm_80 (cp.async + mma.sync); fp8 e4m3 inputs need sm_90a (wgmma) and weights
given K-major (`transpose_rhs=True`).
"""

from __future__ import annotations

import jtile.language as T

F32 = "float32"


def grouped_gemm_kernel(Lhs, Rhs, TileGroup, TileRow, TileEnd, *, out_dtype, transpose_rhs,
                        block_m, block_n, block_k, stages, threads):
    """Out[r, :] = Lhs[r, :] @ Rhs[group(r)] for the rows of every group; zero past them.

    Shapes: Lhs (M, K) and Rhs (G, K, N), or (G, N, K) with `transpose_rhs`, in global memory
    (f16, bf16 or fp8 e4m3); TileGroup, TileRow, TileEnd (tiles,) int32; output Out (M, N) in
    `out_dtype`, accumulated in float32.
    """
    M, K = Lhs.shape
    N = Rhs.shape[1] if transpose_rhs else Rhs.shape[2]
    tiles = TileGroup.shape[0]
    Out = T.empty((M, N), out_dtype)
    with T.Kernel(T.ceildiv(N, block_n), tiles, threads=threads) as (bx, by):
        a_tile = T.alloc_shared((block_m, block_k), Lhs.dtype)
        b_tile = T.alloc_shared((block_n, block_k) if transpose_rhs else (block_k, block_n),
                                Rhs.dtype)
        acc = T.alloc_fragment((block_m, block_n), F32)
        group = TileGroup[by]
        row0 = TileRow[by]
        end = TileEnd[by]
        T.clear(acc)
        # A runtime trip count rather than an `if` around the loop: tiles without a group run
        # no step, and the loop stays at the kernel's top level, where the compiler gives it a
        # producer warpgroup.
        steps = T.if_then_else(group >= 0, T.ceildiv(K, block_k), 0)
        for k in T.Pipelined(steps, num_stages=stages):
            T.copy(Lhs[row0, k * block_k], a_tile)
            if transpose_rhs:
                T.copy(Rhs[group, bx * block_n, k * block_k], b_tile)
            else:
                T.copy(Rhs[group, k * block_k, bx * block_n], b_tile)
            T.gemm(a_tile, b_tile, acc, transpose_B=transpose_rhs)
        # A tile wholly inside its group stores like a dense GEMM's (vectorised); the last
        # tile of a group stores its rows one by one, up to the group's end.
        with T.If(row0 + block_m <= end):
            T.copy(acc, Out[row0, bx * block_n])
        with T.Else():
            for i, j in T.Parallel(block_m, block_n):
                with T.If(row0 + i < end):
                    Out[row0 + i, bx * block_n + j] = T.cast(acc[i, j], out_dtype)
    return Out


def group_weight_grad_kernel(X, Y, XStart, YStart, GroupTiles, *, groups, out_dtype,
                             block_rows, block_k, block_n, stages, threads):
    """Out[g] = X[rows of g]^T @ Y[rows of g], float32 accumulation.

    Shapes: X (Mx, K) and Y (My, N) in global memory (f16 or bf16), one of them group-padded;
    XStart, YStart, GroupTiles (groups,) int32: each group's first row in X and in Y and its
    number of `block_rows` row tiles; output Out (groups, K, N) in `out_dtype`. A group with
    no rows gets zeros.
    """
    K = X.shape[1]
    N = Y.shape[1]
    Out = T.empty((groups, K, N), out_dtype)
    with T.Kernel(T.ceildiv(N, block_n), T.ceildiv(K, block_k), groups,
                  threads=threads) as (bx, by, bz):
        x_tile = T.alloc_shared((block_rows, block_k), X.dtype)
        y_tile = T.alloc_shared((block_rows, block_n), Y.dtype)
        acc = T.alloc_fragment((block_k, block_n), F32)
        x0 = XStart[bz]
        y0 = YStart[bz]
        T.clear(acc)
        for t in T.Pipelined(GroupTiles[bz], num_stages=stages):
            T.copy(X[x0 + t * block_rows, by * block_k], x_tile)
            T.copy(Y[y0 + t * block_rows, bx * block_n], y_tile)
            T.gemm(x_tile, y_tile, acc, transpose_A=True)
        T.copy(acc, Out[bz, by * block_k, bx * block_n])
    return Out
