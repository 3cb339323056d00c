"""`T.gemm` on 8-bit integer inputs with an int32 accumulator (TileLang's int8 x int8 -> int32
gemms, and its w4a8 dequantising gemm): exact in interpret mode, on wgmma (`.s32.s8.s8` /
`.u8`) for sm_90a when A and B are K-major shared tiles, on the CUDA cores otherwise (with a
performance warning); compiled for sm_80 and sm_90a and, on a GPU, equal to interpret mode
element for element."""

import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jtile
import jtile.language as T
from tests.language.kernel_runs import run_both_ways


def int_gemm(A, B, C, *, block_m, block_n, block_k, threads, stages, b_rows_are_n):
    """C (M, N) int32 = A (M, K) @ B, B given as (N, K) (`b_rows_are_n`) or (K, N)."""
    M, K = A.shape
    N = B.shape[0] if b_rows_are_n else B.shape[1]
    with T.Kernel(T.ceildiv(N, block_n), T.ceildiv(M, block_m), threads=threads) as (bx, by):
        A_shared = T.alloc_shared((block_m, block_k), A.dtype)
        B_shared = T.alloc_shared((block_n, block_k) if b_rows_are_n else (block_k, block_n),
                                  B.dtype)
        C_local = T.alloc_fragment((block_m, block_n), "int32")
        T.clear(C_local)
        for ko in T.Pipelined(T.ceildiv(K, block_k), num_stages=stages):
            T.copy(A[by * block_m, ko * block_k], A_shared)
            if b_rows_are_n:
                T.copy(B[bx * block_n, ko * block_k], B_shared)
            else:
                T.copy(B[ko * block_k, bx * block_n], B_shared)
            T.gemm(A_shared, B_shared, C_local, transpose_B=b_rows_are_n)
        T.copy(C_local, C[by * block_m, bx * block_n])


def _operands(dtype, m, n, k, b_rows_are_n, seed):
    rng = np.random.default_rng(seed)
    low, high = np.iinfo(dtype).min, np.iinfo(dtype).max + 1
    a = rng.integers(low, high, (m, k)).astype(dtype)
    b = rng.integers(low, high, (n, k) if b_rows_are_n else (k, n)).astype(dtype)
    want = a.astype(np.int64) @ (b.T if b_rows_are_n else b).astype(np.int64)
    return a, b, want


@pytest.mark.parametrize("dtype", [np.int8, np.uint8])
@pytest.mark.parametrize("tiles", [
    dict(block_m=128, block_n=128, block_k=64, threads=128, stages=3),
    dict(block_m=128, block_n=256, block_k=128, threads=256, stages=2),
    dict(block_m=64, block_n=64, block_k=128, threads=128, stages=2),
], ids=["128x128x64", "128x256x128", "64x64x128"])
def test_k_major_int8_gemm_runs_on_wgmma_and_is_exact(dtype, tiles):
    m, n, k = 256, 512, 384
    a, b, want = _operands(dtype, m, n, k, True, seed=7)
    kernel = functools.partial(int_gemm, b_rows_are_n=True, **tiles)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", jtile.JtilePerformanceWarning)  # sm_80: CUDA cores
        (out,), _ = run_both_ways(kernel, (a, b), jax.ShapeDtypeStruct((m, n), jnp.int32))
    np.testing.assert_array_equal(out, want)
    source = jtile.pallas_like(kernel, out_shape=jax.ShapeDtypeStruct((m, n), jnp.int32)) \
        .lower(a, b, target="sm_90a").cuda_source()
    ptx_type = "s8" if dtype == np.int8 else "u8"
    assert f".s32.{ptx_type}.{ptx_type} " in source  # wgmma, integer accumulator


