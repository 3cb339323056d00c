"""The jtile kernels behind `jtile.ops.attention`: a flash-attention forward and a
FlashAttention-2 backward (preprocess, then one kernel per key/value block).

Layout (batch, seq, heads, head_dim) for q, k, v, o and their gradients; the log-sum-exp and
`delta = rowsum(dO * O)` are float32 (batch, heads, seq). Scores are kept in log2 units: the
softmax scale is multiplied by log2(e) once, so every exponential is one `exp2` of a fused
multiply-add, and the forward stores `lse = m * scale * log2(e) + log2(l)` so that the
backward recomputes `P = exp2(S * scale * log2(e) - lse)` without a row reduction.

A position (query i, key j) is visible when every mask the call asks for allows it: causal
(`j <= i`), segments (`segment[i] == segment[j]`) and, for a sequence that is not a multiple of
the key tile, `j < seq`. Query and key sequences have the same length and the same segment
ids, so every real query sees at least itself: no row of the softmax is empty.

All kernels run on sm_80+; on sm_90a the `T.Pipelined` loops of `T.copy` + `T.gemm` compile to
TMA loads, an mbarrier stage ring, wgmma and a producer warpgroup.
"""

from __future__ import annotations

import jtile.language as T
from jtile.ops.block_order import block_coordinates, launch_grid

__all__ = ["attention_fwd_kernel", "attention_fwd_segmented_kernel",
           "attention_bwd_preprocess_kernel", "attention_bwd_kernel",
           "attention_bwd_segmented_kernel"]

F32 = "float32"
LOG2_E = 1.4426950408889634


def _visible(*, causal, segmented, ragged, seq, q_pos, k_pos, seg_q, seg_k):
    """The condition under which query `q_pos` may attend to key `k_pos`, or None if always."""
    terms = []
    if causal:
        terms.append(q_pos >= k_pos)
    if segmented:
        terms.append(seg_q == seg_k)
    if ragged:
        terms.append(k_pos < seq)
    if not terms:
        return None
    condition = terms[0]
    for term in terms[1:]:
        condition = condition & term
    return condition


def attention_fwd_kernel(Q, K, V, **tiles):
    """`attention_fwd` without segments (see `attention_fwd_body`)."""
    return attention_fwd_body(Q, K, V, None, **tiles)


def attention_fwd_segmented_kernel(Q, K, V, SEG, **tiles):
    """`attention_fwd` with segment ids (see `attention_fwd_body`)."""
    return attention_fwd_body(Q, K, V, SEG, **tiles)


