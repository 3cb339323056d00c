"""Moving whole rows between global memory and register fragments, inside a kernel body.

A row of N elements sits in a fragment of `padded` (a power of 2) columns. `T.copy` moves it
in the widest vectors the row's alignment allows; the columns past N and the rows past the
array's end read as zeros and are not written (stores are plain `T.copy`s).
"""

from __future__ import annotations

import math

import jtile.language as T


def load_rows(src, frag, row0, tiling, *, fill=0.0):
    """`frag[i, j] = src[row0 + i, j]`, and `fill` in the padding columns (j >= N).

    Args:
        src: a (M, N) global buffer.
        frag: a (block_rows, padded) fragment.
        row0: the first row (a traced index).
        tiling: the op's `RowTiling`.
        fill: the value of the padding columns (0, or -inf for a max); rows past M read as
            zeros whatever `fill` is, so callers never store or sum what fills them.
    """
    rows, cols = frag.shape
    _, N = src.shape
    T.copy(src[row0, 0], frag)
    if tiling.is_padded and fill != 0.0:
        pad = -T.infinity(frag.dtype) if fill == -math.inf else T.cast(fill, frag.dtype)
        for i, j in T.Parallel(rows, cols):
            frag[i, j] = T.if_then_else(j < N, frag[i, j], pad)


def row_steps(steps, stages):
    """The loop over a backward kernel's row groups: pipelined through shared memory when
    `stages` (see `rows.staging_stages`), else a plain loop."""
    return T.Pipelined(steps, num_stages=stages) if stages else T.serial(steps)


def staging(sources, tiling, stages):
    """One shared (block_rows, padded) buffer per source for `load_step`, or None."""
    if not stages:
        return None
    return [T.alloc_shared((tiling.block_rows, tiling.padded), src.dtype) for src in sources]


def load_step(sources, staged, frags, row0, tiling):
    """`frags[k] = sources[k][row0:row0 + block_rows]` for one step of `row_steps`: through
    the shared buffers `staged` (their copies are what the pipeline issues ahead), or straight
    into registers."""
    if staged is None:
        for src, frag in zip(sources, frags):
            load_rows(src, frag, row0, tiling)
        return
    for src, buf in zip(sources, staged):
        T.copy(src[row0, 0], buf)
    for buf, frag in zip(staged, frags):
        T.copy(buf, frag)

