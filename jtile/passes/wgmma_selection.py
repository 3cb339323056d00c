"""Which T.gemm runs on wgmma (sm_90a), and how its operands sit in shared memory.

Layout inference asks this before choosing an accumulator layout, and `lower_tile_ops` asks
it again to build the WgmmaGemm, so both see the same answer.
"""

from __future__ import annotations

import math
from typing import Optional

from jtile.ir import nodes as ir
from jtile.ir.affine import affine, is_whole
from jtile.ir.lowered import Major, PanelLayout
from jtile.ir.types import DType, MemorySpace, gemm_accumulators, gemm_inputs_match
from jtile.passes.layout import WgmmaTiling, choose_wgmma_tiling

WGMMA_INPUTS = (DType.float16, DType.bfloat16, DType.float8_e4m3, DType.float8_e5m2,
                DType.int8, DType.uint8)
# wgmma's N for 8-bit integer inputs (floating-point inputs take every multiple of 8).
INTEGER_N = (8, 24) + tuple(range(16, 257, 16))


def k_step(dtype: DType) -> int:
    """K of one wgmma instruction: 32 bytes of A per row."""
    return 32 // dtype.bytes


def panel_layout(buf: ir.Buffer) -> Optional[PanelLayout]:
    """The TMA/wgmma layout of a shared tile's last two dimensions, or None when its rows are
    not a multiple of 32 bytes. The panels are as wide as the widest swizzle span (128, 64 or
    32 bytes) that divides a row: 96 half-precision columns (192 bytes) are three 64-byte
    panels. A buffer with leading dimensions (a ring of stages the kernel keeps itself,
    `k[s, :, :]`) holds one such tile per leading index, each starting on a 1024-byte
    boundary as the swizzle needs."""
    if buf.ndim < 2 or not buf.space.is_shared:
        return None
    rows, cols = buf.shape[-2:]
    row_bytes = cols * buf.dtype.bytes
    span = next((s for s in (128, 64, 32) if row_bytes % s == 0), None)
    if span is None or rows % 8:
        return None
    if buf.ndim > 2 and (rows * row_bytes) % 1024:
        return None
    return PanelLayout(rows, cols, buf.dtype.bytes, span)


def split_start(expr) -> Optional[tuple]:
    """(static int part, moving part or None) of an affine start index; None when it is not
    affine. The moving part is the rest of the expression (loop indices times coefficients)."""
    if isinstance(expr, int):
        return expr, None
    form = affine(expr)
    if form is None:
        return None
    if form.is_const:
        return form.const, None
    return form.const, (expr - form.const if form.const else expr)


def _moves_by(expr, unit: int) -> bool:
    """Whether a moving start only ever moves by multiples of `unit`."""
    return math.gcd(*affine(expr).terms.values()) % unit == 0


def tile_origin(region: ir.Region) -> Optional[tuple]:
    """(row, column) at which `region` starts inside one tile of its buffer (the buffer's last
    two dimensions), when it lies inside one: one index into each leading dimension, affine
    starts in the last two. Each is (static int, moving part or None). None otherwise."""
    lead = region.buffer.ndim - 2
    if lead < 0 or any(e != 1 for e in region.extents[:lead]):
        return None
    origin = tuple(split_start(s) for s in region.starts[lead:])
    return None if any(v is None for v in origin) else origin


