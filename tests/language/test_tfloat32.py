"""`T.tfloat32`: TileLang's TensorFloat32 tile type. Storage is float32 (a parameter annotated
tfloat32 takes a float32 array), element-wise arithmetic is float32, and `T.gemm` on tfloat32
tiles multiplies the float32 values exactly on the CUDA cores with a performance warning,
where TileLang rounds them to TF32 on tensor cores: results at least as accurate."""

import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jtile
import jtile.language as T
from tests.language.kernel_runs import run_both_ways


def gemm_and_sum_of_squares(x, fn, out, sqrsum, *, token_block=32, hidden_block=64):
    """A fused gemm and row sum of squares in the style of TileLang's mHC pre block: bf16
    activations widened to tfloat32 tiles, tfloat32 weights."""
    tokens, hidden = x.shape
    outs = fn.shape[0]
    fn: T.Tensor((outs, hidden), T.tfloat32)
    with T.Kernel(T.ceildiv(tokens, token_block), threads=128) as px:
        out_frag = T.alloc_fragment((token_block, 32), T.float32)
        sq_part = T.alloc_fragment((token_block, 4), T.float32)
        T.clear(out_frag)
        T.clear(sq_part)
        for pz in T.Pipelined(hidden // hidden_block, num_stages=2):
            x_smem = T.alloc_shared((token_block, hidden_block), T.bfloat16)
            fn_smem = T.alloc_shared((32, hidden_block), T.tfloat32)
            T.copy(x[px * token_block, pz * hidden_block], x_smem)
            T.copy(fn[0, pz * hidden_block], fn_smem)
            x_frag = T.alloc_fragment((token_block, hidden_block), T.tfloat32)
            T.copy(x_smem, x_frag)
            for jj in T.serial(hidden_block // 4):
                for i, j in T.Parallel(token_block, 4):
                    sq_part[i, j] += x_frag[i, jj * 4 + j] * x_frag[i, jj * 4 + j]
            T.gemm(x_frag, fn_smem, out_frag, transpose_B=True)
        sq = T.alloc_fragment(token_block, T.float32)
        T.reduce_sum(sq_part, sq)
        for i in T.Parallel(token_block):
            sqrsum[px * token_block + i] = sq[i]
        for i, j in T.Parallel(token_block, 32):
            if j < outs:
                out[px * token_block + i, j] = out_frag[i, j]


def test_tfloat32_tiles_run_as_exact_float32_and_say_the_gemm_is_on_cuda_cores():
    rng = np.random.default_rng(11)
    tokens, hidden, outs = 64, 256, 24
    x = rng.standard_normal((tokens, hidden)).astype(jnp.bfloat16)
    fn = rng.standard_normal((32, hidden)).astype(np.float32)
    fn[outs:] = 0  # rows past `outs` are padding the kernel never stores
    shapes = (jax.ShapeDtypeStruct((tokens, outs), jnp.float32),
              jax.ShapeDtypeStruct((tokens,), jnp.float32))
    kernel = functools.partial(gemm_and_sum_of_squares)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", jtile.JtilePerformanceWarning)
        (out, sqrsum), _ = run_both_ways(kernel, (x, fn), shapes, rtol=1e-5, atol=1e-4)
    x64 = np.asarray(x, np.float64)
    np.testing.assert_allclose(out, x64 @ fn[:outs].astype(np.float64).T, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(sqrsum, (x64 * x64).sum(1), rtol=1e-5, atol=1e-4)
    launch = jtile.pallas_like(kernel, out_shape=shapes)
    with pytest.warns(jtile.JtilePerformanceWarning, match=r"tfloat32 inputs runs on the CUDA "
                                                           r"cores \(exact float32 FMAs"):
        launch.lower(x, fn, target="sm_90a")


def test_tfloat32_is_float32_storage_and_compares_by_name():
    assert T.tfloat32 == "tfloat32" and T.tfloat32 != T.float32

    def copy(X, Y):
        with T.Kernel(1, threads=128):
            s = T.alloc_shared((16, 16), "tfloat32")
            T.copy(X, s)
            T.copy(s, Y)

    x = np.random.default_rng(12).standard_normal((16, 16)).astype(np.float32)
    (y,), _ = run_both_ways(copy, (x,), jax.ShapeDtypeStruct((16, 16), jnp.float32))
    np.testing.assert_array_equal(y, x)


def test_a_tfloat32_parameter_takes_float32_arrays_only():
    def scale(X: T.Tensor((16,), T.tfloat32), Y: T.Tensor((16,), T.float32)):
        with T.Kernel(1, threads=32):
            for i in T.Parallel(16):
                Y[i] = X[i] * 2.0

    launch = jtile.pallas_like(scale, interpret=True)
    np.testing.assert_array_equal(launch(np.arange(16, dtype=np.float32)),
                                  2 * np.arange(16, dtype=np.float32))
    with pytest.raises(jtile.JtileError, match=r"has dtype float16 but is annotated"):
        launch(np.arange(16, dtype=np.float16))
