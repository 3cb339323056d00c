"""Moving whole rows between global memory and register fragments, inside a kernel body.

A row whose length is a power of 2 fills its fragment exactly and moves with `T.copy` (16-byte
vectors; rows past the end of the array read as zeros and are not written). A row of any other
length sits in a wider fragment: `T.copy` only moves tiles that fit the array, so those rows
move element by element in a `T.Parallel` loop (still coalesced across a warp), reading zeros
and writing nothing past the row's end.
"""

from __future__ import annotations

import math

import jtile.language as T


def load_rows(src, frag, row0, tiling, *, fill=0.0):
    """`frag[i, j] = src[row0 + i, j]`, and `fill` past the row's end (columns >= N) or the
    array's (rows >= M) on the element path.

    Args:
        src: a (M, N) global buffer.
        frag: a (block_rows, padded) fragment.
        row0: the first row (a traced index).
        tiling: the op's `RowTiling`.
        fill: the value of padding (0, or -inf for a max); rows past M read as zeros on the
            `T.copy` path whatever `fill` is, so callers never store or sum what fills them.
    """
    rows, cols = frag.shape
    M, N = src.shape
    if not tiling.is_padded:
        # Rows past M read as zeros whatever `fill` is: they are never stored.
        T.copy(src[row0, 0], frag)
        return
    for i, j in T.Parallel(rows, cols):
        value = src[T.min(row0 + i, M - 1), T.min(j, N - 1)]
        pad = -T.infinity(frag.dtype) if fill == -math.inf else T.cast(fill, frag.dtype)
        frag[i, j] = T.if_then_else((j < N) & (row0 + i < M), value, pad)


def store_rows(frag, dst, row0, tiling):
    """`dst[row0 + i, j] = frag[i, j]` for the rows and columns inside dst."""
    rows, cols = frag.shape
    M, N = dst.shape
    if not tiling.is_padded:
        T.copy(frag, dst[row0, 0])
        return
    for i, j in T.Parallel(rows, cols):
        with T.If((j < N) & (row0 + i < M)):
            dst[row0 + i, j] = frag[i, j]


def store_row(frag, dst, row, tiling):
    """`dst[row, j] = frag[j]` for the columns inside dst: one (padded,) fragment, one row."""
    (cols,) = frag.shape
    _, N = dst.shape
    if not tiling.is_padded:
        T.copy(frag, dst[row, 0])
        return
    for j in T.Parallel(cols):
        with T.If(j < N):
            dst[row, j] = frag[j]
