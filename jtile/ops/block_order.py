"""Launch order for causal attention's blocks: the longest first, a few heads at a time.

In causal attention a block's work grows with its position along the sequence (the forward's
last query block reads every key tile, its first one tile), and the GPU starts blocks in launch
order. Started head by head, the long blocks of the last heads start late and run alone at the
end; started longest-first across heads, the end of the launch is the one-tile blocks, which
fill the gaps. Longest-first across every head at once would read each head's keys and values
once per query block with the whole sequence's K and V out of the L2 cache, so heads go in
chunks whose K and V fit in part of it: longest-first within a chunk, chunk after chunk.
"""

from __future__ import annotations

import jtile.language as T

# Bytes of K and V a chunk of heads may read: part of the H100 / H200 L2 (50 MB), so that the
# blocks of a chunk that run at once find the keys and values the others of its head loaded.
L2_BUDGET = 16 << 20


def heads_per_chunk(kv_bytes_per_head: int, heads: int) -> int:
    """How many of `heads` (batch x heads rows, each reading `kv_bytes_per_head` of K and V)
    a chunk takes."""
    return max(1, min(heads, L2_BUDGET // max(1, kv_bytes_per_head)))


def longest_first(pid, blocks: int, heads: int, chunk: int):
    """`(rank, head)` of the block started `pid`-th: `rank` 0 is the longest of its head's
    `blocks` blocks, `head` one of `heads` (batch x heads rows), `chunk` heads at a time (the
    last chunk may be narrower)."""
    first = pid // (blocks * chunk) * chunk
    width = chunk if heads % chunk == 0 else T.min(chunk, heads - first)
    rank_in_chunk = pid - first * blocks
    return rank_in_chunk // width, first + rank_in_chunk % width
