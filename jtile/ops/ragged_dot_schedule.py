"""Tile tables for `jtile.ops.ragged_dot`: where each row tile of a grouped GEMM starts.

Group sizes are runtime values, so the kernels are compiled for the worst case and read their
work from small int32 tables computed on the device with a few `jnp` ops:

- `row_tiles`: the forward (and lhs-gradient) GEMM runs one block row per possible row tile.
  Group g owns rows [start_g, end_g) (the running sum of the sizes, clipped to m), split into
  ceil(size_g / block_m) tiles; the rows past the last group (sum < m) form one more run of
  tiles whose output is zero, as `jax.lax.ragged_dot` gives it. The g + 1 runs partition the m
  rows, so they need at most ceil(m / block_m) + g tiles (each split adds at most one partial
  tile); the tiles past the real count are idle.
- `group_tiles` / `pad_rows`: the rhs-gradient GEMM contracts over each group's rows. One of
  its two operands is copied into a group-padded layout where every group starts on a tile
  boundary and the rows between groups are zero, so a tile that runs past its group's end reads
  zeros there and the rows of the next group add nothing.

Negative sizes are treated as empty groups: `jax.lax.ragged_dot` gives overlapping groups for
them, which is not a partition of the rows.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp


def _ceildiv(a, b):
    return (a + b - 1) // b


@dataclasses.dataclass(frozen=True)
class RowTiles:
    """Per row tile t: its group (-1 for tiles that only write zeros or do nothing), its first
    row, and the end of its group's rows (stores stop there). All (max_tiles,) int32."""

    group: jax.Array
    row: jax.Array
    end: jax.Array


def max_row_tiles(m: int, groups: int, block_m: int) -> int:
    """The number of row tiles the forward grid is compiled for."""
    return _ceildiv(m, block_m) + groups


def group_bounds(group_sizes: jax.Array, m: int):
    """(starts, ends) of each group's rows, int32 (g,), clipped to [0, m]."""
    sizes = jnp.maximum(group_sizes.astype(jnp.int32), 0)
    ends = jnp.minimum(jnp.cumsum(sizes), m)
    starts = jnp.concatenate([jnp.zeros((1,), jnp.int32), ends[:-1]])
    return starts, ends


def row_tiles(group_sizes: jax.Array, m: int, block_m: int) -> RowTiles:
    """The forward GEMM's tile tables for `m` rows split by `group_sizes` (g,)."""
    groups = group_sizes.shape[0]
    starts, ends = group_bounds(group_sizes, m)
    total = ends[-1:]
    # Run g is the rows past the last group: zero output rows.
    run_starts = jnp.concatenate([starts, total])
    run_sizes = jnp.concatenate([ends - starts, m - total])
    run_tiles = _ceildiv(run_sizes, block_m)
    run_last_tile = jnp.cumsum(run_tiles)  # one past each run's last tile
    t = jnp.arange(max_row_tiles(m, groups, block_m), dtype=jnp.int32)
    run = jnp.searchsorted(run_last_tile, t, side="right").astype(jnp.int32)
    live = run <= groups
    run = jnp.minimum(run, groups)
    first_tile = run_last_tile[run] - run_tiles[run]
    row = run_starts[run] + (t - first_tile) * block_m
    end = run_starts[run] + run_sizes[run]
    group = jnp.where(live & (run < groups), run, -1)
    # Idle tiles start at row m: every store of theirs is masked off.
    return RowTiles(group=group.astype(jnp.int32),
                    row=jnp.where(live, row, m).astype(jnp.int32),
                    end=jnp.where(live, end, m).astype(jnp.int32))


@dataclasses.dataclass(frozen=True)
class GroupTiles:
    """Per group: its first row, its first row in the padded layout, its number of row
    tiles. All (g,) int32; `padded_rows` is the static length of the padded layout."""

    start: jax.Array
    padded_start: jax.Array
    tiles: jax.Array
    padded_rows: int


def group_tiles(group_sizes: jax.Array, m: int, block_m: int) -> GroupTiles:
    """Tables of the rhs-gradient GEMM, which loops over each group's row tiles."""
    groups = group_sizes.shape[0]
    starts, ends = group_bounds(group_sizes, m)
    tiles = _ceildiv(ends - starts, block_m)
    padded_start = (jnp.cumsum(tiles) - tiles) * block_m
    # The groups fill at most m rows, so their tiles number at most ceil(m/bm) + g - 1.
    padded_rows = max(_ceildiv(m, block_m) + groups - 1, 1) * block_m
    return GroupTiles(start=starts, padded_start=padded_start.astype(jnp.int32),
                      tiles=tiles.astype(jnp.int32), padded_rows=padded_rows)


def pad_rows(x: jax.Array, group_sizes: jax.Array, tables: GroupTiles) -> jax.Array:
    """`x` (m, w) gathered into the group-padded layout (padded_rows, w), zeros between groups.

    Row p of the result is row start_g + (p - padded_start_g) of `x` when that lies inside
    group g, and zero otherwise.
    """
    m = x.shape[0]
    starts, ends = group_bounds(group_sizes, m)
    p = jnp.arange(tables.padded_rows, dtype=jnp.int32)
    group = jnp.searchsorted(tables.padded_start, p, side="right").astype(jnp.int32) - 1
    group = jnp.clip(group, 0, group_sizes.shape[0] - 1)
    source = starts[group] + (p - tables.padded_start[group])
    inside = (p >= tables.padded_start[group]) & (source < ends[group])
    rows = jnp.take(x, jnp.clip(source, 0, m - 1), axis=0)
    return jnp.where(inside[:, None], rows, jnp.zeros((), x.dtype))
