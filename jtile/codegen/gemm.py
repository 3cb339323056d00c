"""T.gemm on tensor cores (ldmatrix + mma.sync.m16n8k16, sm_80+) or in float32 FMA.

Tensor-core path: the warp grid of the accumulator's tiling splits C; for each 16-wide step of
K every warp loads its A rows (ldmatrix.x4, .trans when A is stored K-major) and B columns
(ldmatrix.x4.trans for a (K, N) tile, plain for an (N, K) one), then issues mt x nt mma.sync.
A and B may also come from fragments already in the mma operand layouts (attention's P @ V;
TileLang's SR and RR gemms), and the FMA path reads fragment operands from the registers that
hold each thread's rows of A and columns of B (`infer_layouts.fma_operand_layout`).
"""

from __future__ import annotations

from jtile.codegen.expr import const_text
from jtile.codegen.padding import inside
from jtile.codegen.parallel import bit_runs, bits_expr, index_expr
from jtile.codegen.tile_copy import region_index
from jtile.errors import JtileTraceError
from jtile.ir import nodes as ir
from jtile.ir.types import DType, MemorySpace
from jtile.passes.layout import padded

_MMA = {DType.float16: "jt::mma_m16n8k16_f16f32", DType.bfloat16: "jt::mma_m16n8k16_bf16f32"}


def _smem_ptr(em, region: ir.Region, row: str, col: str) -> str:
    idx = region_index(em, region, [row, col])
    return f"&{em.name(region.buffer)}[{em.shared_offset(region.buffer, idx)}]"


def emit_mma_sync_gemm(em, g) -> None:
    """A lowered MmaSyncGemm: ldmatrix + mma.sync on its warp grid."""
    em.comment_loc(g.loc)
    with em.block(""):
        _emit_mma_gemm(em, g.tile, g.tiling)


def emit_fma_gemm(em, g) -> None:
    """A lowered FmaGemm."""
    em.comment_loc(g.loc)
    with em.block(""):
        _emit_fma_gemm(em, g.tile)


