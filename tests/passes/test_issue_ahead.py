"""Copies whose global addresses read kernel inputs (a grouped GEMM's tile tables) are still
issued ahead: TMA + producer warpgroup on sm_90a, cp.async on sm_80, and the same values as
interpret mode. Addresses that read what the kernel computes or writes stay in order."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jtile
import jtile.language as T
from jtile.errors import JtilePerformanceWarning

S = jax.ShapeDtypeStruct
BM, BN, BK = 64, 128, 64


def grouped_kernel(A, B, TileGroup, TileRow, C):
    """C[rows of tile t] = A[rows of t] @ B[group of t], tiles listed in two int32 tables."""
    m, k = A.shape
    n = B.shape[2]
    with T.Kernel(TileGroup.shape[0], T.ceildiv(n, BN), threads=128) as (bt, bn):
        A_s = T.alloc_shared((BM, BK), A.dtype)
        B_s = T.alloc_shared((BK, BN), B.dtype)
        acc = T.alloc_fragment((BM, BN), "float32")
        T.clear(acc)
        for kk in T.Pipelined(T.ceildiv(k, BK), num_stages=3):
            T.copy(A[TileRow[bt], kk * BK], A_s)
            T.copy(B[TileGroup[bt], kk * BK, bn * BN], B_s)
            T.gemm(A_s, B_s, acc)
        T.copy(acc, C[TileRow[bt], bn * BN])


def local_address_kernel(A, B, TileRow, C):
    """The row comes through a local variable the body computes: not issuable ahead."""
    m, k = A.shape
    n = B.shape[1]
    with T.Kernel(TileRow.shape[0], T.ceildiv(n, BN), threads=128) as (bt, bn):
        row = T.alloc_var("int32")
        row = TileRow[bt] + 0
        A_s = T.alloc_shared((BM, BK), A.dtype)
        B_s = T.alloc_shared((BK, BN), B.dtype)
        acc = T.alloc_fragment((BM, BN), "float32")
        T.clear(acc)
        for kk in T.Pipelined(T.ceildiv(k, BK), num_stages=3):
            T.copy(A[row, kk * BK], A_s)
            T.copy(B[kk * BK, bn * BN], B_s)
            T.gemm(A_s, B_s, acc)
        T.copy(acc, C[row, bn * BN])


def _grouped_call(m=256, k=192, n=256, groups=3, dtype=jnp.float16, interpret=False):
    tiles = m // BM
    specs = (S((m, k), dtype), S((groups, k, n), dtype), S((tiles,), jnp.int32),
             S((tiles,), jnp.int32))
    call = jtile.pallas_like(grouped_kernel, out_shape=S((m, n), dtype), interpret=interpret)
    return call, specs


def test_tile_table_addresses_take_the_tma_ring_and_producer_on_sm90a():
    call, specs = _grouped_call()
    with warnings.catch_warnings():
        warnings.simplefilter("error", JtilePerformanceWarning)
        lowered = call.lower(*specs, target="sm_90a")
        source = lowered.cuda_source()
    assert "jt::tma_load_3d" in source and "jt::tma_load_2d" in source
    assert "if (tx >= 128)" in source and "wgmma.mma_async" in source  # a producer warpgroup
    assert lowered.compile().cubin


def test_tile_table_addresses_take_cp_async_on_sm80():
    call, specs = _grouped_call()
    with warnings.catch_warnings():
        warnings.simplefilter("error", JtilePerformanceWarning)
        source = call.lower(*specs, target="sm_80").cuda_source()
    assert "cp_async" in source


def test_an_address_from_a_local_variable_is_not_issued_ahead():
    specs = (S((256, 192), jnp.float16), S((192, 256), jnp.float16), S((4,), jnp.int32))
    call = jtile.pallas_like(local_address_kernel, out_shape=S((256, 256), jnp.float16))
    source = call.lower(*specs, target="sm_90a").cuda_source()
    # B still streams through TMA; A is copied in order by the consumers, from row_var.
    assert source.count("jt::tma_load_2d(") == 2   # B's two 64-column panels
    assert "&A[((row_var" in source


@pytest.mark.parametrize("interpret", [True, pytest.param(False, marks=pytest.mark.gpu)])
def test_tile_table_kernel_matches_numpy(interpret):
    rng = np.random.default_rng(7)
    m, k, n, groups = 256, 192, 256, 3
    a = rng.standard_normal((m, k)).astype(np.float16)
    b = rng.standard_normal((groups, k, n)).astype(np.float16)
    tile_group = np.array([2, 0, 0, 1], np.int32)
    tile_row = np.array([192, 0, 128, 64], np.int32)   # tiles in any order
    call, _ = _grouped_call(m, k, n, groups, interpret=interpret)
    got = np.asarray(call(a, b, tile_group, tile_row), np.float64)
    want = np.empty((m, n))
    for g, r in zip(tile_group, tile_row):
        want[r:r + BM] = a[r:r + BM].astype(np.float64) @ b[g].astype(np.float64)
    np.testing.assert_allclose(got, want, rtol=5e-3, atol=5e-3 * np.sqrt(k))
