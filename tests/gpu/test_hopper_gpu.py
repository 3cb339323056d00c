"""On an H100/H200: plain TileLang GEMM and attention kernels compile to TMA + mbarrier rings +
wgmma (+ a producer warpgroup), and agree element-wise with a float64 reference on random
inputs, including ragged sizes the TMA engine zero-fills."""

import functools
import importlib
import math
import zlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jtile
import jtile.language as T
from examples import flash_attention as fa
from examples import gemm
from tests.gpu.references import assert_flash_attention_matches_float64, f64

pytestmark = pytest.mark.gpu


def _hopper():
    devices = [d for d in jax.devices() if d.platform == "gpu"]
    return devices and getattr(devices[0], "compute_capability", "") == "9.0"


needs_hopper = pytest.mark.skipif(not _hopper(), reason="needs a Hopper (sm_90) GPU")


def _key(*parts) -> jax.Array:
    return jax.random.key(zlib.crc32(repr(parts).encode()))


def _normal(key, shape, dtype):
    return jax.random.normal(key, shape, jnp.float32).astype(dtype)


GEMM_SHAPES = [(256, 256, 256), (384, 320, 192), (200, 264, 136)]
GEMM_CONFIGS = [dict(block_m=128, block_n=128, block_k=64, stages=3, threads=128),
                dict(block_m=128, block_n=256, block_k=64, stages=3, threads=256),
                dict(block_m=64, block_n=128, block_k=32, stages=4, threads=128),
                # 256-row tiles: persistent with one 32 KiB panel slot beside four stages.
                dict(block_m=256, block_n=128, block_k=64, stages=4, threads=256)]


@needs_hopper
@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16])
@pytest.mark.parametrize("trans_a,trans_b", [(False, False), (False, True), (True, False),
                                             (True, True)])
@pytest.mark.parametrize("shape", GEMM_SHAPES)
@pytest.mark.parametrize("config", range(len(GEMM_CONFIGS)))
def test_gemm_matches_float64(dtype, trans_a, trans_b, shape, config):
    m, n, k = shape
    cfg = GEMM_CONFIGS[config]
    ka, kb = jax.random.split(_key("gemm", dtype, trans_a, trans_b, shape, config))
    a = _normal(ka, (k, m) if trans_a else (m, k), dtype)
    b = _normal(kb, (n, k) if trans_b else (k, n), dtype)
    f = functools.partial(gemm.matmul, trans_a=trans_a, trans_b=trans_b, interpret=False, **cfg)
    out = jax.jit(f)(a, b)
    ref = (f64(a).T if trans_a else f64(a)) @ (f64(b).T if trans_b else f64(b))
    tol = 2e-2 if dtype == jnp.bfloat16 else 4e-3
    np.testing.assert_allclose(f64(out), ref, rtol=tol, atol=tol * math.sqrt(k))


def fp8_gemm_kernel(A, B, C, *, block_m, block_n, block_k, stages, threads):
    """C (bf16) = A @ B^T with A (M, K) and B (N, K) in fp8: both operands K-major."""
    M, N = C.shape
    K = A.shape[1]
    with T.Kernel(T.ceildiv(N, block_n), T.ceildiv(M, block_m), threads=threads) as (bx, by):
        a_tile = T.alloc_shared((block_m, block_k), A.dtype)
        b_tile = T.alloc_shared((block_n, block_k), B.dtype)
        acc = T.alloc_fragment((block_m, block_n), "float32")
        T.clear(acc)
        for kk in T.Pipelined(T.ceildiv(K, block_k), num_stages=stages):
            T.copy(A[by * block_m, kk * block_k], a_tile)
            T.copy(B[bx * block_n, kk * block_k], b_tile)
            T.gemm(a_tile, b_tile, acc, transpose_B=True)
        T.copy(acc, C[by * block_m, bx * block_n])


def fp8_matmul(a, b, *, block_m=128, block_n=256, block_k=128, stages=4, threads=256):
    kernel = functools.partial(fp8_gemm_kernel, block_m=block_m, block_n=block_n,
                               block_k=block_k, stages=stages, threads=threads)
    out = jax.ShapeDtypeStruct((a.shape[0], b.shape[0]), jnp.bfloat16)
    return jtile.pallas_like(kernel, out_shape=out, name="fp8_matmul")(a, b)


@needs_hopper
@pytest.mark.parametrize("dtype", [jnp.float8_e4m3fn, jnp.float8_e5m2])
@pytest.mark.parametrize("shape", [(256, 256, 256), (384, 512, 320)])
def test_fp8_gemm_matches_float64(dtype, shape):
    m, n, k = shape
    ka, kb = jax.random.split(_key("fp8", dtype, shape))
    a = _normal(ka, (m, k), dtype)
    b = _normal(kb, (n, k), dtype)
    out = jax.jit(fp8_matmul)(a, b)
    ref = f64(a) @ f64(b).T
    np.testing.assert_allclose(f64(out), ref, rtol=2e-2, atol=2e-2 * math.sqrt(k))


def _flash_source(q, k, v, causal, **tiles) -> str:
    """The CUDA of examples/flash_attention.py's kernel on `tiles` for these inputs."""
    kernel = functools.partial(fa.flash_fwd_kernel, causal=causal, **tiles)
    return jtile.pallas_like(kernel).lower(q, k, v).cuda_source()


