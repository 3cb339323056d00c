"""T.gemm on tensor cores (ldmatrix + mma.sync.m16n8k16, sm_80+) or in float32 FMA.

Tensor-core path: the warp grid of the accumulator's tiling splits C; for each 16-wide step of
K every warp loads its A rows (ldmatrix.x4, .trans when A is stored K-major) and B columns
(ldmatrix.x4.trans for a (K, N) tile, plain for an (N, K) one), then issues mt x nt mma.sync.
A may also come from a fragment already in the mma A-operand layout (attention's P @ V).
"""

from __future__ import annotations

from jtile.codegen.parallel import index_expr
from jtile.codegen.tile_copy import region_index
from jtile.errors import JtileTraceError
from jtile.ir import nodes as ir
from jtile.ir.types import DType, MemorySpace

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
    tid = em.name(em.kernel.thread_var)
    m, n = s.c.squeezed_shape()
    k = s.a.squeezed_shape()[0] if s.transpose_a else s.a.squeezed_shape()[1]
    c = em.name(s.c.buffer)
    mt, nt, kt = t.mt, t.nt, k // 16
    if k % 16:
        raise JtileTraceError(f"{em.kernel.name} ({em.kernel.loc}): {s.loc}: T.gemm K = {k} must "
                              "be a multiple of 16 on tensor cores")
    em.line(f"const int jt_lane = {tid} & 31;")
    em.line(f"const int jt_warp_m = ({tid} >> 5) % {t.wm}; (void)jt_warp_m;")
    em.line(f"const int jt_warp_n = ({tid} >> 5) / {t.wm};")
    if s.clear_accum:
        em.line("#pragma unroll")
        em.line(f"for (int r = 0; r < {mt * nt * 4}; ++r) {c}[r] = 0.0f;")
    a_frag = s.a.buffer.space is MemorySpace.FRAGMENT
    mma = _MMA[s.a.dtype]
    em.line("#pragma unroll")
    with em.block(f"for (int kk = 0; kk < {kt}; ++kk)"):
        em.line(f"unsigned a[{mt}][4];")
        em.line(f"unsigned b[{nt}][2];")
        em.line("#pragma unroll")
        with em.block(f"for (int mi = 0; mi < {mt}; ++mi)"):
            if a_frag:
                af = em.name(s.a.buffer)
                em.line(f"const int base = 8 * (kk + {kt} * mi);")
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
        step = 2 if nt >= 2 else 1
        em.line("#pragma unroll")
        with em.block(f"for (int ni = 0; ni < {nt}; ni += {step})"):
            em.line(f"const int n0 = jt_warp_n * {nt * 8} + ni * 8;")
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
        em.line("#pragma unroll")
        with em.block(f"for (int mi = 0; mi < {mt}; ++mi)"):
            em.line("#pragma unroll")
            with em.block(f"for (int ni = 0; ni < {nt}; ++ni)"):
                em.line(f"{mma}(*reinterpret_cast<float(*)[4]>(&{c}[(mi * {nt} + ni) * 4]), "
                        "a[mi], b[ni]);")


def _emit_fma_gemm(em, s: ir.Gemm) -> None:
    """Each thread computes the accumulator elements it holds, reading A and B from shared."""
    if s.a.buffer.space is MemorySpace.FRAGMENT:
        raise JtileTraceError(f"{em.kernel.name} ({em.kernel.loc}): {s.loc}: T.gemm with a "
                              "fragment A needs 16-bit inputs (tensor cores); put A in shared "
                              "memory")
    tid = em.name(em.kernel.thread_var)
    layout = em.layouts[s.c.buffer]
    c = em.name(s.c.buffer)
    k = s.a.squeezed_shape()[0] if s.transpose_a else s.a.squeezed_shape()[1]
    with em.block(f"for (int r = 0; r < {layout.num_registers}; ++r)"):
        em.line(f"const int i = {index_expr(layout, 0, tid, 'r')};")
        em.line(f"const int j = {index_expr(layout, 1, tid, 'r')};")
        em.line(f"float acc = {'0.0f' if s.clear_accum else c + '[r]'};")
        with em.block(f"for (int kk = 0; kk < {k}; ++kk)"):
            a_idx = region_index(em, s.a, ["kk", "i"] if s.transpose_a else ["i", "kk"])
            b_idx = region_index(em, s.b, ["j", "kk"] if s.transpose_b else ["kk", "j"])
            a = em.element(s.a.buffer, a_idx)
            b = em.element(s.b.buffer, b_idx)
            em.line(f"acc += jt::cast<float>({a}) * jt::cast<float>({b});")
        em.line(f"{c}[r] = acc;")
