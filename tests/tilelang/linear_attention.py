"""Chunked linear attention forward in TileLang's style (no feature map, no normalisation).

For each chunk of `chunk_size` positions: the intra-chunk part `causal(Q K^T) V` and the
inter-chunk part `Q H`, where H = sum over earlier chunks of `K^T V` is the running state
kept in a fragment; then H += K^T V for this chunk. The grid splits the key dimension into
NK slices of BK and the value dimension into NV slices of BV; each key slice writes its own
partial output `O[i_k]` (summed by the caller), and the final state comes out per slice.
"""

import jax.numpy as jnp

import jtile.language as T


def chunk_linear_attn_fwd_kernel(B, S, H, DK, DV, dtype="float16", scale=None,
                                 chunk_size=64, BK=64, BV=64):
    """(O (NK, B, S, H, DV) partial outputs, final_state (B, H, DK, DV) float32)."""
    if scale is None:
        scale = DK ** -0.5
    accum_dtype = "float"
    assert S % chunk_size == 0 and DK % BK == 0 and DV % BV == 0
    NK = T.ceildiv(DK, BK)
    NV = T.ceildiv(DV, BV)
    NT = T.ceildiv(S, chunk_size)

    @T.prim_func
    def chunk_linear_attn_fwd(
        Q: T.Tensor([B, S, H, DK], dtype),
        K: T.Tensor([B, S, H, DK], dtype),
        V: T.Tensor([B, S, H, DV], dtype),
        O: T.Tensor([NK, B, S, H, DV], dtype),
        final_state: T.Tensor([B, H, DK, DV], accum_dtype),
    ):
        with T.Kernel(NV, NK, B * H) as (i_v, i_k, i_bh):
            i_b = i_bh // H
            i_h = i_bh % H

            q = T.alloc_shared([chunk_size, BK], dtype)
            k = T.alloc_shared([chunk_size, BK], dtype)
            v = T.alloc_shared([chunk_size, BV], dtype)
            h = T.alloc_fragment([BK, BV], accum_dtype)
            h_shared = T.alloc_shared([BK, BV], dtype)
            s = T.alloc_fragment([chunk_size, chunk_size], accum_dtype)
            s_shared = T.alloc_shared([chunk_size, chunk_size], dtype)
            o = T.alloc_fragment([chunk_size, BV], accum_dtype)
            T.clear(h)

            T.annotate_layout({
                q: T.make_swizzled_layout(q),
                k: T.make_swizzled_layout(k),
                v: T.make_swizzled_layout(v),
                h_shared: T.make_swizzled_layout(h_shared),
                s_shared: T.make_swizzled_layout(s_shared),
            })
            T.use_swizzle(10)

            for i in T.Pipelined(0, NT, num_stages=2):
                for row, col in T.Parallel(chunk_size, BK):
                    q[row, col] = Q[i_b, i * chunk_size + row, i_h, i_k * BK + col] * scale
                T.copy(K[i_b, i * chunk_size:(i + 1) * chunk_size, i_h, i_k * BK:(i_k + 1) * BK], k)
                T.copy(V[i_b, i * chunk_size:(i + 1) * chunk_size, i_h, i_v * BV:(i_v + 1) * BV], v)

                T.gemm(q, k, s, clear_accum=True, transpose_B=True)
                for row, col in T.Parallel(chunk_size, chunk_size):
                    s_shared[row, col] = T.if_then_else(row >= col, s[row, col], 0)
                T.gemm(s_shared, v, o, clear_accum=True)
                # The state before this chunk serves its queries; then it takes the chunk in.
                T.copy(h, h_shared)
                T.gemm(k, v, h, transpose_A=True)
                T.gemm(q, h_shared, o)
                T.copy(o, O[i_k, i_b, i * chunk_size:(i + 1) * chunk_size, i_h,
                            i_v * BV:(i_v + 1) * BV])

            T.copy(h, final_state[i_b, i_h, i_k * BK:(i_k + 1) * BK, i_v * BV:(i_v + 1) * BV])

    return chunk_linear_attn_fwd


def postprocess(o, h):
    """Sums the key slices' partial outputs."""
    return (o[0] if o.shape[0] == 1 else o.sum(0)), h


def reference(q, k, v, scale=None):
    """(o, final_state) in float32: o_t = scale * sum_{s <= t} (q_t . k_s) v_s, state K^T V."""
    q, k, v = (jnp.asarray(a, jnp.float32) for a in (q, k, v))
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    scores = jnp.einsum("bthd,bshd->bhts", q * scale, k)
    seq = q.shape[1]
    scores = jnp.where(jnp.tril(jnp.ones((seq, seq), bool)), scores, 0.0)
    o = jnp.einsum("bhts,bshd->bthd", scores, v)
    state = jnp.einsum("bshk,bshv->bhkv", k, v)
    return o, state
