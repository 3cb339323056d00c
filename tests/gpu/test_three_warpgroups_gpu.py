"""On an H100/H200: kernels whose accumulators have 192 rows on three consumer warpgroups (384
threads, FlashAttention-3's head-dim-64 tile) agree element-wise with a float64 reference on
random inputs, ragged sizes included: GEMM in every transpose, the flash-attention example
(full, causal, grouped-query, P V overlapped with the next softmax, warpgroups taking turns)
and jtile.ops.attention's forward and backward on those tiles."""

import functools
import importlib
import math
import zlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jtile
from examples import gemm
from tests.gpu.references import assert_flash_attention_matches_float64, f64
from tests.gpu.compare import assert_close
from tests.ops.test_attention_op import _inputs as _op_inputs
from tests.ops.test_attention_op import reference as op_reference

pytestmark = pytest.mark.gpu


def _hopper():
    devices = [d for d in jax.devices() if d.platform == "gpu"]
    return devices and getattr(devices[0], "compute_capability", "") == "9.0"


needs_hopper = pytest.mark.skipif(not _hopper(), reason="needs a Hopper (sm_90) GPU")


def _inputs(tag, shapes, dtype):
    keys = jax.random.split(jax.random.key(zlib.crc32(repr(tag).encode())), len(shapes))
    return [jax.random.normal(key, s, jnp.float32).astype(dtype) for key, s in zip(keys, shapes)]


@needs_hopper
@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16])
@pytest.mark.parametrize("trans_a,trans_b", [(False, False), (False, True), (True, False),
                                             (True, True)])
@pytest.mark.parametrize("m,n,k", [(384, 256, 192), (400, 264, 136)])
def test_gemm_on_192_rows_matches_float64(dtype, trans_a, trans_b, m, n, k):
    a, b = _inputs(("gemm192", dtype, trans_a, trans_b, m), [(k, m) if trans_a else (m, k),
                                                             (n, k) if trans_b else (k, n)], dtype)
    f = functools.partial(gemm.matmul, trans_a=trans_a, trans_b=trans_b, block_m=192,
                          block_n=128, block_k=64, stages=3, threads=384, interpret=False)
    out = jax.jit(f)(a, b)
    ref = (f64(a).T if trans_a else f64(a)) @ (f64(b).T if trans_b else f64(b))
    tol = 2e-2 if dtype == jnp.bfloat16 else 4e-3
    np.testing.assert_allclose(f64(out), ref, rtol=tol, atol=tol * math.sqrt(k))


@needs_hopper
@pytest.mark.parametrize("dtype,setting", [(jnp.float16, ""), (jnp.bfloat16, ""),
                                           (jnp.float16, "JTILE_OVERLAP_GEMMS"),
                                           (jnp.bfloat16, "JTILE_PINGPONG")])
@pytest.mark.parametrize("d,block_n,stages", [(64, 128, 2), (64, 128, 3), (128, 64, 2)])
@pytest.mark.parametrize("causal", [False, True])
def test_flash_attention_on_192_rows_matches_float64(monkeypatch, dtype, d, block_n, stages,
                                                     causal, setting):
    if setting:
        monkeypatch.setenv(setting, "1")
    shape = (2, 400, 3, d)  # a ragged last query block (400 = 2 * 192 + 16) and key tile
    q, k, v = _inputs(("fa192", dtype, d, causal, stages, setting), [shape] * 3, dtype)
    assert_flash_attention_matches_float64(q, k, v, causal, block_m=192, block_n=block_n,
                                           threads=384, stages=stages)


@needs_hopper
def test_column_sum_across_three_warpgroups_matches_float64():
    from tests.passes.test_three_warpgroups import column_sum

    a, b = _inputs("colsum192", [(192, 64), (64, 128)], jnp.float16)
    ref = (f64(a) @ f64(b)).sum(0)
    np.testing.assert_allclose(f64(column_sum(a, b, False)), ref, rtol=1e-3,
                               atol=1e-3 * 192 * math.sqrt(64))


@needs_hopper
def test_grouped_query_attention_on_192_rows_matches_float64():
    q, k, v = _inputs("gqa192", [(2, 576, 8, 64), (2, 576, 2, 64), (2, 576, 2, 64)],
                      jnp.bfloat16)
    assert_flash_attention_matches_float64(q, k, v, True, block_m=192, block_n=128,
                                           threads=384, stages=2)


@needs_hopper
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16])
def test_attention_op_on_192_row_forward_tiles_matches_dot_product_attention(monkeypatch, causal,
                                                                            dtype):
    attention = importlib.import_module("jtile.ops.attention")
    tiles = dict(attention.HOPPER_TILES)
    tiles[64] = (dict(block_m=192, block_n=128, stages=2, threads=384), tiles[64][1])
    monkeypatch.setattr(attention, "HOPPER_TILES", tiles)
    monkeypatch.setattr(attention, "SHORT_SEQ", 0)
    attention._launcher.cache_clear()
    seq = 1100
    name = f"op192-{causal}-{jnp.dtype(dtype).name}"
    q, k, v, do, _ = _op_inputs(name, 2, seq, 8, 2, 64, dtype, 0)
    op = functools.partial(jtile.ops.attention, causal=causal, interpret=False)
    want_fn = functools.partial(op_reference, causal=causal)
    try:
        assert_close(jax.jit(op)(q, k, v), want_fn(q, k, v), dtype, name="O")

        def loss(f):
            return lambda q, k, v: jnp.sum(f(q, k, v).astype(jnp.float32) * do)

        got = jax.jit(jax.grad(loss(op), (0, 1, 2)))(q, k, v)
        want = jax.jit(jax.grad(loss(want_fn), (0, 1, 2)))(q, k, v)
        for label, g, w in zip(("dQ", "dK", "dV"), got, want):
            assert_close(g, w, dtype, k=seq, name=label)
    finally:
        attention._launcher.cache_clear()
