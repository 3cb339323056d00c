"""`T.gemm` on mixed 8-bit inputs (int8 A with uint8 B and the reverse; float8_e4m3 with
float8_e5m2), which TileLang and wgmma accept: wgmma `.s32.s8.u8` / `.f32.e4m3.e5m2` on sm_90a
for K-major shared tiles, exact (integers) or within the fp8 tensor cores' accumulation
bound (float8); and element-wise float8 arithmetic, computed in float32 and rounded where
stored. Interpret mode, compiled for sm_80 and sm_90a and, on a GPU,
equal to interpret mode."""

import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jtile
import jtile.language as T
from jtile.errors import JtilePerformanceWarning
from tests.language.kernel_runs import TARGETS, has_cuda_gpu, run_both_ways
from tests.language.test_int8_gemm import int_gemm
from tests.tilelang.test_misc import _fp8_accumulation_error

TILES = dict(block_m=128, block_n=128, block_k=64, threads=128, stages=3)


def _integers(dtype, shape, rng):
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max + 1, shape).astype(dtype)


@pytest.mark.parametrize("a_dtype, b_dtype", [(np.int8, np.uint8), (np.uint8, np.int8)])
def test_int8_with_uint8_runs_on_wgmma_exactly(a_dtype, b_dtype):
    m, n, k = 256, 256, 192
    rng = np.random.default_rng(17)
    a, b = _integers(a_dtype, (m, k), rng), _integers(b_dtype, (n, k), rng)
    kernel = functools.partial(int_gemm, b_rows_are_n=True, **TILES)
    out_shape = jax.ShapeDtypeStruct((m, n), jnp.int32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", JtilePerformanceWarning)  # sm_80: CUDA cores
        (out,), _ = run_both_ways(kernel, (a, b), out_shape)
    np.testing.assert_array_equal(out, a.astype(np.int64) @ b.T.astype(np.int64))
    source = jtile.pallas_like(kernel, out_shape=out_shape).lower(a, b, target="sm_90a") \
        .cuda_source()
    names = {np.int8: "s8", np.uint8: "u8"}
    assert f".s32.{names[a_dtype]}.{names[b_dtype]} " in source


def float8_gemm(A, B, C):
    """C (M, N) float32 = A (M, K) @ B^T, B given as (N, K): K-major tiles for wgmma."""
    M, K = A.shape
    N = B.shape[0]
    with T.Kernel(T.ceildiv(N, 64), T.ceildiv(M, 64), threads=128) as (bx, by):
        a = T.alloc_shared((64, 64), A.dtype)
        b = T.alloc_shared((64, 64), B.dtype)
        c = T.alloc_fragment((64, 64), "float32")
        T.clear(c)
        for ko in T.Pipelined(T.ceildiv(K, 64), num_stages=2):
            T.copy(A[by * 64, ko * 64], a)
            T.copy(B[bx * 64, ko * 64], b)
            T.gemm(a, b, c, transpose_B=True)
        T.copy(c, C[by * 64, bx * 64])


def test_float8_e4m3_with_e5m2_runs_on_wgmma():
    m, n, k = 128, 128, 256
    rng = np.random.default_rng(23)
    a = jnp.asarray(rng.standard_normal((m, k)), jnp.float8_e4m3fn)
    b = jnp.asarray(rng.standard_normal((n, k)), jnp.float8_e5m2)
    out_shape = jax.ShapeDtypeStruct((m, n), jnp.float32)
    want = np.asarray(a, np.float64) @ np.asarray(b, np.float64).T
    interpreted = jtile.pallas_like(float8_gemm, out_shape=out_shape, interpret=True)(a, b)
    np.testing.assert_allclose(np.asarray(interpreted), want, rtol=1e-5, atol=1e-4)
    compiled = jtile.pallas_like(float8_gemm, out_shape=out_shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", JtilePerformanceWarning)  # sm_80: CUDA cores
        for target in TARGETS:
            assert compiled.lower(a, b, target=target).compile().cubin[:4] == b"\x7fELF"
    assert ".f32.e4m3.e5m2 " in compiled.lower(a, b, target="sm_90a").cuda_source()
    if has_cuda_gpu():
        # Hopper's fp8 wgmma keeps fewer bits of its running sum than float32.
        error = np.abs(np.asarray(compiled(a, b), np.float64) - want)
        assert (error <= _fp8_accumulation_error(a, b)).all()


def float8_scale(A, S, C):
    """Element-wise arithmetic on float8 values (CUDA has no float8 operators): computed in
    float32, rounded to float8 once, where it is stored."""
    M, N = A.shape
    with T.Kernel(1, threads=128):
        a = T.alloc_fragment((M, N), A.dtype)
        T.copy(A, a)
        for i, j in T.Parallel(M, N):
            a[i, j] = T.max(-(a[i, j] * S[0] + a[i, j]), a[i, j] - 1.0)
        T.copy(a, C)


def test_float8_arithmetic_computes_in_float32_and_rounds_where_stored():
    rng = np.random.default_rng(31)
    a = jnp.asarray(rng.standard_normal((32, 64)), jnp.float8_e4m3fn)
    s = jnp.asarray([1.5], jnp.float8_e4m3fn)
    (out,), cuda = run_both_ways(float8_scale, (a, s),
                                 jax.ShapeDtypeStruct((32, 64), jnp.float8_e4m3fn))
    x, scale = np.asarray(a, np.float32), np.float32(np.asarray(s, np.float32)[0])
    want = jnp.asarray(np.maximum(-(x * scale + x), x - 1.0), jnp.float8_e4m3fn)
    np.testing.assert_array_equal(np.asarray(out, np.float32), np.asarray(want, np.float32))
    # One rounding: a product rounded to float8 before the add would differ somewhere here.
    twice = jnp.asarray(x * scale, jnp.float8_e4m3fn).astype(np.float32)
    assert (np.asarray(jnp.asarray(np.maximum(-(twice + x), x - 1.0), jnp.float8_e4m3fn),
                       np.float32) != np.asarray(want, np.float32)).any()
    assert "jt::cast<jt::fp8_e4m3>(" in cuda
