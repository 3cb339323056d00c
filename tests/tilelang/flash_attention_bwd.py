"""Flash-attention backward in TileLang's factory style: the preprocess kernel
Delta = rowsum(dO * O), then one kernel per K/V block that accumulates dK and dV in fragments
and adds its share of dQ into a float32 dQ with `T.atomic_add`, as TileLang's example does.

Layout (batch, seq_len, heads, dim); `lse` is the forward's log-sum-exp in log2 units
(P = exp2(S * scale - lse)). Sequences that are not a multiple of the tiles read zeros past the
end; the dQ atomics are guarded so rows past the end are never written.

TileLang passes dQ zero-filled and lets the kernel update it in place (`flash_bwd` below). A
JAX array cannot be updated in place: jtile's way is an extra input aliased to the dQ output
with `input_output_aliases` (`flash_bwd_aliased_dq`, the same body through a `@T.macro`).
"""

import numpy as np

import jtile.language as T


def flashattn_bwd_preprocess(batch, heads, seq_len, dim):
    dtype = "float16"
    accum_dtype = "float"
    shape = [batch, seq_len, heads, dim]
    blk = 32

    @T.prim_func
    def flash_bwd_prep(
        O: T.Tensor(shape, dtype),
        dO: T.Tensor(shape, dtype),
        Delta: T.Tensor([batch, heads, seq_len], accum_dtype),
    ):
        with T.Kernel(heads, T.ceildiv(seq_len, blk), batch) as (bx, by, bz):
            o = T.alloc_fragment([blk, blk], dtype)
            do = T.alloc_fragment([blk, blk], dtype)
            acc = T.alloc_fragment([blk, blk], accum_dtype)
            delta = T.alloc_fragment([blk], accum_dtype)
            T.clear(acc)
            for k in range(T.ceildiv(dim, blk)):
                T.copy(O[bz, by * blk:(by + 1) * blk, bx, k * blk:(k + 1) * blk], o)
                T.copy(dO[bz, by * blk:(by + 1) * blk, bx, k * blk:(k + 1) * blk], do)
                for i, j in T.Parallel(blk, blk):
                    acc[i, j] += o[i, j] * do[i, j]
            T.reduce_sum(acc, delta, 1)
            T.copy(delta, Delta[bz, bx, by * blk:(by + 1) * blk])

    return flash_bwd_prep


