"""The column sum that finishes a weight gradient from per-block partial rows.

A (G, N) array of partial rows is summed in passes: each pass splits the rows into groups of
`_GROUP_ROWS` and the columns into tiles of `_BLOCK_COLS`, one block per (group, tile), so
even a few hundred partial rows of a few thousand columns spread over hundreds of blocks
instead of the dozen a walk down whole columns would use. Each pass leaves one row per group;
the last pass (one group) casts to the weight's dtype. The sums run in a fixed order, so the
result is the same on every run.
"""

from __future__ import annotations

import functools

import jax
import numpy as np

import jtile
import jtile.language as T

_BLOCK_COLS = 256
_TILE_ROWS = 8
_GROUP_ROWS = 32
_THREADS = 128


def column_sum_kernel(P, *, out_dtype):
    """Sums each group of `_GROUP_ROWS` rows of P (G, N) float32 into one row.

    Output: (ceil(G / _GROUP_ROWS), N) in `out_dtype`. Block (bx, by) owns columns
    [256 bx, 256 bx + 256) of rows [32 by, 32 by + 32): it adds (8, 256) tiles (T.copy reads
    zeros past the array's end) into a register fragment, then reduces it across its rows.
    Any arch (sm_80+).
    """
    G, N = P.shape
    groups = T.ceildiv(G, _GROUP_ROWS)
    Out = T.empty((groups, N), out_dtype)
    with T.Kernel(T.ceildiv(N, _BLOCK_COLS), groups, threads=_THREADS) as (bx, by):
        tile = T.alloc_fragment((_TILE_ROWS, _BLOCK_COLS), "float32")
        acc = T.alloc_fragment((_TILE_ROWS, _BLOCK_COLS), "float32")
        total = T.alloc_fragment((_BLOCK_COLS,), "float32")
        T.clear(acc)
        for k in T.unroll(_GROUP_ROWS // _TILE_ROWS):
            T.copy(P[by * _GROUP_ROWS + k * _TILE_ROWS, bx * _BLOCK_COLS], tile)
            for i, j in T.Parallel(_TILE_ROWS, _BLOCK_COLS):
                acc[i, j] = acc[i, j] + tile[i, j]
        T.reduce_sum(acc, total, dim=0)
        T.copy(total, Out[by, bx * _BLOCK_COLS])
    return Out


@functools.lru_cache(maxsize=None)
def _launcher(out_dtype: str, interpret: bool):
    return jtile.pallas_like(functools.partial(column_sum_kernel, out_dtype=out_dtype),
                             name="column_sum", interpret=interpret)


def column_sum(partial: jax.Array, out_dtype, *, interpret: bool) -> jax.Array:
    """`partial.sum(axis=0)` of a 2-D float32 array, cast to `out_dtype`, as jtile kernels."""
    while partial.shape[0] > _GROUP_ROWS:
        partial = _launcher("float32", interpret)(partial)
    return _launcher(np.dtype(out_dtype).name, interpret)(partial)[0]
