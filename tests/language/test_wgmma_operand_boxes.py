"""T.gemm on part of a shared tile (`q[:, :d // 2]`, `kv[s, :, d // 2:]`, `a[64:128, :]`) runs
on wgmma on sm_90a: the descriptor starts at the box, and each k-step's offset is taken from
the tile's origin, so a K range that crosses from one swizzle panel into the next reads the
right columns. Checked exactly (integer-valued float16 inputs) in interpret mode, compiled for
sm_80 and sm_90a, and on a GPU where one is present; a box wgmma cannot address still runs on
mma.sync, with a warning."""

import functools
import re
import warnings

import jax
import numpy as np
import pytest

import jtile
import jtile.language as T
from tests.language.kernel_runs import has_cuda_gpu, run_both_ways

S = jax.ShapeDtypeStruct


def k_parts(A, B, C, *, cuts, transpose_A, transpose_B):
    """C = sum over the K ranges [cuts[i], cuts[i + 1]) of A[:, range] @ B[range, :], each
    product a gemm on a box of the shared tiles."""
    M, N = C.shape
    with T.Kernel(1, threads=128):
        a = T.alloc_shared(A.shape, A.dtype)
        b = T.alloc_shared(B.shape, B.dtype)
        acc = T.alloc_fragment((M, N), "float32")
        T.copy(A, a)
        T.copy(B, b)
        T.clear(acc)
        for lo, hi in zip(cuts[:-1], cuts[1:]):
            a_part = a[lo:hi, :] if transpose_A else a[:, lo:hi]
            b_part = b[:, lo:hi] if transpose_B else b[lo:hi, :]
            T.gemm(a_part, b_part, acc, transpose_A=transpose_A, transpose_B=transpose_B)
        T.copy(acc, C)


def _ints(shape, seed):
    return np.random.default_rng(seed).integers(-3, 4, shape).astype(np.float16)


CASES = {
    # K-major A and B (B transposed: (N, K)), K split on panel boundaries (64 columns).
    "K-major halves": dict(m=64, n=64, k=256, cuts=(0, 128, 256), ta=False, tb=True),
    # The second range starts mid-panel and crosses into the next panel.
    "K-major across a panel": dict(m=64, n=64, k=128, cuts=(0, 48, 128), ta=False, tb=True),
    # MN-major A ((K, M)) and B ((K, N)): K ranges are row boxes.
    "MN-major rows": dict(m=64, n=128, k=128, cuts=(0, 64, 96, 128), ta=True, tb=False),
}


@pytest.mark.parametrize("name", CASES)
def test_gemms_on_boxes_of_a_tile_run_on_wgmma(name):
    c = CASES[name]
    a_shape = (c["k"], c["m"]) if c["ta"] else (c["m"], c["k"])
    b_shape = (c["n"], c["k"]) if c["tb"] else (c["k"], c["n"])
    a, b = _ints(a_shape, 1), _ints(b_shape, 2)
    kernel = functools.partial(k_parts, cuts=c["cuts"], transpose_A=c["ta"], transpose_B=c["tb"])
    out = S((c["m"], c["n"]), np.float32)
    (got,), _ = run_both_ways(kernel, (a, b), out)
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    want = (a64.T if c["ta"] else a64) @ (b64.T if c["tb"] else b64)
    np.testing.assert_array_equal(got, want)
    with warnings.catch_warnings():
        warnings.simplefilter("error", jtile.JtilePerformanceWarning)   # no mma.sync fallback
        source = jtile.pallas_like(kernel, out_shape=out).lower(a, b, target="sm_90a") \
            .cuda_source()
    assert "jt::mma_m16n8k16" not in source
    # One m64 wgmma per k-step of 16 over all the ranges: every range on wgmma.
    assert len(re.findall(r"jt_wgmma_m64n\w+\(&acc_frag", source)) == c["k"] // 16


def rows_of_a(lo, product=T.gemm):
    """C = A[lo:lo + 64] @ B: the gemm reads rows lo.. of A's (128, 64) tile."""
    def kernel(A, B, C):
        with T.Kernel(1, threads=128):
            a = T.alloc_shared((128, 64), "float16")
            b = T.alloc_shared((64, 64), "float16")
            acc = T.alloc_fragment((64, 64), "float32")
            T.copy(A, a)
            T.copy(B, b)
            T.clear(acc)
            product(a[lo:lo + 64, :], b, acc)
            T.copy(acc, C)
    return kernel


def test_a_box_of_rows_runs_on_wgmma():
    a, b = _ints((128, 64), 3), _ints((64, 64), 4)
    out = S((64, 64), np.float32)
    (got,), _ = run_both_ways(rows_of_a(64), (a, b), out)
    np.testing.assert_array_equal(got, a[64:].astype(np.float64) @ b.astype(np.float64))
    source = jtile.pallas_like(rows_of_a(64), out_shape=out).lower(a, b, target="sm_90a") \
        .cuda_source()
    assert "jt::mma_m16n8k16" not in source
    assert "jt_da + 512" in source   # row 64 of a 128-byte-span panel: 8192 bytes >> 4


def test_a_box_off_the_core_matrix_grid_runs_on_mma_sync_with_a_warning():
    call = jtile.pallas_like(rows_of_a(4), out_shape=S((64, 64), np.float32))
    with pytest.warns(jtile.JtilePerformanceWarning, match=r"T.gemm reads a\[64, 64\], a part "
                      r"of a .*that wgmma cannot address"):
        source = call.lower(S((128, 64), np.float16), S((64, 64), np.float16),
                            target="sm_90a").cuda_source()
    assert "jt::mma_m16n8k16" in source