def _emit_mma_gemm(em, s: ir.Gemm, t) -> None:
    if not em.target.has_mma_sync_bf16:
        raise JtileTraceError(f"{em.kernel.name} ({em.kernel.loc}): {s.loc}: T.gemm on 16-bit "
                              f"inputs needs mma.sync (sm_80+); the target is {em.target.arch}")
    tid = em.tile_thread()
    m, n = s.c.squeezed_shape()
    k = s.a.squeezed_shape()[0] if s.transpose_a else s.a.squeezed_shape()[1]
    c = em.name(s.c.buffer)
    # mt x nt tiles per warp of the padded accumulator; kt k-steps, register operands laid
    # out over padded_kt of them.
    mt, nt, kt, padded_kt = t.mt, t.nt, k // 16, padded(k) // 16
    if k % 16:
        raise JtileTraceError(f"{em.kernel.name} ({em.kernel.loc}): {s.loc}: T.gemm K = {k} must "
                              "be a multiple of 16 on tensor cores")
    em.line(f"const int jt_lane = {tid} & 31;")
    em.line(f"const int jt_warp_m = ({tid} >> 5) % {t.wm}; (void)jt_warp_m;")
    em.line(f"const int jt_warp_n = ({tid} >> 5) / {t.wm};")
    if s.clear_accum:
        em.line("#pragma unroll")
        zero = "0.0f" if s.c.dtype is DType.float32 else f"jt::cast<{s.c.dtype.c_name}>(0.0f)"
        em.line(f"for (int r = 0; r < {mt * nt * 4}; ++r) {c}[r] = {zero};")
    a_frag = s.a.buffer.space is MemorySpace.FRAGMENT
    mma = _MMA[s.a.dtype]
    # Tiles past a padded M or N (a 96-row accumulator laid out as 128) are skipped.
    row_inside = f"jt_warp_m * {mt * 16} + mi * 16 < {m}" if t.rows_padded else None
    col_inside = f"jt_warp_n * {nt * 8} + ni * 8 < {n}" if t.cols_padded else None
    em.line("#pragma unroll")
    with em.block(f"for (int kk = 0; kk < {kt}; ++kk)"):
        em.line(f"unsigned a[{mt}][4];")
        em.line(f"unsigned b[{nt}][2];")
        em.line("#pragma unroll")
        with em.block(f"for (int mi = 0; mi < {mt}; ++mi)"):
            if row_inside:
                em.line(f"if (!({row_inside})) continue;")
            if a_frag:
                af = em.name(s.a.buffer)
                em.line(f"const int base = 8 * (kk + {padded_kt} * mi);")
                for q in range(4):
                    em.line(f"a[mi][{q}] = jt::pack2({af}[base + {2 * q}], {af}[base + {2 * q + 1}]);")
            elif not s.transpose_a:
                em.line(f"const int m0 = jt_warp_m * {mt * 16} + mi * 16;")
                ptr = _smem_ptr(em, s.a, "m0 + (jt_lane & 15)", "kk * 16 + (jt_lane >> 4) * 8")
                em.line(f"jt::ldmatrix_x4(a[mi], {ptr});")
            else:
                em.line(f"const int m0 = jt_warp_m * {mt * 16} + mi * 16;")
                ptr = _smem_ptr(em, s.a, "kk * 16 + (jt_lane & 7) + (jt_lane >> 4) * 8",
                                "m0 + ((jt_lane >> 3) & 1) * 8")
                em.line(f"jt::ldmatrix_x4_trans(a[mi], {ptr});")
        if s.b.buffer.space is MemorySpace.FRAGMENT:
            _b_from_fragment(em, s, nt, padded_kt, col_inside)
        else:
            _b_from_shared(em, s, nt, n if t.cols_padded else None)
        em.line("#pragma unroll")
        with em.block(f"for (int mi = 0; mi < {mt}; ++mi)"):
            em.line("#pragma unroll")
            with em.block(f"for (int ni = 0; ni < {nt}; ++ni)"):
                inside_tile = " && ".join(x for x in (row_inside, col_inside) if x)
                if inside_tile:
                    em.line(f"if (!({inside_tile})) continue;")
                if s.c.dtype is DType.float16:  # c0..c3 in two registers of two halves
                    em.line(f"jt::mma_m16n8k16_f16f16(*reinterpret_cast<unsigned(*)[2]>("
                            f"&{c}[(mi * {nt} + ni) * 4]), a[mi], b[ni]);")
                else:
                    em.line(f"{mma}(*reinterpret_cast<float(*)[4]>(&{c}[(mi * {nt} + ni) * 4]), "
                            "a[mi], b[ni]);")


def _b_from_fragment(em, s: ir.Gemm, nt: int, kt: int, col_inside) -> None:
    """B's registers for k-step kk: register r = e + 4 * (kk + kt * ni) of a fragment in
    MmaTiling.operand_b_layout (kt: its padded k-steps), pairs of halves packed as mma.sync
    takes them; the tiles past a padded N (`col_inside` false) skipped."""
    bf = em.name(s.b.buffer)
    em.line("#pragma unroll")
    with em.block(f"for (int ni = 0; ni < {nt}; ++ni)"):
        if col_inside:
            em.line(f"if (!({col_inside})) continue;")
        em.line(f"const int base = 4 * (kk + {kt} * ni);")
        for q in range(2):
            em.line(f"b[ni][{q}] = jt::pack2({bf}[base + {2 * q}], {bf}[base + {2 * q + 1}]);")