@needs_hopper
@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16])
@pytest.mark.parametrize("d,block_n", [(64, 128), (128, 128), (256, 64)])
@pytest.mark.parametrize("causal", [False, True])
def test_flash_attention_matches_float64(dtype, d, block_n, causal):
    shape = (2, 384, 3, d)
    keys = jax.random.split(_key("attn", dtype, d, causal), 3)
    q, k, v = (_normal(key, shape, dtype) for key in keys)
    assert_flash_attention_matches_float64(q, k, v, causal, block_m=128, block_n=block_n,
                                           threads=256, stages=2)


@needs_hopper
@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16])
@pytest.mark.parametrize("d,block_m,block_n,threads,stages", [
    (64, 128, 128, 256, 3), (64, 64, 128, 128, 4), (64, 128, 64, 256, 4),
    (128, 128, 64, 256, 3), (128, 64, 64, 128, 3)])
@pytest.mark.parametrize("causal", [False, True])
def test_attention_with_p_v_overlapping_the_next_softmax(monkeypatch, dtype, d, block_m, block_n,
                                                          threads, causal, stages):
    """JTILE_OVERLAP_GEMMS (on): O += P V of one tile runs during the next tile's softmax.
    64-key tiles are overlapped too here (by default their softmax is too short to pay)."""
    monkeypatch.setenv("JTILE_OVERLAP_GEMMS", "1")
    monkeypatch.setattr(importlib.import_module("jtile.passes.overlap_gemms"),
                        "MIN_OVERLAPPED_ELEMENTS", 32)
    shape = (2, 328, 3, d)  # a ragged last tile
    keys = jax.random.split(_key("overlap", dtype, d, causal, stages), 3)
    q, k, v = (_normal(key, shape, dtype) for key in keys)
    tiles = dict(block_m=block_m, block_n=block_n, stages=stages, threads=threads)
    # P V one tile late, P in two copies.
    assert "jt_p_frag_next" in _flash_source(q, k, v, causal, **tiles)
    assert_flash_attention_matches_float64(q, k, v, causal, **tiles)


@needs_hopper
@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16])
@pytest.mark.parametrize("d,block_m,block_n,threads,stages", [
    (64, 192, 128, 384, 2), (64, 192, 128, 384, 3), (64, 128, 128, 256, 3),
    (128, 128, 128, 256, 2), (128, 128, 128, 256, 3)])
@pytest.mark.parametrize("causal", [False, True])
def test_attention_with_p_v_overlapped_on_one_copy_of_p(monkeypatch, dtype, d, block_m, block_n,
                                                        threads, stages, causal):
    """JTILE_OVERLAP_COPIES=1: O += P V of one tile runs during the next tile's softmax and P
    is refilled once it is done (one register copy; two stages suffice)."""
    monkeypatch.setenv("JTILE_OVERLAP_COPIES", "1")
    shape = (2, 328, 3, d)
    keys = jax.random.split(_key("overlap1", dtype, d, block_m, causal, stages), 3)
    q, k, v = (_normal(key, shape, dtype) for key in keys)
    tiles = dict(block_m=block_m, block_n=block_n, stages=stages, threads=threads)
    source = _flash_source(q, k, v, causal, **tiles)
    assert "jt::wgmma_wait<1>();" in source and "_next" not in source
    assert_flash_attention_matches_float64(q, k, v, causal, **tiles)


@needs_hopper
@pytest.mark.parametrize("d,block_m,threads,stages", [
    (64, 128, 256, 2), (128, 128, 256, 2),   # turns at S = Q K^T
    (64, 128, 256, 3), (128, 128, 256, 3),   # turns over S and the overlapped P V (2, 1 copies)
    (64, 192, 384, 3)])                      # three warpgroups in turn, one copy of P
@pytest.mark.parametrize("causal", [False, True])
def test_attention_with_warpgroups_taking_turns(monkeypatch, d, block_m, threads, stages,
                                                causal):
    """JTILE_PINGPONG=1: the consumer warpgroups issue their gemms in turn."""
    monkeypatch.setenv("JTILE_PINGPONG", "1")
    shape = (2, 328, 3, d)
    keys = jax.random.split(_key("pingpong", d, causal, block_m, stages), 3)
    q, k, v = (_normal(key, shape, jnp.float16) for key in keys)
    tiles = dict(block_m=block_m, block_n=128, stages=stages, threads=threads)
    assert "jt::named_barrier_sync(2 + jt_wg, 256);" in _flash_source(q, k, v, causal, **tiles)
    assert_flash_attention_matches_float64(q, k, v, causal, **tiles)


@needs_hopper
@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16])
def test_grouped_query_attention_matches_float64(dtype):
    keys = jax.random.split(_key("gqa", dtype), 3)
    q = _normal(keys[0], (2, 320, 8, 128), dtype)
    k = _normal(keys[1], (2, 320, 2, 128), dtype)
    v = _normal(keys[2], (2, 320, 2, 128), dtype)
    assert_flash_attention_matches_float64(q, k, v, False, block_m=128, block_n=128,
                                           threads=256, stages=2)
