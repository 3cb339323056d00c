"""How the row-wise ops tile a (rows, columns) problem over blocks and threads.

Fragments spread over threads bit by bit, so every fragment dimension is a power of 2: a row of
N columns lives in a fragment of `next_power_of_2(N)` columns whose padding `T.copy` fills with
zeros on load and skips on store. The kernels load through a fragment of the input's own dtype,
so each thread moves 16 bytes per access (8 bfloat16 or 4 float32 values), and work in float32
fragments that follow the same layout.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from jtile.ops.checks import fail

# Elements of a row each thread holds: 16 gives every thread at least one 16-byte vector of a
# 16-bit dtype and keeps the float32 working fragments within the register budget.
ELEMENTS_PER_THREAD = 16
MAX_THREADS = 1024
MIN_THREADS = 32
# The widest row kept whole in registers: 1024 threads x 16 elements.
MAX_ROW = MAX_THREADS * ELEMENTS_PER_THREAD
# Rows handled per block when rows are short, so a block still has a warp's worth of work.
MIN_BLOCK_ELEMENTS = MIN_THREADS * ELEMENTS_PER_THREAD


def next_power_of_2(n: int) -> int:
    """The smallest power of 2 that is >= n (1 for n <= 1)."""
    return 1 << max(0, (int(n) - 1).bit_length())


@dataclass(frozen=True)
class RowTiling:
    """One block's share of a (rows, columns) problem.

    Attributes:
        columns: the row length N.
        padded: the fragment width, N rounded up to a power of 2.
        block_rows: rows per block (a power of 2).
        threads: threads per block.
    """

    columns: int
    padded: int
    block_rows: int
    threads: int

    @property
    def is_padded(self) -> bool:
        """Whether the fragment has columns past the row's end (masks are needed)."""
        return self.padded != self.columns


def row_tiling(op: str, rows: int, columns: int, *, max_columns: int = MAX_ROW) -> RowTiling:
    """The tiling of `rows` rows of `columns` elements kept whole in registers.

    Args:
        op: the op's name, for the error.
        rows: the number of rows (a block never takes more rows than there are, so its tile
            fits the array).
        columns: the row length.
        max_columns: the widest row the op accepts.

    Raises:
        JtileShapeError: the row is wider than `max_columns`.
    """
    if columns > max_columns:
        raise fail(op, f"the last axis has {columns} elements; rows of at most {max_columns} "
                       "are kept in registers by this op")
    padded = next_power_of_2(columns)
    block_rows = max(1, MIN_BLOCK_ELEMENTS // padded)
    block_rows = min(block_rows, 1 << (max(1, int(rows)).bit_length() - 1))
    threads = block_rows * padded // ELEMENTS_PER_THREAD
    threads = int(np.clip(threads, MIN_THREADS, MAX_THREADS))
    return RowTiling(columns, padded, block_rows, threads)


def persistent_blocks(rows: int, block_rows: int, limit: int = 512) -> tuple:
    """`(blocks, steps)`: a grid of at most `limit` blocks that loop `steps` times over row
    groups, so a backward kernel accumulates its column sums (dW) in registers across many rows
    and writes one partial row per block instead of one per row group."""
    groups = -(-rows // block_rows)
    blocks = min(groups, limit)
    steps = -(-groups // blocks)
    return blocks, steps


# Shared memory one block may stage rows in: two such blocks fit a Hopper SM (227 KB).
STAGING_BYTES = 96 * 1024
MAX_STAGES = 4


def staging_stages(tiling: RowTiling, itemsizes) -> int:
    """How many row groups a backward kernel keeps in flight through shared memory: the rows
    of the next steps load asynchronously (cp.async / TMA) while this step computes, instead
    of every step waiting for its own loads. 0 when two stages of `itemsizes` (one per staged
    input, in bytes) do not fit `STAGING_BYTES`: the rows then load straight into registers."""
    stage = tiling.block_rows * tiling.padded * sum(itemsizes)
    stages = min(MAX_STAGES, STAGING_BYTES // stage)
    return stages if stages >= 2 else 0


# Element-wise kernels over flattened arrays (swiglu, the cross-entropy backward): blocks of
# FLAT_THREADS threads, each moving two 16-byte vectors of every operand.
FLAT_THREADS = 256


def flat_tile(size: int, itemsize: int) -> int:
    """Elements per block of an element-wise kernel over `size` elements of `itemsize`
    bytes: FLAT_THREADS x 2 vectors of 16 bytes, at most the array (a tile must fit the
    array), a power of 2 (fragments spread over threads bit by bit)."""
    tile = FLAT_THREADS * 2 * (16 // itemsize)
    while tile > size:
        tile //= 2
    return tile

