"""Launch order for causal attention's blocks: the longest first, a few heads at a time.

In causal attention a block's work grows with its position along the sequence (the forward's
last query block reads every key tile, its first one tile), and the GPU starts blocks in launch
order. Started head by head, the long blocks of the last heads start late and run alone at the
end; started longest-first across heads, the end of the launch is the one-tile blocks, which
fill the gaps. Longest-first across every head at once would read each head's keys and values
once per query block long after the last, so heads go in chunks of a few waves whose K and V
fit in part of the L2 cache: longest-first within a chunk, chunk after chunk.
"""

from __future__ import annotations

import jtile.language as T
from jtile.ops.matmul_kernels import WAVE

# Bytes of K and V a chunk of heads may read: part of the H100 / H200 L2 (50 MB), so that the
# blocks of a chunk that run at once find the keys and values the others of its head loaded.
L2_BUDGET = 16 << 20

# A chunk holds about this many waves of blocks (WAVE: one block per multiprocessor of an
# H100 / H200): enough for its short blocks to fill the gaps its long ones leave; more
# spreads the reuse of a head's K and V over more of the launch. On an H200, a whole launch
# ordered longest first across every head ran 1.55x slower than head by head (B16 S1024 H12/4
# head dim 64 forward); these chunks ran the forward 1.00-1.05x and forward + backward
# 1.03-1.08x as fast as head by head (that shape, and B4 S4096 H16 head dim 64 and 128).
WAVES_PER_CHUNK = 3


def heads_per_chunk(blocks: int, heads: int, kv_bytes_per_head: int) -> int:
    """How many of `heads` (batch x heads rows of `blocks` blocks, each row reading
    `kv_bytes_per_head` of K and V) a chunk takes: about WAVES_PER_CHUNK waves within the
    L2 budget, the heads split evenly (a narrow last chunk would start long blocks last)."""
    wanted = -(-WAVES_PER_CHUNK * WAVE // max(1, blocks))
    chunk = max(1, min(heads, wanted, L2_BUDGET // max(1, kv_bytes_per_head)))
    chunks = -(-heads // chunk)
    return -(-heads // chunks)


def longest_first(pid, blocks: int, heads: int, chunk: int):
    """`(rank, head)` of the block started `pid`-th: `rank` 0 is the longest of its head's
    `blocks` blocks, `head` one of `heads` (batch x heads rows), `chunk` heads at a time (the
    last chunk may be narrower)."""
    first = pid // (blocks * chunk) * chunk
    width = chunk if heads % chunk == 0 else T.min(chunk, heads - first)
    rank_in_chunk = pid - first * blocks
    return rank_in_chunk // width, first + rank_in_chunk % width


def launch_grid(blocks: int, heads: int, batch: int, causal: bool) -> tuple:
    """The grid of a kernel with `blocks` blocks per (batch, head): one axis, started in
    `block_coordinates`' order, when causal; (blocks, heads, batch) otherwise."""
    return (blocks * heads * batch,) if causal else (blocks, heads, batch)


def block_coordinates(ids, blocks: int, heads: int, batch: int, kv_bytes_per_head: int,
                      causal: bool):
    """`(block, head, batch)` of the block a `launch_grid` kernel names `ids`. Causal: `block`
    is its rank, 0 the head's longest block, started longest first across chunks of heads
    (`kv_bytes_per_head` of K and V read per head); otherwise the grid's own coordinates."""
    if not causal:
        return ids
    chunk = heads_per_chunk(blocks, heads * batch, kv_bytes_per_head)
    rank, row = longest_first(ids, blocks, heads * batch, chunk)
    return rank, row % heads, row // heads