def wgmma_region(region: ir.Region, major: Major) -> bool:
    """Whether a wgmma descriptor can read `region` of its panel-laid-out tile: the whole tile
    (the buffer, or `buf[i, :, :]`), or a box of it made of whole 8-row core-matrix groups
    along M/N and whole k-steps along K (K-major), or whole k-steps of rows and whole panels of
    columns (MN-major), as TileLang's `Q[:, :dim // 2]` halves of a K-major tile are. A start
    that moves with a loop index (`q[:, k * 64:(k + 1) * 64]`) moves by whole 8-row groups
    along rows and by whole panels along columns, so each k-step's offset stays a constant."""
    layout = panel_layout(region.buffer)
    origin = tile_origin(region)
    if layout is None or origin is None:
        return False
    ((row, row_moves), (col, col_moves)), (rows, cols) = origin, tuple(region.extents[-2:])
    panel, step = layout.panel_columns, k_step(region.dtype)
    row_unit = 8 if major is Major.K else step
    if row_moves is not None and not _moves_by(row_moves, row_unit):
        return False
    if col_moves is not None and not _moves_by(col_moves, panel):
        return False
    if (row, col) == (0, 0) and (rows, cols) == (layout.rows, layout.cols):
        return True
    if major is Major.K:    # rows are M (or N), columns K
        return row % 8 == 0 and rows % 8 == 0 and col % step == 0 and cols % step == 0
    # rows are K, columns M (or N)
    return row % step == 0 and rows % step == 0 and col % panel == 0 and cols % panel == 0


def operand_major(gemm: ir.Gemm, which: str) -> Major:
    if which == "a":
        return Major.MN if gemm.transpose_a else Major.K
    return Major.K if gemm.transpose_b else Major.MN


def _operand_ok(gemm: ir.Gemm, which: str, tiling: WgmmaTiling) -> bool:
    region = gemm.a if which == "a" else gemm.b
    major = operand_major(gemm, which)
    if not wgmma_region(region, major):
        return False
    if major is Major.MN:
        if region.dtype.bits != 16:
            return False  # wgmma transposes 16-bit operands only
        # Each warpgroup's block of this operand must start on a panel.
        layout, width = panel_layout(region.buffer), region.extents[-1]
        share = tiling.m_per_wg if which == "a" else tiling.n_per_wg
        if share % layout.panel_columns and share != width:
            return False
        inst = min(share, 256)
        if inst % layout.panel_columns and inst != width:
            return False
    return True


def wgmma_tiling(gemm: ir.Gemm, threads: int, target, full_row: bool) -> Optional[WgmmaTiling]:
    """The warpgroup tiling when `gemm` can run on wgmma for `target`, else None."""
    if not getattr(target, "has_wgmma", False) or threads % 128:
        return None
    a, b, c = gemm.a, gemm.b, gemm.c
    if a.dtype not in WGMMA_INPUTS or not gemm_inputs_match(a.dtype, b.dtype) \
            or c.dtype not in gemm_accumulators(a.dtype):
        return None
    if c.buffer.space is not MemorySpace.FRAGMENT or c.buffer.reducer_op is not None \
            or not is_whole(c) or c.buffer.ndim != 2:
        return None
    if not b.buffer.space.is_shared:
        return None
    a_regs = a.buffer.space is MemorySpace.FRAGMENT
    if a_regs and (gemm.transpose_a or a.dtype.bits != 16 or not is_whole(a)):
        return None
    if not a_regs and not a.buffer.space.is_shared:
        return None
    m, n = c.buffer.shape
    # K of the operand region (a stage tile `a[s, :, :]` has the buffer's last two dims).
    k = a.squeezed_shape()[0 if gemm.transpose_a else 1]
    if k % k_step(a.dtype):
        return None
    policy = getattr(gemm, "policy", "square")
    rows_first = full_row or a_regs or policy == "full_row"
    for rows_only in ((True,) if rows_first else (False, True)):
        tiling = choose_wgmma_tiling(m, n, threads // 128, rows_only)
        if tiling is None:
            continue
        if policy == "full_col" and tiling.wgs_m != 1:
            # FullCol: warpgroups side by side along N, when the tile allows it.
            tiling = choose_wgmma_tiling(m, n, threads // 128, False, columns_only=True)
            if tiling is None:
                continue
        if a.dtype.is_int and instruction_n(tiling) not in INTEGER_N:
            continue
        if (a_regs or _operand_ok(gemm, "a", tiling)) and _operand_ok(gemm, "b", tiling):
            return tiling
    return None


def instruction_n(tiling: WgmmaTiling) -> int:
    return min(tiling.n_per_wg, 256)
