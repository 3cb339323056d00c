"""T.gemm into a float16 accumulator (float16 inputs), as TileLang's GEMM tests run with
accum_dtype="float16": mma.sync's and wgmma's .f16 accumulators, two halves a register,
rounded after every 16-deep k-step; interpret mode rounds at the same steps. Checked against
float64 with a tolerance fit for float16 sums, compiled for sm_80 and sm_90a (the SASS has
the .F16 tensor-core instructions) and, on a GPU, compiled against interpret mode."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jtile
import jtile.language as T
from examples import gemm
from tests.language.kernel_runs import run_both_ways
from tests.sass import sass_counts


# examples/gemm.py's kernel with accum_dtype="float16".
CONFIGS = [dict(block_m=128, block_n=128, block_k=32, stages=3, threads=128, trans_b=False),
           dict(block_m=64, block_n=128, block_k=64, stages=2, threads=128, trans_b=True),
           dict(block_m=128, block_n=256, block_k=64, stages=3, threads=256, trans_b=False)]


def _kernel(cfg):
    return functools.partial(gemm.matmul_kernel, trans_a=False, accum_dtype="float16", **cfg)


def _inputs(m, n, k, trans_b, seed):
    ka, kb = jax.random.split(jax.random.key(seed))
    a = (jax.random.normal(ka, (m, k), jnp.float32) / 4).astype(jnp.float16)
    b = (jax.random.normal(kb, (n, k) if trans_b else (k, n), jnp.float32) / 4).astype(
        jnp.float16)
    return a, b


@pytest.mark.parametrize("config", range(len(CONFIGS)))
def test_float16_accumulator_matches_float64(config):
    cfg = CONFIGS[config]
    m, n, k = 256, 256, 192
    a, b = _inputs(m, n, k, cfg["trans_b"], config)
    kernel = _kernel(cfg)
    out_shape = jax.ShapeDtypeStruct((m, n), jnp.float16)
    # On a GPU the compiled kernel must agree with interpret mode to a few float16 ulps (the
    # products' sum inside one k-step may round differently).
    (out,), _ = run_both_ways(kernel, (a, b), out_shape, rtol=2e-2, atol=2e-2)
    b64 = np.asarray(b, np.float64)
    ref = np.asarray(a, np.float64) @ (b64.T if cfg["trans_b"] else b64)
    # 12 roundings of a float16 sum (one per k-step) of values up to ~3.
    np.testing.assert_allclose(out.astype(np.float64), ref, rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("target, instruction", [("sm_80", "HMMA"), ("sm_90a", "HGMMA")])
def test_float16_accumulator_compiles_to_f16_tensor_core_instructions(target, instruction):
    kernel = _kernel(CONFIGS[0])
    spec = jax.ShapeDtypeStruct((256, 256), jnp.float16)
    lowered = jtile.pallas_like(kernel, out_shape=spec).lower(spec, spec, target=target)
    source = lowered.cuda_source()
    cubin = lowered.compile().cubin
    ops = sass_counts(cubin)
    assert ops[instruction] > 0 and ops["LDL"] + ops["STL"] == 0, ops
    if target == "sm_90a":
        assert "wgmma.mma_async.sync.aligned.m64n128k16.f16.f16.f16" in source
    else:
        assert "jt::mma_m16n8k16_f16f16(" in source


def test_float16_accumulator_rounds_every_k_step_in_interpret_mode():
    a = jnp.full((16, 32), 1.0, jnp.float16)
    b = jnp.full((32, 16), 0.0625, jnp.float16)

    def kernel(A, B, C):
        with T.Kernel(1, threads=128):
            x = T.alloc_shared((16, 32), "float16")
            y = T.alloc_shared((32, 16), "float16")
            c = T.alloc_fragment((16, 16), "float16")
            T.copy(A, x)
            T.copy(B, y)
            T.fill(c, 2048)
            T.gemm(x, y, c)
            T.copy(c, C)

    out = jtile.pallas_like(kernel, out_shape=jax.ShapeDtypeStruct((16, 16), jnp.float16),
                            interpret=True)(a, b)
    # Each of the two k-steps adds 16 * 0.0625 = 1 to 2048, whose float16 ulp is 2: 2049 rounds
    # to even, 2048, every step; rounded once at the end the sum would be 2050.
    assert np.all(np.asarray(out, np.float64) == 2048.0)


def test_bfloat16_inputs_take_no_float16_accumulator():
    def kernel(A, B, C):
        with T.Kernel(1, threads=128):
            x = T.alloc_shared((16, 16), "bfloat16")
            y = T.alloc_shared((16, 16), "bfloat16")
            c = T.alloc_fragment((16, 16), "float16")
            T.copy(A, x)
            T.copy(B, y)
            T.gemm(x, y, c, clear_accum=True)
            T.copy(c, C)

    with pytest.raises(jtile.JtileError, match=r"the accumulator C must be float32 for bfloat16 "
                       r"inputs, got float16"):
        jtile.pallas_like(kernel, out_shape=jax.ShapeDtypeStruct((16, 16), jnp.float16),
                          interpret=True)(jnp.ones((16, 16), jnp.bfloat16),
                                          jnp.ones((16, 16), jnp.bfloat16))
