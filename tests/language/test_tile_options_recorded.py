"""Tracing records TileLang's tile-op options on the IR nodes and the kernel."""

import jtile.language as T
from jtile.ir import nodes as ir
from jtile.ir.printer import kernel_text
from jtile.ir.types import DType
from jtile.trace.trace_kernel import trace


def test_gemm_copy_kernel_and_view_options_are_recorded():
    def kernel(A, B, C):
        with T.Kernel(2, 2, threads=128, cluster_dims=2) as (bx, by):
            T.use_swizzle(3, order="column")
            a = T.alloc_shared((64, 32), "float16")
            b = T.alloc_shared((32, 64), "float16")
            acc = T.alloc_fragment((64, 64), "float32")
            flat = T.view(C, (2 * 128 * 64,))
            T.copy(A[by * 64, 0], a, disable_tma=True)
            T.copy(B[0, bx * 64], b, eviction_policy="evict_normal")
            T.gemm(a, b, acc, policy=T.GemmWarpPolicy.FullCol, clear_accum=True)
            T.copy(acc, C[by * 64, bx * 64])
            flat[0] = 1.0

    k = trace(kernel, [((128, 32), DType.float16), ((32, 128), DType.float16)],
              [((128, 128), DType.float32)])
    swizzle, copy_a, copy_b, gemm = k.body[0], k.body[1], k.body[2], k.body[3]
    assert isinstance(swizzle, ir.UseSwizzle)
    assert (swizzle.panel_size, swizzle.order) == (3, "column")
    assert copy_a.disable_tma and not copy_b.disable_tma
    assert copy_b.eviction_policy == "evict_normal"
    assert (gemm.policy, gemm.k_pack, gemm.wg_wait) == ("full_col", 1, 0)
    assert k.attrs["cluster_dims"] == (2, 1, 1)
    (view,) = k.attrs["views"]
    assert view.view_of is k.outputs[0] and view.shape == (2 * 128 * 64,)
    text = kernel_text(k)
    for piece in ("cluster=[2, 1, 1]", "use_swizzle panel=3 order=column", "disable_tma",
                  "policy=full_col", f"view {view.name}: float32[16384] = C"):
        assert piece in text, piece