def flashattn_bwd(batch, heads, seq_len, dim, is_causal, block_M, block_N, threads=128,
                  aliased_dq=False, use_tma=False):
    """The dK/dV/dQ kernel: `flash_bwd` (TileLang's in-place dQ parameter), or with
    `aliased_dq=True` `flash_bwd_aliased_dq`, whose dQ starts from an input `dQ_init` passed
    with `input_output_aliases={6: 0}`. `use_tma=True` adds each dQ tile from shared memory
    with the TMA engine (`T.atomic_add(..., use_tma=True)`, sm_90+), as TileLang's
    `example_gqa_bwd_tma_reduce` does; the engine clips rows past the end itself."""
    sm_scale = (1.0 / dim) ** 0.5
    scale = (1.0 / dim) ** 0.5 * 1.44269504  # log2(e)
    shape = [batch, seq_len, heads, dim]
    dtype = "float16"
    accum_dtype = "float"

    @T.macro
    def backward(
        Q: T.Tensor(shape, dtype),
        K: T.Tensor(shape, dtype),
        V: T.Tensor(shape, dtype),
        dO: T.Tensor(shape, dtype),
        lse: T.Tensor([batch, heads, seq_len], accum_dtype),
        Delta: T.Tensor([batch, heads, seq_len], accum_dtype),
        dQ: T.Tensor(shape, accum_dtype),
        dK: T.Tensor(shape, dtype),
        dV: T.Tensor(shape, dtype),
    ):
        with T.Kernel(heads, T.ceildiv(seq_len, block_M), batch, threads=threads) as (bx, by, bz):
            K_shared = T.alloc_shared([block_M, dim], dtype)
            dsT_shared = T.alloc_shared([block_M, block_N], dtype)
            q = T.alloc_shared([block_N, dim], dtype)
            V_shared = T.alloc_shared([block_M, dim], dtype)
            qkT = T.alloc_fragment([block_M, block_N], accum_dtype)
            dsT = T.alloc_fragment([block_M, block_N], accum_dtype)
            qkT_cast = T.alloc_fragment([block_M, block_N], dtype)
            dsT_cast = T.alloc_fragment([block_M, block_N], dtype)
            lse_shared = T.alloc_shared([block_N], accum_dtype)
            delta = T.alloc_shared([block_N], accum_dtype)
            do = T.alloc_shared([block_N, dim], dtype)
            dv = T.alloc_fragment([block_M, dim], accum_dtype)
            dk = T.alloc_fragment([block_M, dim], accum_dtype)
            dq = T.alloc_fragment([block_N, dim], accum_dtype)
            dv_shared = T.alloc_shared([block_M, dim], dtype)
            dk_shared = T.alloc_shared([block_M, dim], dtype)
            if use_tma:
                dq_shared = T.alloc_shared([block_N, dim], accum_dtype)

            T.copy(K[bz, by * block_M:(by + 1) * block_M, bx, :], K_shared)
            T.copy(V[bz, by * block_M:(by + 1) * block_M, bx, :], V_shared)
            T.clear(dv)
            T.clear(dk)
            loop_st = T.floordiv(by * block_M, block_N) if is_causal else 0
            loop_ed = T.ceildiv(seq_len, block_N)
            for k in T.Pipelined(loop_st, loop_ed, num_stages=2):
                T.copy(Q[bz, k * block_N:(k + 1) * block_N, bx, :], q)
                T.clear(qkT)
                T.gemm(K_shared, q, qkT, transpose_B=True, policy=T.GemmWarpPolicy.FullRow)
                T.copy(lse[bz, bx, k * block_N:(k + 1) * block_N], lse_shared)
                for i, j in T.Parallel(block_M, block_N):
                    qkT[i, j] = T.exp2(qkT[i, j] * scale - lse_shared[j])
                if is_causal:
                    for i, j in T.Parallel(block_M, block_N):
                        qkT[i, j] = T.if_then_else(by * block_M + i <= k * block_N + j,
                                                   qkT[i, j], 0)
                # Query rows past the end read dO = 0 and Delta = 0, so they add nothing.
                T.copy(dO[bz, k * block_N:(k + 1) * block_N, bx, :], do)
                T.clear(dsT)
                T.gemm(V_shared, do, dsT, transpose_B=True, policy=T.GemmWarpPolicy.FullRow)
                T.copy(qkT, qkT_cast)
                T.gemm(qkT_cast, do, dv, policy=T.GemmWarpPolicy.FullRow)

                T.copy(Delta[bz, bx, k * block_N:(k + 1) * block_N], delta)
                for i, j in T.Parallel(block_M, block_N):
                    dsT_cast[i, j] = qkT[i, j] * (dsT[i, j] - delta[j]) * sm_scale
                T.gemm(dsT_cast, q, dk, policy=T.GemmWarpPolicy.FullRow)

                T.copy(dsT_cast, dsT_shared)
                T.clear(dq)
                T.gemm(dsT_shared, K_shared, dq, transpose_A=True)
                if use_tma:
                    T.copy(dq, dq_shared)
                    T.atomic_add(dQ[bz, k * block_N:(k + 1) * block_N, bx, :], dq_shared,
                                 use_tma=True)
                else:
                    for i, j in T.Parallel(block_N, dim):
                        if k * block_N + i < seq_len:
                            T.atomic_add(dQ[bz, k * block_N + i, bx, j], dq[i, j])
            T.copy(dv, dv_shared)
            T.copy(dk, dk_shared)
            T.copy(dv_shared, dV[bz, by * block_M:(by + 1) * block_M, bx, :])
            T.copy(dk_shared, dK[bz, by * block_M:(by + 1) * block_M, bx, :])

    @T.prim_func
    def flash_bwd(
        Q: T.Tensor(shape, dtype),
        K: T.Tensor(shape, dtype),
        V: T.Tensor(shape, dtype),
        dO: T.Tensor(shape, dtype),
        lse: T.Tensor([batch, heads, seq_len], accum_dtype),
        Delta: T.Tensor([batch, heads, seq_len], accum_dtype),
        dQ: T.Tensor(shape, accum_dtype),
        dK: T.Tensor(shape, dtype),
        dV: T.Tensor(shape, dtype),
    ):
        backward(Q, K, V, dO, lse, Delta, dQ, dK, dV)

    @T.prim_func
    def flash_bwd_aliased_dq(
        Q: T.Tensor(shape, dtype),
        K: T.Tensor(shape, dtype),
        V: T.Tensor(shape, dtype),
        dO: T.Tensor(shape, dtype),
        lse: T.Tensor([batch, heads, seq_len], accum_dtype),
        Delta: T.Tensor([batch, heads, seq_len], accum_dtype),
        dQ_init: T.Tensor(shape, accum_dtype),
        dQ: T.Tensor(shape, accum_dtype),
        dK: T.Tensor(shape, dtype),
        dV: T.Tensor(shape, dtype),
    ):
        backward(Q, K, V, dO, lse, Delta, dQ, dK, dV)

    return flash_bwd_aliased_dq if aliased_dq else flash_bwd


def forward(q, k, v, is_causal):
    """(O, lse) of attention on (batch, seq_len, heads, dim) in float64; lse in log2 units,
    (batch, heads, seq_len), as the TileLang forward kernel writes it."""
    q, k, v = (np.asarray(x, np.float64) for x in (q, k, v))
    scores = np.einsum("bqhd,bkhd->bhqk", q, k) / np.sqrt(q.shape[-1])
    if is_causal:
        seq_len = q.shape[1]
        scores = np.where(np.tril(np.ones((seq_len, seq_len), bool)), scores, -np.inf)
    peak = scores.max(-1, keepdims=True)
    total = np.exp(scores - peak).sum(-1, keepdims=True)
    weights = np.exp(scores - peak) / total
    lse = (np.log(total) + peak)[..., 0] / np.log(2.0)
    return np.einsum("bhqk,bkhd->bqhd", weights, v), lse


def reference(q, k, v, o, do, is_causal):
    """(Delta, dQ, dK, dV) of attention in float64: Delta = rowsum(dO * O) (batch, heads,
    seq_len), the gradients (batch, seq_len, heads, dim)."""
    q, k, v, o, do = (np.asarray(x, np.float64) for x in (q, k, v, o, do))
    sm_scale = 1.0 / np.sqrt(q.shape[-1])
    scores = np.einsum("bqhd,bkhd->bhqk", q, k) * sm_scale
    if is_causal:
        seq_len = q.shape[1]
        scores = np.where(np.tril(np.ones((seq_len, seq_len), bool)), scores, -np.inf)
    p = np.exp(scores - scores.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    delta = np.einsum("bqhd,bqhd->bhq", do, o)
    dv = np.einsum("bhqk,bqhd->bkhd", p, do)
    dp = np.einsum("bqhd,bkhd->bhqk", do, v)
    ds = p * (dp - delta[..., None]) * sm_scale
    dq = np.einsum("bhqk,bkhd->bqhd", ds, k)
    dk = np.einsum("bhqk,bqhd->bkhd", ds, q)
    return delta, dq, dk, dv
