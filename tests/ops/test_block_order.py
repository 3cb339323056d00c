"""Causal attention's launch order (jtile/ops/block_order.py): every (block, head) started
exactly once, longest first within each chunk of heads, chunk after chunk; and the attention
op exact under chunks that do not divide the heads."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jtile
import jtile.language as T
from jtile.ops import block_order
from tests.ops import test_attention_op as attention_tests


def _order(blocks, heads, chunk):
    """(rank, head) of each launch position, from a kernel run in interpret mode."""
    def kernel(X):
        out = T.empty((blocks * heads, 2), "int32")
        with T.Kernel(blocks * heads, threads=32) as pid:
            rank, head = block_order.longest_first(pid, blocks, heads, chunk)
            out[pid, 0] = rank
            out[pid, 1] = head
        return out

    x = jnp.zeros((1,), jnp.int32)
    return np.asarray(jtile.pallas_like(kernel, interpret=True)(x))


@pytest.mark.parametrize("blocks, heads, chunk", [(5, 7, 3), (4, 6, 3), (3, 2, 8), (6, 5, 1)])
def test_every_block_once_longest_first_by_chunk(blocks, heads, chunk):
    order = _order(blocks, heads, chunk)
    assert sorted(map(tuple, order)) == [(r, h) for r in range(blocks) for h in range(heads)]
    for start in range(0, heads, chunk):
        heads_here = range(start, min(start + chunk, heads))
        rows = order[start * blocks:(start + len(heads_here)) * blocks]
        assert set(rows[:, 1]) == set(heads_here)       # one chunk's heads, together
        assert list(rows[:, 0]) == sorted(rows[:, 0])   # longest (rank 0) first


def test_heads_per_chunk_takes_a_few_waves_within_the_l2_budget_split_evenly(monkeypatch):
    monkeypatch.setattr(block_order, "WAVE", 100)
    monkeypatch.setattr(block_order, "WAVES_PER_CHUNK", 2)
    # 2 waves of 100 blocks = 20 heads of 10 blocks; 64 heads in 4 chunks of 16.
    assert block_order.heads_per_chunk(10, 64, 1 << 10) == 16
    assert block_order.heads_per_chunk(10, 8, 1 << 10) == 8          # all heads
    budget_heads = block_order.L2_BUDGET // (4 << 20)                 # 4 heads in budget
    assert block_order.heads_per_chunk(10, 64, 4 << 20) == budget_heads
    assert block_order.heads_per_chunk(10, 64, 2 * block_order.L2_BUDGET) == 1
    assert block_order.heads_per_chunk(10, 41, 1 << 10) == 14         # 14, 14, 13


def test_causal_attention_with_chunks_that_do_not_divide_the_heads(monkeypatch):
    """Three heads a chunk over 2 x 4 (batch x heads): the last chunk is narrower."""
    q, k, v, do, _ = attention_tests._inputs("chunks", 2, 136, 4, 2, 64, jnp.float16)
    kv_bytes = 2 * 136 * 64 * 2
    monkeypatch.setattr(block_order, "L2_BUDGET", 3 * kv_bytes // 2)  # 3 query heads (GQA 2)
    assert block_order.heads_per_chunk(3, 8, kv_bytes // 2) == 3
    attention_tests._check_forward_and_gradients(q, k, v, do, causal=True)