def mla_scores(Q, KV, S_out, *, wgmma_only):
    """S = Q @ KV[1]^T over a head dim split in two halves, as TileLang's MLA decoding kernels
    write it: `T.wgmma_gemm(q[:, :d // 2], kv[stage, :, :d // 2], s, transpose_B=True)`."""
    M, D = Q.shape
    stages, N, _ = KV.shape
    product = T.wgmma_gemm if wgmma_only else T.gemm
    with T.Kernel(1, threads=128):
        q = T.alloc_shared((M, D), Q.dtype)
        kv = T.alloc_shared((stages, N, D), KV.dtype)
        s = T.alloc_fragment((M, N), "float32")
        T.copy(Q, q)
        for st in T.serial(stages):
            T.copy(KV[st, :, :], kv[st, :, :])
        T.clear(s)
        stage = 1
        product(q[:, :D // 2], kv[stage, :, :D // 2], s, transpose_B=True)
        product(q[:, D // 2:], kv[stage, :, D // 2:], s, transpose_B=True)
        T.wait_wgmma(0)
        T.copy(s, S_out)


def test_wgmma_gemm_on_halves_of_the_head_dim():
    q, kv = _ints((64, 256), 5), _ints((2, 64, 256), 6)
    out = S((64, 64), np.float32)
    want = q.astype(np.float64) @ kv[1].astype(np.float64).T
    for wgmma_only in (True, False):
        kernel = functools.partial(mla_scores, wgmma_only=wgmma_only)
        got = jtile.pallas_like(kernel, out_shape=out, interpret=True)(q, kv)
        np.testing.assert_array_equal(np.asarray(got), want)
        with warnings.catch_warnings():
            warnings.simplefilter("error", jtile.JtilePerformanceWarning)
            lowered = jtile.pallas_like(kernel, out_shape=out).lower(q, kv, target="sm_90a")
            source = lowered.cuda_source()
        assert "jt::mma_m16n8k16" not in source
        assert lowered.compile().cubin[:4] == b"\x7fELF"
        if has_cuda_gpu():
            np.testing.assert_array_equal(
                np.asarray(jtile.pallas_like(kernel, out_shape=out)(q, kv)), want)


def test_wgmma_gemm_is_refused_where_wgmma_cannot_run_it():
    kernel = functools.partial(mla_scores, wgmma_only=True)
    call = jtile.pallas_like(kernel, out_shape=S((64, 64), np.float32))
    args = (S((64, 256), np.float16), S((2, 64, 256), np.float16))
    with pytest.raises(jtile.JtileTargetError, match=r"T.wgmma_gemm needs wgmma, which sm_80 "
                       r"does not have"):
        call.lower(*args, target="sm_80").cuda_source()

    call = jtile.pallas_like(rows_of_a(4, T.wgmma_gemm), out_shape=S((64, 64), np.float32))
    with pytest.raises(jtile.JtileError, match=r"kernel .*T.wgmma_gemm cannot run on wgmma "
                       r"here.*Use T.gemm"), warnings.catch_warnings():
        warnings.simplefilter("ignore", jtile.JtilePerformanceWarning)
        call.lower(S((128, 64), np.float16), S((64, 64), np.float16), target="sm_90a") \
            .cuda_source()


def k_loop(A, B, C, *, transpose_A):
    """C = A @ B with one gemm per 64-wide K step of a loop: the boxes' starts move with the
    loop index (TileLang's `q[:, k * 64:(k + 1) * 64]`)."""
    M, N = C.shape
    with T.Kernel(1, threads=128):
        a = T.alloc_shared(A.shape, A.dtype)
        b = T.alloc_shared(B.shape, B.dtype)
        acc = T.alloc_fragment((M, N), "float32")
        T.copy(A, a)
        T.copy(B, b)
        T.clear(acc)
        for k in range(B.shape[0] // 64):
            a_part = a[k * 64:(k + 1) * 64, :] if transpose_A else a[:, k * 64:(k + 1) * 64]
            T.gemm(a_part, b[k * 64:(k + 1) * 64, :], acc, transpose_A=transpose_A)
        T.copy(acc, C)


@pytest.mark.parametrize("transpose_A", [False, True], ids=["K-major A", "MN-major A"])
def test_boxes_that_move_with_a_loop_index_run_on_wgmma(transpose_A):
    a = _ints((256, 64) if transpose_A else (64, 256), 7)
    b = _ints((256, 128), 8)
    kernel = functools.partial(k_loop, transpose_A=transpose_A)
    out = S((64, 128), np.float32)
    (got,), _ = run_both_ways(kernel, (a, b), out)
    a64 = a.astype(np.float64)
    np.testing.assert_array_equal(got, (a64.T if transpose_A else a64) @ b.astype(np.float64))
    with warnings.catch_warnings():
        warnings.simplefilter("error", jtile.JtilePerformanceWarning)   # no mma.sync fallback
        source = jtile.pallas_like(kernel, out_shape=out).lower(a, b, target="sm_90a") \
            .cuda_source()
    assert "jt::mma_m16n8k16" not in source
    assert "for (int k = 0; k < 4; ++k)" in source