def attention_fwd_body(Q, K, V, SEG, *, block_m, block_n, stages, threads, causal, scale,
                       seq_len=None):
    """Flash-attention forward with the online softmax.

    Shapes: Q (B, S, H, D), K and V (B, S, KVH, D) with H a multiple of KVH, all in global
    memory, float16 or bfloat16; SEG (B, S) int32 or None; keys from `seq_len` on (None: S)
    are padding and masked out. Outputs: O (B, S, H, D) in
    Q's dtype and LSE (B, H, S) float32 in log2 units. A block owns `block_m` queries of one
    head; K/V tiles of `block_n` keys stream through shared memory in a `T.Pipelined` loop;
    Q K^T and P V run on tensor cores (mma.sync on sm_80, wgmma on sm_90a), P feeding the
    second gemm from registers. Any arch sm_80+.
    """
    B, S, H, D = Q.shape
    groups = H // K.shape[2]
    segmented = SEG is not None
    # Keys at or past `seq_len` (the unpadded length of a sequence shorter than a tile) are
    # masked out like keys past the end of a ragged one.
    seq_len = S if seq_len is None else seq_len
    ragged = seq_len % block_n != 0 or seq_len != S
    scale2 = scale * LOG2_E
    ninf = -T.infinity(F32)
    O = T.empty((B, S, H, D), Q.dtype)
    LSE = T.empty((B, H, S), F32)
    q_blocks = T.ceildiv(S, block_m)
    with T.Kernel(*launch_grid(q_blocks, H, B, causal), threads=threads) as ids:
        # Causal blocks near the end of the sequence do the most work: start them first.
        rank, head, batch = block_coordinates(ids, q_blocks, H, B,
                                              2 * S * D * K.dtype.bytes // groups, causal)
        bx = q_blocks - 1 - rank if causal else rank
        kv = head // groups if groups > 1 else head
        q = T.alloc_shared((block_m, D), Q.dtype)
        k = T.alloc_shared((block_n, D), K.dtype)
        v = T.alloc_shared((block_n, D), V.dtype)
        s = T.alloc_fragment((block_m, block_n), F32)
        p = T.alloc_fragment((block_m, block_n), Q.dtype)
        acc = T.alloc_fragment((block_m, D), F32)
        m = T.alloc_fragment((block_m,), F32)
        m_scaled = T.alloc_fragment((block_m,), F32)
        m_prev = T.alloc_fragment((block_m,), F32)
        rescale = T.alloc_fragment((block_m,), F32)
        l = T.alloc_fragment((block_m,), F32)
        l_tile = T.alloc_fragment((block_m,), F32)
        lse = T.alloc_fragment((block_m,), F32)
        if segmented:
            seg_q = T.alloc_shared((block_m,), "int32")
            seg_k = T.alloc_shared((block_n,), "int32")
            T.copy(SEG[batch, bx * block_m:(bx + 1) * block_m], seg_q)

        T.copy(Q[batch, bx * block_m:(bx + 1) * block_m, head, :], q)
        T.fill(acc, 0)
        T.fill(l, 0)
        T.fill(m, ninf)
        steps = T.ceildiv(S, block_n)
        if causal:
            # Key tiles wholly past the diagonal hold nothing this block may see.
            steps = T.min(T.ceildiv((bx + 1) * block_m, block_n), steps)
        for t in T.Pipelined(steps, num_stages=stages):
            T.copy(K[batch, t * block_n:(t + 1) * block_n, kv, :], k)
            T.copy(V[batch, t * block_n:(t + 1) * block_n, kv, :], v)
            if segmented:
                T.copy(SEG[batch, t * block_n:(t + 1) * block_n], seg_k)
            # With segments or a ragged end every tile has a mask: it starts the scores at 0
            # (visible) or -inf and the gemm adds Q K^T. Otherwise the gemm starts from zero
            # (T.clear folds into it: wgmma's scale-d, no register moves), and a causal mask
            # is applied after it on the diagonal tiles only (on an H200 3-4% faster than
            # masking before it with a fill, which the other tiles then needed as zeros:
            # benchmarks/results/h200_bench_attention_mask_after.log).
            if segmented or ragged:
                for i, j in T.Parallel(block_m, block_n):
                    visible = _visible(causal=causal, segmented=segmented, ragged=ragged,
                                       seq=seq_len, q_pos=bx * block_m + i,
                                       k_pos=t * block_n + j,
                                       seg_q=seg_q[i] if segmented else None,
                                       seg_k=seg_k[j] if segmented else None)
                    s[i, j] = T.if_then_else(visible, 0, ninf)
            else:
                T.clear(s)
            T.gemm(q, k, s, transpose_B=True)
            if causal and not (segmented or ragged):
                # Tiles below the diagonal are wholly visible.
                with T.If((t + 1) * block_n > bx * block_m):
                    for i, j in T.Parallel(block_m, block_n):
                        s[i, j] = T.if_then_else(bx * block_m + i >= t * block_n + j, s[i, j],
                                                 ninf)
            T.copy(m, m_prev)
            T.reduce_max(s, m, dim=1, clear=False)
            for i in T.Parallel(block_m):
                if segmented:
                    # A row whose segment has no key in the tiles seen so far keeps m = -inf;
                    # 0 in its place keeps exp2(-inf - m) = 0 instead of NaN.
                    m_scaled[i] = T.if_then_else(m[i] == ninf, 0, m[i] * scale2)
                else:
                    m_scaled[i] = m[i] * scale2
                rescale[i] = T.exp2(m_prev[i] * scale2 - m_scaled[i])
            for i, j in T.Parallel(block_m, block_n):
                s[i, j] = T.exp2(s[i, j] * scale2 - m_scaled[i])
            T.reduce_sum(s, l_tile, dim=1)
            for i in T.Parallel(block_m):
                l[i] = l[i] * rescale[i] + l_tile[i]
            T.copy(s, p)
            for i, j in T.Parallel(block_m, D):
                acc[i, j] = acc[i, j] * rescale[i]
            T.gemm(p, v, acc)
        for i, j in T.Parallel(block_m, D):
            acc[i, j] = acc[i, j] / l[i]
        for i in T.Parallel(block_m):
            lse[i] = T.log2(l[i]) + m_scaled[i]
        T.copy(acc, O[batch, bx * block_m:(bx + 1) * block_m, head, :])
        T.copy(lse, LSE[batch, head, bx * block_m:(bx + 1) * block_m])
    return O, LSE


def attention_bwd_preprocess_kernel(O, DO, *, block, threads):
    """delta = rowsum(dO * O) in float32, the softmax backward's per-row term.

    Shapes: O and DO (B, S, H, D) float16/bfloat16 in global memory; output DELTA (B, H, S)
    float32. Each block reduces `block` rows of one head in registers. Any arch sm_80+.
    """
    B, S, H, D = O.shape
    DELTA = T.empty((B, H, S), F32)
    with T.Kernel(T.ceildiv(S, block), H, B, threads=threads) as (bx, head, batch):
        o = T.alloc_fragment((block, D), O.dtype)
        do = T.alloc_fragment((block, D), DO.dtype)
        prod = T.alloc_fragment((block, D), F32)
        delta = T.alloc_fragment((block,), F32)
        T.copy(O[batch, bx * block:(bx + 1) * block, head, :], o)
        T.copy(DO[batch, bx * block:(bx + 1) * block, head, :], do)
        for i, j in T.Parallel(block, D):
            prod[i, j] = T.cast(o[i, j], F32) * T.cast(do[i, j], F32)
        T.reduce_sum(prod, delta, dim=1)
        T.copy(delta, DELTA[batch, head, bx * block:(bx + 1) * block])
    return DELTA


def attention_bwd_kernel(Q, K, V, DO, LSE, DELTA, DQ_IN, DQ, DK, DV, **tiles):
    """`attention_bwd` without segments (see `attention_bwd_body`)."""
    attention_bwd_body(Q, K, V, DO, LSE, DELTA, None, DQ, DK, DV, **tiles)


def attention_bwd_segmented_kernel(Q, K, V, DO, LSE, DELTA, SEG, DQ_IN, DQ, DK, DV, **tiles):
    """`attention_bwd` with segment ids (see `attention_bwd_body`)."""
    attention_bwd_body(Q, K, V, DO, LSE, DELTA, SEG, DQ, DK, DV, **tiles)


def attention_bwd_body(Q, K, V, DO, LSE, DELTA, SEG, DQ, DK, DV, *, block_m, block_n, stages,
                       threads, causal, scale, stage_dq=False, early_dp=False,
                       queries_by_keys=False):
    """dK, dV and dQ of attention, one block per `block_m` keys of one key/value head.

    Inputs (global memory): Q, DO (B, S, H, D); K, V (B, S, KVH, D); LSE, DELTA (B, H, S)
    float32; SEG (B, S) int32 or None; the kernels also take DQ_IN (B, S, H, D) float32,
    zeros, aliased to the DQ output. Outputs: DQ (float32, accumulated with `T.atomic_add`), DK and
    DV (B, S, KVH, D) in K's dtype.

    The block keeps its K and V tiles in shared memory and dK, dV in float32 fragments, and
    streams the query tiles of every query head of its group through a `T.Pipelined` loop
    (`block_n` queries per step, the group's heads one after another), so the gradient of a
    key/value head is the sum over its query heads without a second pass. Per step, with
    scores transposed (keys by queries): P^T = exp2(K Q^T * scale * log2 e - lse),
    dV += P^T dO, dP^T = V dO^T, dS^T = P^T (dP^T - delta) * scale, dK += dS^T Q and
    dQ += dS K (atomically, other blocks add to the same rows). Any arch sm_80+.

    `stage_dq`: each step's dQ tile goes through shared memory, so that on sm_90+ the TMA
    engine adds it into DQ (one asynchronous bulk reduce instead of an atomic per element);
    it takes block_n * D * 4 more bytes of shared memory.

    `early_dp`: dP^T's gemm is issued right after S^T's, before the exponentials, so that
    (with wgmma waits placed late) the tensor cores run it while the threads compute P^T.

    `queries_by_keys`: the step computes S = Q K^T, P, dP = dO V^T and dS (queries by keys)
    instead of their transposes, and the dV and dK gemms read P and dS transposed from shared
    memory. Each thread then needs lse and delta of its own rows only (2 values on wgmma)
    instead of those of every column it holds (FlashAttention-3's SdP_swapAB).
    """
    B, S, H, D = Q.shape
    kv_heads = K.shape[2]
    groups = H // kv_heads
    scale2 = scale * LOG2_E
    segmented = SEG is not None
    q_blocks = T.ceildiv(S, block_n)
    k_blocks = T.ceildiv(S, block_m)
    with T.Kernel(*launch_grid(k_blocks, kv_heads, B, causal), threads=threads) as ids:
        # Causal blocks near the start of the sequence do the most work: start them first.
        by, kv, batch = block_coordinates(ids, k_blocks, kv_heads, B,
                                          2 * S * D * Q.dtype.bytes * groups, causal)
        k = T.alloc_shared((block_m, D), K.dtype)
        v = T.alloc_shared((block_m, D), V.dtype)
        q = T.alloc_shared((block_n, D), Q.dtype)
        do = T.alloc_shared((block_n, D), DO.dtype)
        lse = T.alloc_shared((block_n,), F32)
        delta = T.alloc_shared((block_n,), F32)
        # P^T and dS^T go through shared memory: as gemm A operands from registers they
        # would force every gemm of the kernel onto one warpgroup row split, which the
        # (block_n, D) dQ tile cannot take on two warpgroups.
        scores = (block_n, block_m) if queries_by_keys else (block_m, block_n)
        p_shared = T.alloc_shared(scores, Q.dtype)
        ds_shared = T.alloc_shared(scores, Q.dtype)
        # P^T and dS^T round to 16 bits on their way into shared memory (T.copy casts), so no
        # 16-bit fragment copies take registers beside the four float32 accumulators.
        p_t = T.alloc_fragment(scores, F32)
        dp_t = T.alloc_fragment(scores, F32)
        dv = T.alloc_fragment((block_m, D), F32)
        dk = T.alloc_fragment((block_m, D), F32)
        dq = T.alloc_fragment((block_n, D), F32)
        if stage_dq:
            dq_shared = T.alloc_shared((block_n, D), F32)
        if segmented:
            seg_k = T.alloc_shared((block_m,), "int32")
            seg_q = T.alloc_shared((block_n,), "int32")
            T.copy(SEG[batch, by * block_m:(by + 1) * block_m], seg_k)

        # Scores (and their fragments, named for the transposed step) are keys by queries, or
        # queries by keys: `key_query(a, b)` names score (a, b)'s key and query.
        if queries_by_keys:
            first_gemm, second_gemm = (q, k), (do, v)
        else:
            first_gemm, second_gemm = (k, q), (v, do)

        def key_query(a, b):
            return (b, a) if queries_by_keys else (a, b)

        T.copy(K[batch, by * block_m:(by + 1) * block_m, kv, :], k)
        T.copy(V[batch, by * block_m:(by + 1) * block_m, kv, :], v)
        T.clear(dv)
        T.clear(dk)
        # Query tiles wholly before the diagonal see none of these keys.
        first = (by * block_m) // block_n if causal else 0
        per_head = q_blocks - first
        for step in T.Pipelined(per_head * groups, num_stages=stages):
            if groups > 1:
                head = kv * groups + step // per_head
                qb = first + step % per_head
            else:
                head = kv
                qb = first + step
            T.copy(Q[batch, qb * block_n:(qb + 1) * block_n, head, :], q)
            T.copy(DO[batch, qb * block_n:(qb + 1) * block_n, head, :], do)
            T.copy(LSE[batch, head, qb * block_n:(qb + 1) * block_n], lse)
            T.copy(DELTA[batch, head, qb * block_n:(qb + 1) * block_n], delta)
            if segmented:
                T.copy(SEG[batch, qb * block_n:(qb + 1) * block_n], seg_q)
            T.clear(p_t)
            T.gemm(*first_gemm, p_t, transpose_B=True)
            if early_dp:
                T.clear(dp_t)
                T.gemm(*second_gemm, dp_t, transpose_B=True)
            # Query rows past the end read Q = dO = 0 and lse = delta = 0: their P is finite
            # and their dP and dS are 0, so they add nothing; no ragged mask is needed.
            visible_mask = causal or segmented
            for a, b in T.Parallel(*scores):
                i, j = key_query(a, b)
                if visible_mask:
                    visible = _visible(causal=causal, segmented=segmented, ragged=False,
                                       seq=S, q_pos=qb * block_n + j, k_pos=by * block_m + i,
                                       seg_q=seg_q[j] if segmented else None,
                                       seg_k=seg_k[i] if segmented else None)
                    p_t[a, b] = T.if_then_else(visible, T.exp2(p_t[a, b] * scale2 - lse[j]), 0)
                else:
                    p_t[a, b] = T.exp2(p_t[a, b] * scale2 - lse[j])
            if not early_dp:
                T.clear(dp_t)
                T.gemm(*second_gemm, dp_t, transpose_B=True)
            T.copy(p_t, p_shared)
            T.gemm(p_shared, do, dv, transpose_A=queries_by_keys)
            for a, b in T.Parallel(*scores):
                dp_t[a, b] = p_t[a, b] * (dp_t[a, b] - delta[key_query(a, b)[1]]) * scale  # dS
            T.copy(dp_t, ds_shared)
            T.gemm(ds_shared, q, dk, transpose_A=queries_by_keys)
            T.clear(dq)
            T.gemm(ds_shared, k, dq, transpose_A=not queries_by_keys)
            if stage_dq:
                T.copy(dq, dq_shared)
                T.atomic_add(DQ[batch, qb * block_n:(qb + 1) * block_n, head, :], dq_shared)
            else:
                T.atomic_add(DQ[batch, qb * block_n:(qb + 1) * block_n, head, :], dq)
        T.copy(dv, DV[batch, by * block_m:(by + 1) * block_m, kv, :])
        T.copy(dk, DK[batch, by * block_m:(by + 1) * block_m, kv, :])