def _b_from_shared(em, s: ir.Gemm, nt: int, n_real) -> None:
    """B's registers for k-step kk, by ldmatrix (.trans for a (K, N) tile). With `n_real`
    (N padded) the tiles from column n_real on are skipped; pairs of tiles load together
    only when no pair straddles that column."""
    step = 2 if nt >= 2 and (n_real is None or n_real % 16 == 0) else 1
    em.line("#pragma unroll")
    with em.block(f"for (int ni = 0; ni < {nt}; ni += {step})"):
        em.line(f"const int n0 = jt_warp_n * {nt * 8} + ni * 8;")
        if n_real is not None:
            em.line(f"if (n0 >= {n_real}) continue;")
        if step == 2:
            em.line("unsigned r4[4];")
            if not s.transpose_b:
                ptr = _smem_ptr(em, s.b, "kk * 16 + (jt_lane & 7) + ((jt_lane >> 3) & 1) * 8",
                                "n0 + (jt_lane >> 4) * 8")
                em.line(f"jt::ldmatrix_x4_trans(r4, {ptr});")
            else:
                ptr = _smem_ptr(em, s.b, "n0 + (jt_lane & 7) + (jt_lane >> 4) * 8",
                                "kk * 16 + ((jt_lane >> 3) & 1) * 8")
                em.line(f"jt::ldmatrix_x4(r4, {ptr});")
            em.line("b[ni][0] = r4[0]; b[ni][1] = r4[1]; b[ni + 1][0] = r4[2]; "
                    "b[ni + 1][1] = r4[3];")
        else:
            if not s.transpose_b:
                ptr = _smem_ptr(em, s.b, "kk * 16 + (jt_lane & 7) + ((jt_lane >> 3) & 1) * 8",
                                "n0")
                em.line(f"jt::ldmatrix_x2_trans(b[ni], {ptr});")
            else:
                ptr = _smem_ptr(em, s.b, "n0 + (jt_lane & 7)",
                                "kk * 16 + ((jt_lane >> 3) & 1) * 8")
                em.line(f"jt::ldmatrix_x2(b[ni], {ptr});")


def _register_of(layout, index: list) -> str:
    """The register holding element `index` (C expressions) of a fragment in `layout`, in a
    thread that holds it."""
    parts = []
    for dim in range(len(index)):
        runs = [(bit, r, length) for r, bit, length in bit_runs(layout.reg_bits, dim)]
        if runs:
            parts.append(bits_expr(f"({index[dim]})", runs))
    return " | ".join(f"({p})" for p in parts) if parts else "0"


def _emit_fma_gemm(em, s: ir.Gemm) -> None:
    """Each thread computes the accumulator elements it holds, reading A and B from shared
    memory, or from a fragment operand's registers (which hold, for each of the thread's
    accumulator elements, its row of A or column of B)."""
    tid = em.tile_thread()
    layout = em.layouts[s.c.buffer]
    c = em.name(s.c.buffer)
    k = s.a.squeezed_shape()[0] if s.transpose_a else s.a.squeezed_shape()[1]
    in_registers = any(x.buffer.space is MemorySpace.FRAGMENT for x in (s.a, s.b))

    def element(region, idx):
        if region.buffer.space is MemorySpace.FRAGMENT:
            reg = _register_of(em.layouts[region.buffer], idx)
            return f"{em.name(region.buffer)}[{reg}]"
        return em.element(region.buffer, region_index(em, region, idx))

    if in_registers:
        # Unrolled, so every register index is a constant and the fragments stay in registers.
        em.line("#pragma unroll")
    with em.block(f"for (int r = 0; r < {layout.num_registers}; ++r)"):
        em.line(f"const int i = {index_expr(layout, 0, tid, 'r')};")
        em.line(f"const int j = {index_expr(layout, 1, tid, 'r')};")
        padding = inside(em, s.c.buffer, "r")
        if padding:  # registers past the tile's end read nothing
            em.line(f"if (!({' && '.join(padding)})) continue;")
        acc = s.c.dtype.c_name  # float, or int for 8-bit integer inputs
        em.line(f"{acc} acc = {const_text(0, s.c.dtype) if s.clear_accum else c + '[r]'};")
        if in_registers:
            em.line("#pragma unroll")
        with em.block(f"for (int kk = 0; kk < {k}; ++kk)"):
            a = element(s.a, ["kk", "i"] if s.transpose_a else ["i", "kk"])
            b = element(s.b, ["j", "kk"] if s.transpose_b else ["kk", "j"])
            em.line(f"acc += jt::cast<{acc}>({a}) * jt::cast<{acc}>({b});")
        em.line(f"{c}[r] = acc;")
