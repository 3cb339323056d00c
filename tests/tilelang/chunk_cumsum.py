"""Chunk-local cumulative sum of gates, the helper of TileLang's linear-attention (GDN) examples.

G is (B, S, H) (or (B, H, S) with head_first); every chunk of `chunk_size` positions along S is
scanned on its own, forwards or (reverse=True) backwards, into float32. One block scans one
chunk of one (batch, head) in a (1, block_S) shared tile with `T.cumsum`, or through a fragment.
TileLang's example allocates that "fragment" with scope="shared", which makes it a shared tile;
fragment_scope="local.fragment" scans a register fragment instead (staged through shared memory).
"""

import numpy as np

import jtile.language as T


def chunk_local_cumsum(B, S, H, chunk_size=64, head_first=False, reverse=False,
                       input_dtype="float16", output_dtype="float32", block_S=64, threads=128,
                       use_fragment=False, fragment_scope="shared"):
    G_shape = (B, H, S) if head_first else (B, S, H)
    assert chunk_size == 2**(chunk_size.bit_length() - 1), "chunk_size must be a power of 2"
    assert chunk_size == block_S, "chunk_size must be equal to block_S"

    @T.prim_func
    def kernel(
            G: T.Tensor(G_shape, dtype=input_dtype),
            G_new: T.Tensor(G_shape, dtype=output_dtype),
    ):
        with T.Kernel(T.ceildiv(S, block_S), B * H, threads=threads) as (bs, bbh):
            bb, bh = bbh // H, bbh % H
            G_shared = T.alloc_shared((1, block_S), dtype=output_dtype, scope="shared")
            if head_first:
                T.copy(G[bb, bh, bs * block_S:(bs + 1) * block_S], G_shared)
            else:
                T.copy(G[bb, bs * block_S:(bs + 1) * block_S, bh], G_shared)
            if use_fragment:
                G_fragment = T.alloc_fragment((1, block_S), dtype=output_dtype,
                                              scope=fragment_scope)
                T.copy(G_shared, G_fragment)
                T.cumsum(G_fragment, dim=1, reverse=reverse)
                if head_first:
                    T.copy(G_fragment, G_new[bb, bh, bs * block_S:(bs + 1) * block_S])
                else:
                    T.copy(G_fragment, G_new[bb, bs * block_S:(bs + 1) * block_S, bh])
            else:
                T.cumsum(G_shared, dim=1, reverse=reverse)
                if head_first:
                    T.copy(G_shared, G_new[bb, bh, bs * block_S:(bs + 1) * block_S])
                else:
                    T.copy(G_shared, G_new[bb, bs * block_S:(bs + 1) * block_S, bh])

    return kernel


def reference(g, chunk_size, head_first=False, reverse=False):
    """Chunk-local inclusive cumsum along the sequence axis, float32 (the last chunk may be
    short: it is scanned over the positions that exist)."""
    g = np.asarray(g, np.float32)
    axis = 2 if head_first else 1
    out = np.empty_like(g)
    length = g.shape[axis]
    for start in range(0, length, chunk_size):
        index = [slice(None)] * 3
        index[axis] = slice(start, min(start + chunk_size, length))
        chunk = g[tuple(index)]
        if reverse:
            chunk = np.flip(np.cumsum(np.flip(chunk, axis), axis), axis)
        else:
            chunk = np.cumsum(chunk, axis)
        out[tuple(index)] = chunk
    return out
