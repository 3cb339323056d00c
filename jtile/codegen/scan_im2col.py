"""CUDA for T.cumsum / T.cummax (Scan) and T.im2col (Im2Col) on shared tiles.

Both are plain loops spread over the block's threads (`strided_loop`); the emitter's barrier
placement sees their shared reads and writes through `jtile.ir.walk` and syncs around them.
A scan gives each line along the scanned dimension to one thread, which walks it in order,
so in-place scans need no extra barrier. Any arch (sm_80+).
"""

from __future__ import annotations

import math

from jtile.codegen.expr import const_text
from jtile.ir import nodes as ir
from jtile.ir.types import DType


def _accumulator(dtype: DType) -> DType:
    if dtype.is_float and dtype.bits < 32:
        return DType.float32
    if dtype.is_int and dtype.bits < 32:
        return DType.int32 if dtype.is_signed else DType.uint32
    return dtype


def _line_indices(em, extents: tuple, dim: int, line: str) -> list:
    """C index expressions of each dimension but `dim` for flat line number `line`."""
    indices, stride = [None] * len(extents), 1
    for d in reversed(range(len(extents))):
        if d == dim:
            continue
        indices[d] = f"(({line}) / {stride}) % {extents[d]}" if stride > 1 else \
            f"({line}) % {extents[d]}"
        stride *= extents[d]
    return indices


def _at(em, region: ir.Region, local: list) -> str:
    """An lvalue for region element `local` (C expressions relative to the region's start)."""
    return em.element(region.buffer, [f"({em.expr(start)}) + ({i})"
                                      for start, i in zip(region.starts, local)])


def emit_scan(em, s: ir.Scan) -> None:
    em.comment_loc(s.loc)
    extents = tuple(s.src.extents)
    n = extents[s.dim]
    lines = math.prod(extents) // n
    acc_t = _accumulator(s.src.dtype)
    line, step, acc = em.temp("line"), em.temp("t"), em.temp("acc")
    with em.strided_loop(line, lines):
        local = _line_indices(em, extents, s.dim, line)
        if s.op == "sum":
            em.line(f"{acc_t.c_name} {acc} = {const_text(0, acc_t)};")
        else:
            lowest = f"-jt::infinity<{acc_t.c_name}>()" if acc_t.is_float else \
                f"jt::min_value<{acc_t.c_name}>()"
            em.line(f"{acc_t.c_name} {acc} = {lowest};")
        with em.block(f"for (int {step} = 0; {step} < {n}; ++{step})"):
            local[s.dim] = f"{n - 1} - {step}" if s.reverse else step
            x = f"jt::cast<{acc_t.c_name}>({_at(em, s.src, local)})"
            em.line(f"{acc} = {acc} + {x};" if s.op == "sum" else f"{acc} = jt::max({acc}, {x});")
            em.line(f"{_at(em, s.dst, local)} = jt::cast<{s.dst.dtype.c_name}>({acc});")


def emit_im2col(em, s: ir.Im2Col) -> None:
    em.comment_loc(s.loc)
    batch, height, width, channels = s.img.shape
    out_h, out_w = s.out_hw
    rows, cols = s.col.extents[-2:]
    e = em.temp("e")
    nhw, cstep = em.expr(s.nhw_step), em.expr(s.c_step)
    with em.strided_loop(e, rows * cols):
        i, j = f"({e} / {cols})", f"({e} % {cols})"
        em.line(f"const int jt_m = ({nhw}) * {rows} + {i};")
        em.line(f"const int jt_k = ({cstep}) * {cols} + {j};")
        em.line(f"const int jt_n = jt_m / {out_h * out_w};")
        em.line(f"const int jt_h = (jt_m % {out_h * out_w}) / {out_w} * {s.stride} - {s.pad} + "
                f"jt_k / {s.kernel * channels} * {s.dilation};")
        em.line(f"const int jt_w = jt_m % {out_w} * {s.stride} - {s.pad} + "
                f"(jt_k / {channels}) % {s.kernel} * {s.dilation};")
        em.line(f"const bool jt_inside = jt_m < {batch * out_h * out_w} && "
                f"jt_k < {s.kernel * s.kernel * channels} && jt_h >= 0 && jt_h < {height} && "
                f"jt_w >= 0 && jt_w < {width};")
        value = em.element(s.img, ["jt_n", "jt_h", "jt_w", f"jt_k % {channels}"])
        local = ["0"] * (len(s.col.extents) - 2) + [i, j]
        em.line(f"{_at(em, s.col, local)} = jt_inside ? {value} : "
                f"{const_text(0, s.col.dtype)};")