@pytest.mark.parametrize("dtype", [np.int8, np.uint8])
def test_odd_sizes_and_a_k_n_b_run_on_the_cuda_cores_exactly(dtype):
    """B as (K, N) is N-major, which wgmma does not take for 8-bit inputs: int32
    multiply-adds on the CUDA cores, the same sums, with a warning on sm_90a."""
    m, n, k = 96, 80, 160
    a, b, want = _operands(dtype, m, n, k, False, seed=8)
    kernel = functools.partial(int_gemm, block_m=32, block_n=32, block_k=32, threads=128,
                               stages=2, b_rows_are_n=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", jtile.JtilePerformanceWarning)
        (out,), _ = run_both_ways(kernel, (a, b), jax.ShapeDtypeStruct((m, n), jnp.int32))
    np.testing.assert_array_equal(out, want)
    launch = jtile.pallas_like(kernel, out_shape=jax.ShapeDtypeStruct((m, n), jnp.int32))
    with pytest.warns(jtile.JtilePerformanceWarning, match=r"int32 multiply-adds"):
        launch.lower(a, b, target="sm_90a")


def test_int8_accumulates_in_int32_only():
    def float_accumulator(A, B, C):
        with T.Kernel(1, threads=128):
            a = T.alloc_shared((64, 32), A.dtype)
            b = T.alloc_shared((64, 32), B.dtype)
            c = T.alloc_fragment((64, 64), "float32")
            T.copy(A, a)
            T.copy(B, b)
            T.gemm(a, b, c, transpose_B=True, clear_accum=True)
            T.copy(c, C)

    launch = jtile.pallas_like(float_accumulator, interpret=True,
                               out_shape=jax.ShapeDtypeStruct((64, 64), jnp.float32))
    ones = np.ones((64, 32), np.int8)
    with pytest.raises(jtile.JtileError, match=r"accumulator C must be int32 for int8 inputs"):
        launch(ones, ones)


def test_w4a8_dequantising_gemm_with_an_int8_fragment_operand():
    """TileLang's w4a8 gemm: signed 4-bit weights unpacked from uint8 into an int8 fragment,
    multiplied with int8 activations into int32."""
    def w4a8(A, B, Ct, *, block_m=32, block_n=32, block_k=64):
        M, K = A.shape
        N = B.shape[0]
        with T.Kernel(T.ceildiv(N, block_n), T.ceildiv(M, block_m), threads=128) as (bx, by):
            A_shared = T.alloc_shared((block_m, block_k), "int8")
            B_shared = T.alloc_shared((block_n, block_k // 2), "uint8")
            B_local = T.alloc_fragment((block_n, block_k // 2), "uint8")
            B_dequant = T.alloc_fragment((block_n, block_k), "int8")
            Ct_local = T.alloc_fragment((block_n, block_m), "int32")
            T.clear(Ct_local)
            for k in T.Pipelined(K // block_k, num_stages=1):
                T.copy(A[by * block_m, k * block_k], A_shared)
                T.copy(B[bx * block_n, k * block_k // 2], B_shared)
                T.copy(B_shared, B_local)
                for i, j in T.Parallel(block_n, block_k):
                    nibble = (B_local[i, j // 2] >> ((j % 2) * 4)) & 15
                    B_dequant[i, j] = T.Cast("int8", T.Cast("int32", nibble << 4)) >> 4
                T.gemm(B_dequant, A_shared, Ct_local, transpose_B=True)
            T.copy(Ct_local, Ct[bx * block_n, by * block_m])

    rng = np.random.default_rng(9)
    m, n, k = 64, 96, 128
    a = rng.integers(-128, 128, (m, k)).astype(np.int8)
    w = rng.integers(-8, 8, (n, k)).astype(np.int64)  # signed 4-bit weights
    nibbles = (w & 15).astype(np.uint8)
    packed = (nibbles[:, 0::2] | (nibbles[:, 1::2] << 4)).astype(np.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", jtile.JtilePerformanceWarning)
        (out,), _ = run_both_ways(w4a8, (a, packed), jax.ShapeDtypeStruct((n, m), jnp.int32))
    np.testing.assert_array_equal(out, w @ a.astype(np.int64).T)
