"""Fragments of 192 rows on three consumer warpgroups (384 threads), FlashAttention-3's tile for
head dim 64: each warpgroup's wgmma owns 64 rows, the layouts spread the padded 256 rows, the
rows of the warpgroup that does not exist being the padding. Checked on the layouts, on the
generated sm_90a CUDA (compiled by ptxas, no GPU needed) and in interpret mode; compiled
against float64 in tests/gpu/test_three_warpgroups_gpu.py."""

from __future__ import annotations

import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jtile
import jtile.language as T
from examples import flash_attention as fa
from examples import gemm
from jtile.passes.layout import WgmmaTiling, choose_wgmma_tiling, default_layout, is_exact

S = jax.ShapeDtypeStruct


def test_three_warpgroups_split_192_rows_and_hold_no_padding():
    tiling = choose_wgmma_tiling(192, 128, 3, full_row=True)
    assert (tiling.wgs_m, tiling.wgs_n, tiling.m_per_wg) == (3, 1, 64)
    acc = tiling.accumulator_layout(384)
    assert acc.shape == (256, 128) and acc.num_registers == 64
    assert is_exact(acc, (192, 128), 384)
    assert is_exact(acc.project((0,)), (192,), 384)
    assert is_exact(tiling.operand_a_layout(384, 128), (192, 128), 384)
    # The same layout on 512 threads: the fourth warpgroup would hold rows past 192.
    assert not is_exact(acc, (192, 128), 512)
    # Power-of-2 layouts on 384 threads: threads 256.. hold copies of threads 0..127's.
    assert is_exact(default_layout((128, 64), 384, 4), (128, 64), 384)
    # 128 rows on three warpgroups: two split them, the third holds copies.
    two = choose_wgmma_tiling(128, 128, 3, full_row=True)
    assert (two.wgs_m, two.wgs_n) == (2, 1)
    assert is_exact(two.accumulator_layout(384), (128, 128), 384)
    assert is_exact(WgmmaTiling(384, 64, 3, 1).accumulator_layout(384), (384, 64), 384)
    # Three warpgroups along M and two along N (768 threads): the layout's bits put the
    # fourth warpgroup's rows in threads that exist, where the code numbers warpgroups
    # M-fastest by three; refused rather than laid out wrong.
    assert not is_exact(WgmmaTiling(192, 256, 3, 2).accumulator_layout(768), (192, 256), 768)


def _lowered_attention(d, causal, block_n=128, stages=2):
    kernel = functools.partial(fa.flash_fwd_kernel, block_m=192, block_n=block_n,
                               stages=stages, threads=384, causal=causal)
    x = S((2, 328, 3, d), jnp.float16)
    return jtile.pallas_like(kernel, name="fa192").lower(x, x, x, target="sm_90a")


@pytest.mark.parametrize("d, causal, block_n", [(64, False, 128), (64, True, 128),
                                                (128, False, 64)])
def test_attention_on_192_rows_compiles_to_three_consumer_warpgroups(d, causal, block_n):
    lowered = _lowered_attention(d, causal, block_n)
    source = lowered.cuda_source()
    assert "jt_wg % 3" in source  # each warpgroup's 64 rows of Q
    assert "jt::setmaxnreg_inc<160>();" in source  # (65536 - 128 * 24) / 384, rounded down to 8
    with warnings.catch_warnings():
        warnings.simplefilter("error", jtile.JtilePerformanceWarning)  # no serialized wgmma
        compiled = lowered.compile()
    assert compiled.block == (512, 1, 1)  # three consumer warpgroups and the producer
    assert compiled.cubin[:4] == b"\x7fELF"


def test_gemm_on_192_rows_compiles():
    kernel = functools.partial(gemm.matmul_kernel, block_m=192, block_n=128, block_k=64,
                               stages=3, threads=384, trans_a=False, trans_b=False)
    a = S((400, 256), jnp.bfloat16)
    b = S((256, 272), jnp.bfloat16)
    lowered = jtile.pallas_like(kernel, out_shape=S((400, 272), jnp.bfloat16)).lower(
        a, b, target="sm_90a")
    assert "jt_wg % 3" in lowered.cuda_source()
    assert lowered.compile().block == (512, 1, 1)


@pytest.mark.parametrize("causal", [False, True])
def test_attention_on_192_rows_matches_the_reference_in_interpret_mode(causal):
    keys = jax.random.split(jax.random.key(192), 3)
    q, k, v = (jax.random.normal(key, (1, 328, 2, 64), jnp.float32).astype(jnp.float16)
               for key in keys)
    out = fa.flash_attention(q, k, v, causal=causal, block_m=192, block_n=128, threads=384,
                             interpret=True)
    ref = fa.reference(q, k, v, causal)
    np.testing.assert_allclose(np.asarray(out, np.float32), np.asarray(ref), rtol=4e-3,
                               atol=4e-3)


