"""fold_accumulator_clears: `T.clear(acc)` right before `T.gemm(a, b, acc)` becomes the gemm's
clear_accum (on sm_90a the first wgmma starts from zero through a wrapper that only writes the
accumulator), and nothing else does: a clear whose fragment is read first, or a fill with
another value, keeps its fill. Values are checked against NumPy in
interpret mode, and compiled against interpret mode where a GPU is present."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jtile
import jtile.language as T
from jtile.ir import nodes as ir
from jtile.passes.fold_accumulator_clears import fold_accumulator_clears
from jtile.ir.walk import statements
from tests.language.kernel_runs import run_both_ways

S = jax.ShapeDtypeStruct


def repeated_products(A, B, *, read_between=False, steps=3):
    """C = sum over steps of (A @ B) * step: acc is cleared and refilled every step."""
    m, k = A.shape
    n = B.shape[1]
    C = T.empty((m, n), "float32")
    with T.Kernel(1, threads=128):
        a = T.alloc_shared((m, k), A.dtype)
        b = T.alloc_shared((k, n), B.dtype)
        acc = T.alloc_fragment((m, n), "float32")
        total = T.alloc_fragment((m, n), "float32")
        T.copy(A, a)
        T.copy(B, b)
        T.clear(total)
        for step in T.serial(steps):
            T.clear(acc)
            if read_between:
                for i, j in T.Parallel(m, n):
                    total[i, j] = total[i, j] + acc[i, j]   # reads the zeros
            T.gemm(a, b, acc)
            for i, j in T.Parallel(m, n):
                total[i, j] = total[i, j] + acc[i, j] * T.cast(step, "float32")
        T.copy(total, C)
    return C


def _lowered(kernel_fn, args, target="sm_90a"):
    return jtile.pallas_like(kernel_fn, interpret=False).lower(*args, target=target)


def _traced_gemms_after_fold(kernel_fn, args):
    from jtile.trace.trace_kernel import trace
    from jtile.ir.types import as_dtype
    kernel = trace(kernel_fn, [(a.shape, as_dtype(a.dtype)) for a in args], None)
    folded = fold_accumulator_clears(kernel, None)
    gemms = [s for s in statements(folded.body) if isinstance(s, ir.Gemm)]
    fills = [s for s in statements(folded.body) if isinstance(s, ir.Fill)]
    return gemms, fills


@pytest.mark.parametrize("read_between", [False, True])
def test_a_clear_right_before_the_gemm_folds_and_one_read_first_does_not(read_between):
    import functools
    args = (S((64, 32), jnp.float16), S((32, 64), jnp.float16))
    fn = functools.partial(repeated_products, read_between=read_between)
    gemms, fills = _traced_gemms_after_fold(fn, args)
    assert [g.clear_accum for g in gemms] == [not read_between]
    # `total`'s clear has no gemm after it; acc's goes when it folds.
    assert len(fills) == (1 if not read_between else 2)
    rng = np.random.default_rng(0)
    a = rng.standard_normal((64, 32)).astype(np.float16)
    b = rng.standard_normal((32, 64)).astype(np.float16)
    (c,), source = run_both_ways(fn, (a, b), None, rtol=1e-5, atol=1e-4)
    want = (a.astype(np.float64) @ b.astype(np.float64)) * (0 + 1 + 2)
    np.testing.assert_allclose(c, want, rtol=1e-3, atol=1e-2)


def test_on_sm_90a_the_first_wgmma_only_writes_the_accumulator():
    args = (S((64, 32), jnp.float16), S((32, 64), jnp.float16))
    source = _lowered(repeated_products, args).cuda_source()
    # The zero-start wrapper takes no accumulate flag and writes d without reading it.
    assert "jt_wgmma_m64n64k16_f16_ss_nt_zero(" in source
    wrapper = source.split("void jt_wgmma_m64n64k16_f16_ss_nt_zero(")[1].split("}\n")[0]
    assert '"=f"(d[0])' in wrapper and '"+f"' not in wrapper
    # The second k-step accumulates into it.
    assert "jt_wgmma_m64n64k16_f16_ss_nt(&" in source


def partial_clear(A, B):
    m, k = A.shape
    n = B.shape[1]
    C = T.empty((m, n), "float32")
    with T.Kernel(1, threads=128):
        a = T.alloc_shared((m, k), A.dtype)
        b = T.alloc_shared((k, n), B.dtype)
        acc = T.alloc_fragment((m, n), "float32")
        T.copy(A, a)
        T.copy(B, b)
        T.fill(acc, 1.0)          # not zero: the gemm adds to it
        T.gemm(a, b, acc)
        T.copy(acc, C)
    return C


def test_a_fill_with_another_value_stays():
    args = (S((64, 32), jnp.float16), S((32, 64), jnp.float16))
    gemms, fills = _traced_gemms_after_fold(partial_clear, args)
    assert [g.clear_accum for g in gemms] == [False] and len(fills) == 1
    rng = np.random.default_rng(1)
    a = rng.standard_normal((64, 32)).astype(np.float16)
    b = rng.standard_normal((32, 64)).astype(np.float16)
    (c,), _ = run_both_ways(partial_clear, (a, b), None, rtol=1e-5,
                            atol=1e-4)
    np.testing.assert_allclose(c, a.astype(np.float64) @ b.astype(np.float64) + 1.0,
                               rtol=1e-3, atol=1e-2)
