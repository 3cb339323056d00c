"""Block-sparse attention in TileLang's factory style.

A boolean mask of shape (batch, heads, downsample_len, downsample_len) says which K/V tiles
each query block visits: the block copies its mask row into a `T.alloc_local` buffer and skips
the tiles whose entry is false with a Python `if` on the traced value, inside `T.Pipelined`.
Layout (batch, heads, seq_len, dim); the mask is causal at block granularity and the element
causal mask is applied inside the tiles that are visited.
"""

import numpy as np

import jtile.language as T


def blocksparse_flashattn(batch, heads, seq_len, dim, downsample_len, is_causal, block_M=64,
                          block_N=64, num_stages=1, threads=128):
    scale = (1.0 / dim) ** 0.5 * 1.44269504  # log2(e)
    shape = [batch, heads, seq_len, dim]
    block_mask_shape = [batch, heads, downsample_len, downsample_len]
    dtype = "float16"
    accum_dtype = "float"
    block_mask_dtype = "bool"

    @T.prim_func
    def blocksparse_attn(
        Q: T.Tensor(shape, dtype),
        K: T.Tensor(shape, dtype),
        V: T.Tensor(shape, dtype),
        BlockSparseMask: T.Tensor(block_mask_shape, block_mask_dtype),
        Output: T.Tensor(shape, dtype),
    ):
        with T.Kernel(T.ceildiv(seq_len, block_M), heads, batch, threads=threads) as (bx, by, bz):
            Q_shared = T.alloc_shared([block_M, dim], dtype)
            K_shared = T.alloc_shared([block_N, dim], dtype)
            V_shared = T.alloc_shared([block_N, dim], dtype)
            O_shared = T.alloc_shared([block_M, dim], dtype)
            acc_s = T.alloc_fragment([block_M, block_N], accum_dtype)
            acc_s_cast = T.alloc_fragment([block_M, block_N], dtype)
            acc_o = T.alloc_fragment([block_M, dim], accum_dtype)
            scores_max = T.alloc_fragment([block_M], accum_dtype)
            scores_max_prev = T.alloc_fragment([block_M], accum_dtype)
            scores_scale = T.alloc_fragment([block_M], accum_dtype)
            scores_sum = T.alloc_fragment([block_M], accum_dtype)
            logsum = T.alloc_fragment([block_M], accum_dtype)
            block_mask = T.alloc_local([downsample_len], block_mask_dtype)

            T.copy(Q[bz, by, bx * block_M:(bx + 1) * block_M, :], Q_shared)
            T.fill(acc_o, 0)
            T.fill(logsum, 0)
            T.fill(scores_max, -T.infinity(accum_dtype))

            for vj in T.serial(downsample_len):
                block_mask[vj] = BlockSparseMask[bz, by, bx, vj]

            loop_range = (
                T.min(T.ceildiv(seq_len, block_N), T.ceildiv((bx + 1) * block_M, block_N))
                if is_causal else T.ceildiv(seq_len, block_N))

            for k in T.Pipelined(loop_range, num_stages=num_stages):
                if block_mask[k] != 0:
                    T.copy(K[bz, by, k * block_N:(k + 1) * block_N, :], K_shared)
                    if is_causal:
                        for i, j in T.Parallel(block_M, block_N):
                            acc_s[i, j] = T.if_then_else(bx * block_M + i >= k * block_N + j, 0,
                                                         -T.infinity(acc_s.dtype))
                    else:
                        for i, j in T.Parallel(block_M, block_N):
                            acc_s[i, j] = T.if_then_else(k * block_N + j < seq_len, 0,
                                                         -T.infinity(acc_s.dtype))
                    T.gemm(Q_shared, K_shared, acc_s, transpose_B=True,
                           policy=T.GemmWarpPolicy.FullRow)

                    T.copy(scores_max, scores_max_prev)
                    T.fill(scores_max, -T.infinity(accum_dtype))
                    T.reduce_max(acc_s, scores_max, dim=1, clear=False)
                    for i in T.Parallel(block_M):
                        scores_max[i] = T.max(scores_max[i], scores_max_prev[i])
                    for i in T.Parallel(block_M):
                        scores_scale[i] = T.exp2(scores_max_prev[i] * scale -
                                                 scores_max[i] * scale)
                    for i, j in T.Parallel(block_M, block_N):
                        acc_s[i, j] = T.exp2(acc_s[i, j] * scale - scores_max[i] * scale)
                    T.reduce_sum(acc_s, scores_sum, dim=1)
                    for i in T.Parallel(block_M):
                        logsum[i] = logsum[i] * scores_scale[i] + scores_sum[i]
                    T.copy(acc_s, acc_s_cast)

                    for i, j in T.Parallel(block_M, dim):
                        acc_o[i, j] *= scores_scale[i]
                    T.copy(V[bz, by, k * block_N:(k + 1) * block_N, :], V_shared)
                    T.gemm(acc_s_cast, V_shared, acc_o, policy=T.GemmWarpPolicy.FullRow)
            for i, j in T.Parallel(block_M, dim):
                acc_o[i, j] /= logsum[i]
            T.copy(acc_o, O_shared)
            T.copy(O_shared, Output[bz, by, bx * block_M:(bx + 1) * block_M, :])

    return blocksparse_attn


def random_block_mask(rng, batch, heads, downsample_len, topk):
    """A causal block mask with `topk` random tiles per query block plus tile 0 and the diagonal,
    so every query row sees at least one key."""
    scores = rng.standard_normal((batch, heads, downsample_len, downsample_len))
    keep = np.argsort(-scores, axis=-1)[..., :topk]
    mask = np.zeros(scores.shape, bool)
    np.put_along_axis(mask, keep, True, axis=-1)
    mask[..., 0] = True
    mask |= np.eye(downsample_len, dtype=bool)
    return np.tril(mask)


def reference(q, k, v, block_mask, block, is_causal=True):
    """Attention over (batch, heads, seq_len, dim) restricted to the tiles `block_mask` keeps
    (tiles of `block` x `block` elements), in float64."""
    q, k, v = (np.asarray(x, np.float64) for x in (q, k, v))
    seq_len = q.shape[2]
    full = np.kron(np.asarray(block_mask, np.float64), np.ones((block, block)))
    allowed = full[..., :seq_len, :seq_len] > 0
    if is_causal:
        allowed &= np.tril(np.ones((seq_len, seq_len), bool))
    scores = np.einsum("bhsd,bhtd->bhst", q, k) / np.sqrt(q.shape[-1])
    scores = np.where(allowed, scores, -np.inf)
    scores = np.exp(scores - scores.max(-1, keepdims=True))
    weights = scores / scores.sum(-1, keepdims=True)
    return np.einsum("bhst,bhtd->bhsd", weights, v)
