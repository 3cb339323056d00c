"""TileLang's wgmma issue options: `T.gemm(..., k_pack=, wg_wait=)` and `T.wait_wgmma(n)`.
jtile waits for each gemm itself before its accumulator is touched, so a kernel written with
TileLang's deferred waits (wg_wait=-1, then T.wait_wgmma(0)) gives the values it gives with the
defaults. Interpret mode, compiled for sm_80 and sm_90a, and run on a GPU where one is present."""

import functools

import jax
import numpy as np
import pytest

import jtile.language as T
from jtile.ir.types import DType
from jtile.trace.trace_kernel import trace
from tests.language.kernel_runs import run_both_ways


def two_products(A, B, D, C, *, k_pack, wg_wait, wait):
    """C = A @ B + A @ D through two gemms per 64-wide k step of a pipelined loop."""
    M, K = A.shape
    _, N = B.shape
    with T.Kernel(1, threads=128):
        a = T.alloc_shared((64, 64), A.dtype)
        b = T.alloc_shared((64, N), B.dtype)
        d = T.alloc_shared((64, N), D.dtype)
        acc = T.alloc_fragment((64, N), "float32")
        T.clear(acc)
        for k in T.Pipelined(K // 64, num_stages=2):
            T.copy(A[0:64, k * 64:(k + 1) * 64], a)
            T.copy(B[k * 64:(k + 1) * 64, :], b)
            T.copy(D[k * 64:(k + 1) * 64, :], d)
            T.gemm(a, b, acc, k_pack=k_pack, wg_wait=wg_wait)
            T.gemm(a, d, acc, k_pack=k_pack, wg_wait=wg_wait)
            if wait:
                T.wait_wgmma(0)
        T.copy(acc, C)


@pytest.mark.parametrize("k_pack, wg_wait, wait", [(1, 0, False), (2, -1, True), (1, 1, True)])
def test_deferred_wgmma_waits_give_the_same_values(k_pack, wg_wait, wait):
    rng = np.random.default_rng(5)
    a, b, d = (rng.integers(-3, 4, shape).astype(np.float16)
               for shape in ((64, 256), (256, 64), (256, 64)))
    kernel = functools.partial(two_products, k_pack=k_pack, wg_wait=wg_wait, wait=wait)
    (c,), _ = run_both_ways(kernel, (a, b, d), jax.ShapeDtypeStruct((64, 64), np.float32))
    want = a.astype(np.float64) @ b.astype(np.float64) + a.astype(np.float64) @ d
    np.testing.assert_array_equal(c, want)


def test_the_options_are_recorded_on_the_gemm():
    kernel = functools.partial(two_products, k_pack=2, wg_wait=-1, wait=True)
    k = trace(kernel, [((64, 128), DType.float16), ((128, 64), DType.float16),
                       ((128, 64), DType.float16)], [((64, 64), DType.float32)])
    from jtile.ir import nodes as ir
    from jtile.ir.walk import statements

    gemms = [s for s in statements(k.body) if isinstance(s, ir.Gemm)]
    assert [(g.k_pack, g.wg_wait) for g in gemms] == [(2, -1), (2, -1)]
