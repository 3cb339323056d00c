"""GEMMs with hand-written warp specialisation, written as TileLang's `examples/warp_specialize`
kernels are: `T.ws` regions, `T.tma_copy` into shared tiles and mbarriers between the roles.

C = A @ B with A (M, K), B (K, N), float32 accumulation and C in A's dtype, one block_M x
block_N tile of C per block of two warpgroups:
- `handoff`: one warpgroup loads each K-tile (the producer), the other multiplies it (the
  consumer); `ready` tells the consumer a tile has landed, `done` tells the producer the
  consumer has finished with it (the producer's first wait, on the phase before the first,
  returns at once). `producer` picks which warpgroup loads; `registers` (producer, consumer
  or None) moves registers between them with T.set_max_nreg.
- `ring`: the same with two stages of shared tiles and one barrier pair per stage, the phase
  parity of stage s flipping every second round.
- `split_columns`: both warpgroups multiply, each its half of the block's columns, after a
  block-wide copy of the A tile.
"""

import numpy as np

import jtile.language as T


def handoff(A, B, block_M, block_N, block_K, producer=1, registers=None, dtype="float16",
            accum_dtype="float32"):
    M, N, K = T.const("M, N, K")
    A: T.Tensor((M, K), dtype)
    B: T.Tensor((K, N), dtype)
    C = T.empty((M, N), dtype)
    consumer = 1 - producer

    with T.Kernel(T.ceildiv(N, block_N), T.ceildiv(M, block_M), threads=256) as (bx, by):
        a_tile = T.alloc_shared((block_M, block_K), dtype)
        b_tile = T.alloc_shared((block_K, block_N), dtype)
        acc = T.alloc_fragment((block_M, block_N), accum_dtype)
        ready = T.alloc_barrier(arrive_count=128)
        done = T.alloc_barrier(arrive_count=128)

        if registers:
            with T.ws(producer):
                T.set_max_nreg(registers[0], 0)
        with T.ws(consumer):
            if registers and registers[1]:
                T.set_max_nreg(registers[1], 1)
            T.clear(acc)
        for ko in T.Pipelined(T.ceildiv(K, block_K), num_stages=2):
            with T.ws(producer):
                T.barrier_wait(done, (ko + 1) % 2)
                T.tma_copy(A[by * block_M, ko * block_K], a_tile, barrier=ready)
                T.tma_copy(B[ko * block_K, bx * block_N], b_tile, barrier=ready)
                T.barrier_arrive(ready)
            with T.ws(consumer):
                T.barrier_wait(ready, ko % 2)
                T.gemm(a_tile, b_tile, acc)
                T.barrier_arrive(done)
        with T.ws(consumer):
            T.copy(acc, C[by * block_M, bx * block_N])
    return C


def branches(A, B, block_M, block_N, block_K, dtype="float16", accum_dtype="float32"):
    """`handoff` as TileLang's warp-specialised MLA kernels write it: branches on the thread
    index (`if tx < 128:` ... `else:`) instead of T.ws, the producer giving registers back with
    T.set_max_nreg at the top of its branch, and the K loop inside the branches."""
    M, N, K = T.const("M, N, K")
    A: T.Tensor((M, K), dtype)
    B: T.Tensor((K, N), dtype)
    C = T.empty((M, N), dtype)

    with T.Kernel(T.ceildiv(N, block_N), T.ceildiv(M, block_M), threads=256) as (bx, by):
        a_tile = T.alloc_shared((block_M, block_K), dtype)
        b_tile = T.alloc_shared((block_K, block_N), dtype)
        acc = T.alloc_fragment((block_M, block_N), accum_dtype)
        ready = T.alloc_barrier(arrive_count=128)
        done = T.alloc_barrier(arrive_count=128)
        tx = T.get_thread_binding()

        if tx < 128:
            T.clear(acc)
            for ko in T.serial(T.ceildiv(K, block_K)):
                T.barrier_wait(ready, ko % 2)
                T.gemm(a_tile, b_tile, acc)
                T.barrier_arrive(done)
            T.copy(acc, C[by * block_M, bx * block_N])
        else:
            T.set_max_nreg(40, 0)
            for ko in T.serial(T.ceildiv(K, block_K)):
                T.barrier_wait(done, (ko + 1) % 2)
                T.tma_copy(A[by * block_M, ko * block_K], a_tile, barrier=ready)
                T.tma_copy(B[ko * block_K, bx * block_N], b_tile, barrier=ready)
                T.barrier_arrive(ready)
    return C


