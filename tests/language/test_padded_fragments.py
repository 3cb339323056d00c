"""Fragments whose dimensions are not powers of 2 compile: a (3,) mask, a (5, 7) tile and its
row maxima, a (48, 96) tile, GEMM accumulators of 96, 80, 192 or 48 columns or 96 or 192 rows
(mma.sync, and wgmma with TMA on sm_90a), attention with head dims 80, 96 and 160.

Their layouts spread the padded (power-of-2) extents; the registers past the tile's end are
skipped by every copy, reduction and tensor-core tile. Each kernel runs in interpret mode
against a float64 NumPy reference, compiles for sm_80 and sm_90a, and on a GPU runs compiled
against interpret mode (`run_both_ways`)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jtile
import jtile.language as T
from tests.language.kernel_runs import has_cuda_gpu, run_both_ways
from tests.tilelang import flash_attention_fwd


def masked_scale(X, Mask, O):
    """A (3,) int8 mask held in registers (seer attention's block mask), read per row."""
    rows, cols = X.shape
    with T.Kernel(1, threads=128):
        mask = T.alloc_fragment((rows,), "int8")
        x = T.alloc_fragment((rows, cols), "float32")
        T.copy(Mask, mask)
        T.copy(X, x)
        for i, j in T.Parallel(rows, cols):
            O[i, j] = T.if_then_else(mask[i] != 0, x[i, j] * 2.0, -x[i, j])


def row_stats(X, O, Max, Sum):
    """A (5, 7) tile per block: shifted, stored back, and reduced along its rows."""
    rows = 5
    with T.Kernel(T.ceildiv(X.shape[0], rows), threads=128) as bx:
        x = T.alloc_fragment((rows, 7), "float32")
        m = T.alloc_fragment((rows,), "float32")
        s = T.alloc_fragment((rows,), "float32")
        T.copy(X[bx * rows, 0], x)
        for i, j in T.Parallel(rows, 7):
            x[i, j] = x[i, j] - 0.5
        T.reduce_max(x, m, dim=1)
        T.reduce_sum(x, s, dim=1)
        T.copy(x, O[bx * rows, 0])
        T.copy(m, Max[bx * rows])
        T.copy(s, Sum[bx * rows])


def tile_through_shared(X, O):
    """A (48, 96) tile: filled, added to the input staged in shared memory, stored."""
    with T.Kernel(1, threads=256):
        x = T.alloc_fragment((48, 96), "float32")
        staged = T.alloc_shared((48, 96), "float32")
        T.fill(x, 1.5)
        T.copy(X, staged)
        for i, j in T.Parallel(48, 96):
            x[i, j] += staged[i, j]
        T.copy(x, O)


def _normal(seed, shape):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def test_a_three_element_mask():
    x = _normal(1, (3, 40))
    mask = np.array([1, 0, 1], np.int8)
    (o,), _ = run_both_ways(masked_scale, (x, mask), jax.ShapeDtypeStruct((3, 40), jnp.float32))
    np.testing.assert_array_equal(o, np.where(mask[:, None] != 0, x * 2.0, -x))


def test_row_reductions_of_a_five_by_seven_tile_skip_the_padding():
    x = _normal(2, (15, 7))
    outs = (jax.ShapeDtypeStruct((15, 7), jnp.float32), jax.ShapeDtypeStruct((15,), jnp.float32),
            jax.ShapeDtypeStruct((15,), jnp.float32))
    (o, m, s), cuda = run_both_ways(row_stats, (x,), outs, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(o, x - 0.5, rtol=1e-6)
    # Padding columns would count as 0 in the max of a row whose values are all negative.
    np.testing.assert_allclose(m, (x - 0.5).max(axis=1), rtol=1e-6)
    np.testing.assert_allclose(s, (x - 0.5).sum(axis=1), rtol=1e-5, atol=1e-5)
    assert "-jt::infinity<float>()" in cuda  # the padded columns reduce as the identity


def test_a_48_by_96_tile():
    x = _normal(3, (48, 96))
    (o,), _ = run_both_ways(tile_through_shared, (x,), jax.ShapeDtypeStruct((48, 96), jnp.float32),
                            rtol=1e-6)
    np.testing.assert_allclose(o, x + 1.5, rtol=1e-6)


def gemm(A, B, *, block_m, block_n, block_k, threads, stages=2):
    M, K = A.shape
    N = B.shape[1]
    C = T.empty((M, N), "float32")
    with T.Kernel(T.ceildiv(N, block_n), T.ceildiv(M, block_m), threads=threads) as (bx, by):
        a = T.alloc_shared((block_m, block_k), A.dtype)
        b = T.alloc_shared((block_k, block_n), B.dtype)
        c = T.alloc_fragment((block_m, block_n), "float32")
        T.clear(c)
        for k in T.Pipelined(T.ceildiv(K, block_k), num_stages=stages):
            T.copy(A[by * block_m, k * block_k], a)
            T.copy(B[k * block_k, bx * block_n], b)
            T.gemm(a, b, c)
        T.copy(c, C[by * block_m, bx * block_n])
    return C


GEMM_TILES = [
    dict(block_m=128, block_n=96, block_k=64, threads=128),
    dict(block_m=64, block_n=80, block_k=32, threads=128),
    dict(block_m=128, block_n=192, block_k=64, threads=256),
    dict(block_m=192, block_n=128, block_k=64, threads=128),
    dict(block_m=96, block_n=128, block_k=32, threads=128),
    dict(block_m=128, block_n=48, block_k=64, threads=128, stages=3),
]


@pytest.mark.parametrize("tile", GEMM_TILES, ids=lambda t: f"{t['block_m']}x{t['block_n']}")
def test_gemm_accumulators_that_are_not_powers_of_2(tile):
    """Odd sizes too: the last tiles of M and N are partial."""
    a = _normal(4, (200, 160)).astype(np.float16)
    b = _normal(5, (160, 300)).astype(np.float16)
    kernel = functools.partial(gemm, **tile)
    (c,), _ = run_both_ways(kernel, (a, b), None, rtol=2e-3, atol=2e-3)
    want = a.astype(np.float64) @ b.astype(np.float64)
    np.testing.assert_allclose(c, want, rtol=2e-3, atol=2e-3)


def test_wgmma_takes_a_96_column_accumulator():
    """On sm_90a the 96-column tile runs as one m64n96 wgmma per row block, its B tile in
    three 64-byte swizzled panels loaded by TMA."""
    a = jax.ShapeDtypeStruct((256, 128), jnp.float16)
    b = jax.ShapeDtypeStruct((128, 384), jnp.float16)
    kernel = functools.partial(gemm, **GEMM_TILES[0])
    cuda = jtile.pallas_like(kernel).lower(a, b, target="sm_90a").cuda_source()
    assert "m64n96k16" in cuda
    assert "cp.async.bulk.tensor" in cuda or "jt::tma_load" in cuda


ATTENTION = [(96, 64, 64, 128), (80, 64, 64, 128), (96, 128, 48, 256), (160, 64, 64, 128)]


@pytest.mark.parametrize("dim,block_m,block_n,threads", ATTENTION)
@pytest.mark.parametrize("causal", [False, True])
def test_attention_head_dims_that_are_not_powers_of_2(dim, block_m, block_n, threads, causal):
    keys = jax.random.split(jax.random.key(dim + block_n), 3)
    q, k, v = [jax.random.normal(key, (1, 100, 2, dim), jnp.float32).astype(jnp.float16)
               for key in keys]
    kernel = functools.partial(flash_attention_fwd.flashattn, is_causal=causal, block_M=block_m,
                               block_N=block_n, threads=threads)
    want = flash_attention_fwd.reference(q, k, v, causal)
    out = jtile.pallas_like(kernel, interpret=True)(q, k, v)
    np.testing.assert_allclose(np.asarray(out, np.float32), want, rtol=1e-2, atol=1e-2)
    compiled = jtile.pallas_like(kernel, interpret=False)
    for target in ("sm_80", "sm_90a"):
        assert compiled.lower(q, k, v, target=target).compile().cubin[:4] == b"\x7fELF"
    if has_cuda_gpu():
        got = jax.jit(compiled)(q, k, v)
        np.testing.assert_allclose(np.asarray(got, np.float32), want, rtol=1e-2, atol=1e-2)


def floating_mask(X, Mask, O):
    """A (3,) fragment named element by element outside T.Parallel: every thread holds all of
    it, its element 2 in the register of padded index 2."""
    with T.Kernel(1, threads=64):
        mask = T.alloc_fragment((3,), "float32")
        T.copy(Mask, mask)
        if mask[2] > 0.0:
            mask[0] = mask[0] + mask[2]
        for i in T.Parallel(64):
            O[i] = X[i] * mask[0] + mask[1]


def test_a_three_element_fragment_every_thread_holds():
    x = _normal(6, (64,))
    for m in ([1.0, 2.0, 3.0], [1.0, 2.0, -3.0]):
        mask = np.array(m, np.float32)
        (o,), _ = run_both_ways(floating_mask, (x, mask), jax.ShapeDtypeStruct((64,), jnp.float32),
                                rtol=1e-6)
        scale = mask[0] + (mask[2] if mask[2] > 0 else 0.0)
        np.testing.assert_allclose(o, x * scale + mask[1], rtol=1e-6)
