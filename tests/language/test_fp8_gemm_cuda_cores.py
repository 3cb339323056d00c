"""A float8 T.gemm that wgmma cannot run (sm_80 / sm_89 targets, or B not K-major on sm_90a)
computes on the CUDA cores, each product in float32, with a performance warning: the contract
gives fp8 T.gemm from sm_89 on. Interpret mode, compiled for sm_80 and sm_90a, and run
compiled on a GPU (where sm_90a takes the same CUDA-core path for this N-major B)."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jtile
import jtile.language as T
from jtile.errors import JtilePerformanceWarning
from tests.language.kernel_runs import run_both_ways

M, N, K = 64, 64, 96


def fp8_matmul(A, B, C):
    with T.Kernel(1, threads=128):
        a = T.alloc_shared((M, K), "float8_e4m3")
        b = T.alloc_shared((K, N), "float8_e4m3")
        c = T.alloc_fragment((M, N), "float32")
        T.copy(A, a)
        T.copy(B, b)
        T.clear(c)
        T.gemm(a, b, c)
        T.gemm(a, b, c)            # accumulates: 2 A @ B
        T.copy(c, C)


def test_float8_gemm_on_cuda_cores_matches_float64():
    rng = np.random.default_rng(9)
    a = jnp.asarray(rng.standard_normal((M, K)), jnp.float8_e4m3fn)
    b = jnp.asarray(rng.standard_normal((K, N)), jnp.float8_e4m3fn)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", JtilePerformanceWarning)
        (c,), _ = run_both_ways(fp8_matmul, [a, b], jax.ShapeDtypeStruct((M, N), jnp.float32),
                                rtol=1e-5, atol=1e-4)
    ref = 2 * np.asarray(a, np.float64) @ np.asarray(b, np.float64)
    np.testing.assert_allclose(c, ref, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("target", ["sm_89", "sm_80"])
def test_the_cuda_core_path_is_announced(target):
    call = jtile.pallas_like(fp8_matmul, out_shape=jax.ShapeDtypeStruct((M, N), jnp.float32))
    spec_a = jax.ShapeDtypeStruct((M, K), jnp.float8_e4m3fn)
    spec_b = jax.ShapeDtypeStruct((K, N), jnp.float8_e4m3fn)
    with pytest.warns(JtilePerformanceWarning, match=r"T.gemm on float8_e4m3 inputs runs on "
                      rf"the CUDA cores .* needs sm_90a \(the target is {target}\)"):
        lowered = call.lower(spec_a, spec_b, target=target)
    assert lowered.compile().cubin[:4] == b"\x7fELF"