def test_loops_over_192_rows_need_no_guard_but_a_partial_loop_keeps_its_own():
    # The threads that exist run only rows < 192, so the guard pad_parallel_loops puts in a
    # T.Parallel(192, ...) is dropped; a T.Parallel(48) over a 64-element fragment keeps it.
    assert "< 192" not in _lowered_attention(64, False).cuda_source()

    def partial(X, O):
        with T.Kernel(1, threads=128):
            x = T.alloc_fragment((64,), "float32")
            T.copy(X, x)
            for i in T.Parallel(48):
                x[i] = x[i] * 2
            T.copy(x, O)

    spec = S((64,), jnp.float32)
    source = jtile.pallas_like(partial, out_shape=spec).lower(spec, target="sm_90a").cuda_source()
    assert "< 48)" in source


def column_sum_kernel(A, B, O):
    """O = the column sums of A @ B: a reduction across the three warpgroups' rows."""
    with T.Kernel(1, threads=384):
        a = T.alloc_shared((192, 64), "float16")
        b = T.alloc_shared((64, 128), "float16")
        c = T.alloc_fragment((192, 128), "float32")
        sums = T.alloc_fragment((128,), "float32")
        T.copy(A, a)
        T.copy(B, b)
        T.gemm(a, b, c, clear_accum=True)
        T.reduce_sum(c, sums, dim=0)
        T.copy(sums, O)


def column_sum(a, b, interpret):
    return jtile.pallas_like(column_sum_kernel, out_shape=S((128,), jnp.float32),
                             interpret=interpret)(a, b)


def test_a_column_sum_across_three_warpgroups_reads_no_missing_warp():
    # The partial sums go through shared memory by warp; warps 12..15 would be the fourth
    # warpgroup's, which does not exist.
    lowered = jtile.pallas_like(column_sum_kernel, out_shape=S((128,), jnp.float32)).lower(
        S((192, 64), jnp.float16), S((64, 128), jnp.float16), target="sm_90a")
    assert "if (peer < 384) total = total + " in lowered.cuda_source()
    assert lowered.compile().cubin[:4] == b"\x7fELF"
    a, b = (jax.random.normal(key, shape, jnp.float32).astype(jnp.float16) for key, shape in
            zip(jax.random.split(jax.random.key(3)), [(192, 64), (64, 128)]))
    ref = (np.asarray(a, np.float64) @ np.asarray(b, np.float64)).sum(0)
    np.testing.assert_allclose(np.asarray(column_sum(a, b, True)), ref, rtol=1e-3, atol=1e-2)


def test_a_192_row_fragment_no_gemm_lays_out_runs_padded():
    """Element-wise, 192 rows on 384 threads lay out as 256 rows: the registers past row 191
    are skipped by the copies (tests/language/test_padded_fragments.py)."""
    from tests.language.kernel_runs import run_both_ways

    def rows(X, O):
        with T.Kernel(1, threads=384):
            x = T.alloc_fragment((192, 64), "float32")
            T.copy(X, x)
            for i, j in T.Parallel(192, 64):
                x[i, j] = x[i, j] + 1
            T.copy(x, O)

    x = np.random.default_rng(7).standard_normal((192, 64)).astype(np.float32)
    (out,), _ = run_both_ways(rows, (x,), S((192, 64), jnp.float32), rtol=1e-6)
    np.testing.assert_allclose(out, x + 1, rtol=1e-6)


def test_192_rows_on_four_warpgroups():
    """512 threads: 16 warps of mma.sync (wgmma's four 32-column B shares would not start
    on B's 128-byte panels), the warps past row 191 holding only padding."""
    from tests.language.kernel_runs import run_both_ways

    def four(A, B, C):
        with T.Kernel(1, threads=512):
            a = T.alloc_shared((192, 64), "float16")
            b = T.alloc_shared((64, 128), "float16")
            c = T.alloc_fragment((192, 128), "float32")
            T.copy(A, a)
            T.copy(B, b)
            T.gemm(a, b, c, clear_accum=True)
            T.copy(c, C)

    rng = np.random.default_rng(8)
    a = rng.standard_normal((192, 64)).astype(np.float16)
    b = rng.standard_normal((64, 128)).astype(np.float16)
    (out,), _ = run_both_ways(four, (a, b), S((192, 128), jnp.float32), rtol=2e-3, atol=2e-3)
    np.testing.assert_allclose(out, a.astype(np.float64) @ b.astype(np.float64), rtol=2e-3,
                               atol=2e-3)

