"""The column sum that finishes a weight gradient from per-block partial rows."""

from __future__ import annotations

import functools

import jax
import numpy as np

import jtile
import jtile.language as T

_BLOCK_COLS = 256
_BLOCK_ROWS = 16
_THREADS = 128


def column_sum_kernel(P, *, out_dtype):
    """Sums a (rows, columns) float32 array over its rows.

    Shapes: P (G, N) float32 in global memory; the result (N,) in `out_dtype`. Each block owns
    256 columns and walks down the rows 16 at a time, adding them into a (16, 256) register
    fragment, then reduces it across its rows. Any arch (sm_80+).
    """
    G, N = P.shape
    Out = T.empty((N,), out_dtype)
    with T.Kernel(T.ceildiv(N, _BLOCK_COLS), threads=_THREADS) as bx:
        acc = T.alloc_fragment((_BLOCK_ROWS, _BLOCK_COLS), "float32")
        total = T.alloc_fragment((_BLOCK_COLS,), "float32")
        T.clear(acc)
        for k in T.serial(T.ceildiv(G, _BLOCK_ROWS)):
            for i, j in T.Parallel(_BLOCK_ROWS, _BLOCK_COLS):
                row = k * _BLOCK_ROWS + i
                col = bx * _BLOCK_COLS + j
                # Element reads: a (16, 256) tile need not fit inside P (few blocks, narrow N).
                acc[i, j] = acc[i, j] + T.if_then_else(
                    (row < G) & (col < N), P[T.min(row, G - 1), T.min(col, N - 1)], 0.0)
        T.reduce_sum(acc, total, dim=0)
        for j in T.Parallel(_BLOCK_COLS):
            with T.If(bx * _BLOCK_COLS + j < N):
                Out[bx * _BLOCK_COLS + j] = total[j]
    return Out


@functools.lru_cache(maxsize=None)
def _launcher(out_dtype: str, interpret: bool):
    return jtile.pallas_like(functools.partial(column_sum_kernel, out_dtype=out_dtype),
                             name="column_sum", interpret=interpret)


def column_sum(partial: jax.Array, out_dtype, *, interpret: bool) -> jax.Array:
    """`partial.sum(axis=0)` of a 2-D float32 array, cast to `out_dtype`, as a jtile kernel."""
    return _launcher(np.dtype(out_dtype).name, interpret)(partial)
