"""Per-row top-k in TileLang's style: `topk` rounds of selecting each row's maximum.

A block holds `blk_m` whole rows in a fragment. Each round reduces the row maximum, finds its
column by a max-reduction over `j where x == max else -1` (the largest such column on ties),
knocks the selected value out with a large negative number and stores value and index.
"""

import jax
import jax.numpy as jnp
import numpy as np

import jtile.language as T


def tl_topk(M, N, topk, blk_m, threads=128):
    """(values, indices) of the `topk` largest entries of each row of logits (M, N)."""
    dtype = "float32"

    @T.prim_func
    def topk_kernel(
        logits: T.Tensor([M, N], dtype),
        topk_gates: T.Tensor([M, topk], dtype),
        topk_indices: T.Tensor([M, topk], "int32"),
    ):
        with T.Kernel(T.ceildiv(M, blk_m), threads=threads) as bx:
            logits_frag = T.alloc_fragment([blk_m, N], dtype=dtype)
            max_val = T.alloc_fragment([blk_m], dtype=dtype)
            expand_max_idx = T.alloc_fragment([blk_m, N], "int32")
            max_idx = T.alloc_fragment([blk_m], "int32")

            T.copy(logits[bx * blk_m, 0], logits_frag)
            for k in T.serial(topk):
                T.fill(expand_max_idx, -1)
                T.reduce_max(logits_frag, max_val, dim=1, clear=True)
                for i, j in T.Parallel(blk_m, N):
                    expand_max_idx[i, j] = T.if_then_else(max_val[i] == logits_frag[i, j], j,
                                                          expand_max_idx[i, j])
                T.reduce_max(expand_max_idx, max_idx, dim=1, clear=True)
                for i, j in T.Parallel(blk_m, N):
                    logits_frag[i, j] = T.if_then_else(max_val[i] == logits_frag[i, j], -10000.0,
                                                       logits_frag[i, j])
                for i in T.Parallel(blk_m):
                    if bx * blk_m + i < M:   # the last block's rows past M are padding
                        topk_gates[bx * blk_m + i, k] = max_val[i]
                        topk_indices[bx * blk_m + i, k] = max_idx[i]

    return topk_kernel


def reference(logits, topk):
    """jax.lax.top_k of each row: values (float32) and indices (int32), largest first."""
    values, indices = jax.lax.top_k(jnp.asarray(logits, jnp.float32), topk)
    return np.asarray(values), np.asarray(indices, np.int32)