def ring(A, B, block_M, block_N, block_K, dtype="float16", accum_dtype="float32"):
    M, N, K = T.const("M, N, K")
    A: T.Tensor((M, K), dtype)
    B: T.Tensor((K, N), dtype)
    C = T.empty((M, N), dtype)
    stages = 2

    with T.Kernel(T.ceildiv(N, block_N), T.ceildiv(M, block_M), threads=256) as (bx, by):
        a_tiles = T.alloc_shared((stages, block_M, block_K), dtype)
        b_tiles = T.alloc_shared((stages, block_K, block_N), dtype)
        acc = T.alloc_fragment((block_M, block_N), accum_dtype)
        # Barriers 0..stages-1: stage s is full; stages..2*stages-1: stage s is free again.
        bars = T.alloc_barrier([128] * (2 * stages))

        with T.ws(0):
            T.clear(acc)
        for ko in range(T.ceildiv(K, block_K)):
            s = ko % stages
            with T.ws(1):
                T.mbarrier_wait_parity(bars[s + stages], (ko // stages) % 2 ^ 1)
                T.tma_copy(A[by * block_M:(by + 1) * block_M, ko * block_K:(ko + 1) * block_K],
                           a_tiles[s, :, :], barrier=bars[s])
                T.tma_copy(B[ko * block_K:(ko + 1) * block_K, bx * block_N:(bx + 1) * block_N],
                           b_tiles[s, :, :], barrier=bars[s])
                T.mbarrier_arrive(bars[s])
            with T.ws(0):
                T.mbarrier_wait_parity(bars[s], (ko // stages) % 2)
                T.gemm(a_tiles[s, :, :], b_tiles[s, :, :], acc)
                T.mbarrier_arrive(bars[s + stages])
        with T.ws(0):
            T.copy(acc, C[by * block_M, bx * block_N])
    return C


def split_columns(A, B, block_M, block_N, block_K, dtype="float16", accum_dtype="float32"):
    M, N, K = T.const("M, N, K")
    A: T.Tensor((M, K), dtype)
    B: T.Tensor((K, N), dtype)
    C = T.empty((M, N), dtype)
    half = block_N // 2

    with T.Kernel(T.ceildiv(N, block_N), T.ceildiv(M, block_M), threads=256) as (bx, by):
        a_tile = T.alloc_shared((block_M, block_K), dtype)
        b_left = T.alloc_shared((block_K, half), dtype)
        b_right = T.alloc_shared((block_K, half), dtype)
        acc_left = T.alloc_fragment((block_M, half), accum_dtype)
        acc_right = T.alloc_fragment((block_M, half), accum_dtype)

        with T.ws(0):
            T.clear(acc_left)
        with T.ws(1):
            T.clear(acc_right)
        for ko in T.Pipelined(T.ceildiv(K, block_K), num_stages=0):
            T.copy(A[by * block_M, ko * block_K], a_tile)
            with T.ws(0):
                T.copy(B[ko * block_K, bx * block_N], b_left)
                T.gemm(a_tile, b_left, acc_left)
            with T.ws(1):
                T.copy(B[ko * block_K, bx * block_N + half], b_right)
                T.gemm(a_tile, b_right, acc_right)
        with T.ws(0):
            T.copy(acc_left, C[by * block_M, bx * block_N])
        with T.ws(1):
            T.copy(acc_right, C[by * block_M, bx * block_N + half])
    return C


def reference(a, b):
    """A @ B in float64."""
    return np.asarray(a, np.float64) @ np.asarray(b, np.float64)


def attention(Q, K, V, block_M=128, block_N=64, stages=2):
    """Flash-attention forward (non-causal) with hand-written warp specialisation, as
    FlashAttention-3 splits it: warpgroup 2 loads K and V tiles into a ring of `stages`; the
    region of warpgroups 0 and 1 (256 threads, each its 64 query rows) runs the online softmax
    and both gemms. Q (batch, seq, heads, dim); scores in log2 units."""
    batch, seq_len, heads, dim = T.const("batch, seq_len, heads, dim")
    dtype, accum = "float16", "float32"
    Q: T.Tensor((batch, seq_len, heads, dim), dtype)
    K: T.Tensor((batch, seq_len, heads, dim), dtype)
    V: T.Tensor((batch, seq_len, heads, dim), dtype)
    O = T.empty((batch, seq_len, heads, dim), dtype)
    scale = (1.0 / dim) ** 0.5 * 1.44269504

    with T.Kernel(T.ceildiv(seq_len, block_M), heads, batch, threads=384) as (bx, by, bz):
        q = T.alloc_shared((block_M, dim), dtype)
        k = T.alloc_shared((stages, block_N, dim), dtype)
        v = T.alloc_shared((stages, block_N, dim), dtype)
        s = T.alloc_fragment((block_M, block_N), accum)
        p = T.alloc_fragment((block_M, block_N), dtype)
        acc = T.alloc_fragment((block_M, dim), accum)
        m = T.alloc_fragment((block_M,), accum)
        m_prev = T.alloc_fragment((block_M,), accum)
        rescale = T.alloc_fragment((block_M,), accum)
        row_sum = T.alloc_fragment((block_M,), accum)
        l = T.alloc_fragment((block_M,), accum)
        full = T.alloc_barrier([128] * stages)
        empty = T.alloc_barrier([256] * stages)
        steps = T.ceildiv(seq_len, block_N)

        with T.ws(0, 1):
            T.copy(Q[bz, bx * block_M:(bx + 1) * block_M, by, :], q)
            T.fill(acc, 0)
            T.fill(l, 0)
            T.fill(m, -T.infinity(accum))
        for t in T.serial(steps):
            st = t % stages
            with T.ws(2):
                T.mbarrier_wait_parity(empty[st], (t // stages) % 2 ^ 1)
                T.tma_copy(K[bz, t * block_N:(t + 1) * block_N, by, :], k[st, :, :],
                           barrier=full[st])
                T.tma_copy(V[bz, t * block_N:(t + 1) * block_N, by, :], v[st, :, :],
                           barrier=full[st])
                T.mbarrier_arrive(full[st])
            with T.ws(0, 1):
                T.mbarrier_wait_parity(full[st], (t // stages) % 2)
                T.clear(s)
                T.gemm(q, k[st, :, :], s, transpose_B=True)
                for i, j in T.Parallel(block_M, block_N):
                    s[i, j] = T.if_then_else(t * block_N + j < seq_len, s[i, j],
                                             -T.infinity(accum))
                T.copy(m, m_prev)
                T.reduce_max(s, m, dim=1, clear=False)
                for i in T.Parallel(block_M):
                    rescale[i] = T.exp2(m_prev[i] * scale - m[i] * scale)
                for i, j in T.Parallel(block_M, block_N):
                    s[i, j] = T.exp2(s[i, j] * scale - m[i] * scale)
                T.reduce_sum(s, row_sum, dim=1)
                for i in T.Parallel(block_M):
                    l[i] = l[i] * rescale[i] + row_sum[i]
                T.copy(s, p)
                for i, j in T.Parallel(block_M, dim):
                    acc[i, j] *= rescale[i]
                T.gemm(p, v[st, :, :], acc)
                T.mbarrier_arrive(empty[st])
        with T.ws(0, 1):
            for i, j in T.Parallel(block_M, dim):
                acc[i, j] /= l[i]
            T.copy(acc, O[bz, bx * block_M:(bx + 1) * block_M, by, :])
    return O

