"""`jtile.ops.matmul` in interpret mode against `jnp.matmul`, forward and backward; its
errors; its kernels compiled for sm_90a (the Hopper path: TMA + wgmma) and sm_80 on the CPU;
and shard_map layouts in a subprocess with 4 host devices."""

from __future__ import annotations

import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import jtile
from jtile.ops import matmul
from jtile.ops.matmul_kernels import gemm, gemm_launcher, gemm_tiling, split_k
from tests.ops.test_ops_shard_map import _run
from tests.sass import sass_counts

S = jax.ShapeDtypeStruct
TOL = {"float32": 1e-5, "bfloat16": 2e-2, "float16": 5e-3}


def _normal(seed, shape, dtype):
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float32
                       ).astype(dtype)


def _reference(a, b):
    return jnp.matmul(a.astype(jnp.float32), b.astype(jnp.float32),
                      precision=jax.lax.Precision.HIGHEST)


def _assert_close(actual, expected, dtype, k):
    # A sum of k products: the error grows like sqrt(k) times a product's size.
    tol = TOL[np.dtype(dtype).name]
    np.testing.assert_allclose(np.asarray(actual, np.float32), np.asarray(expected, np.float32),
                               rtol=tol, atol=tol * np.sqrt(k))


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.float16])
def test_forward_matches_jnp_with_batch_axes_and_odd_sizes(dtype):
    a = _normal(1, (2, 37, 70), dtype)        # m, n, k: no multiple of any tile
    b = _normal(2, (70, 100), dtype)
    out = matmul(a, b, interpret=True)
    assert out.shape == (2, 37, 100) and out.dtype == dtype
    _assert_close(out, _reference(a, b), dtype, 70)


def test_batched_b_and_preferred_element_type():
    a = _normal(3, (3, 2, 24, 40), jnp.bfloat16)
    b = _normal(4, (3, 2, 40, 56), jnp.bfloat16)
    out = matmul(a, b, preferred_element_type=jnp.float32, interpret=True)
    assert out.shape == (3, 2, 24, 56) and out.dtype == jnp.float32
    _assert_close(out, _reference(a, b), jnp.float32, 40 * 1e3)  # bf16 inputs, f32 result
    np.testing.assert_allclose(np.asarray(out), np.asarray(_reference(a, b)), rtol=1e-5,
                               atol=1e-4)


def test_float32_gradients_pass_check_grads():
    a = _normal(5, (2, 9, 20), jnp.float32)
    b = _normal(6, (20, 13), jnp.float32)
    check_grads(lambda a, b: matmul(a, b, interpret=True), (a, b), order=1, modes=("rev",),
                atol=1e-2, rtol=1e-2)


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
@pytest.mark.parametrize("batched_b", [False, True])
def test_gradients_match_jnp(dtype, batched_b):
    a = _normal(7, (2, 33, 48), dtype)
    b = _normal(8, (2, 48, 40) if batched_b else (48, 40), dtype)
    g = _normal(9, (2, 33, 40), jnp.float32)

    def loss(f):
        return lambda a, b: jnp.sum(f(a, b).astype(jnp.float32) * g)

    da, db = jax.jit(jax.grad(loss(functools.partial(matmul, interpret=True)), (0, 1)))(a, b)
    rda, rdb = jax.grad(loss(_reference), (0, 1))(a.astype(jnp.float32), b.astype(jnp.float32))
    assert da.dtype == dtype and db.dtype == dtype and db.shape == b.shape
    _assert_close(da, rda, dtype, 40)
    # Without batch axes on b, db sums over the 2 x 33 rows of the folded batch.
    _assert_close(db, rdb, dtype, 66)


@pytest.mark.parametrize("dtype", [jnp.float8_e4m3fn, jnp.float8_e5m2])
def test_float8_forward_is_bfloat16_and_differentiable(dtype):
    a = _normal(10, (40, 64), dtype)
    b = _normal(11, (64, 48), dtype)
    out = matmul(a, b, interpret=True)
    assert out.dtype == jnp.bfloat16
    _assert_close(out, _reference(a, b), jnp.bfloat16, 64)
    g = _normal(12, (40, 48), jnp.float32)
    da, db = jax.grad(lambda a, b: jnp.sum(matmul(a, b, interpret=True).astype(jnp.float32) * g),
                      (0, 1))(a, b)
    assert da.dtype == dtype and db.dtype == dtype
    rda = g.astype(jnp.bfloat16).astype(jnp.float32) @ b.astype(jnp.float32).T
    rdb = a.astype(jnp.float32).T @ g.astype(jnp.bfloat16).astype(jnp.float32)
    # The gradients are rounded to float8 (3 or 2 mantissa bits): 1/8 or 1/4 relative.
    rtol = 0.07 if dtype == jnp.float8_e4m3fn else 0.13
    np.testing.assert_allclose(np.asarray(da, np.float32), rda, rtol=rtol, atol=0.1)
    np.testing.assert_allclose(np.asarray(db, np.float32), rdb, rtol=rtol, atol=0.1)


def test_vmap_matches_jnp():
    a = _normal(13, (3, 20, 24), jnp.bfloat16)
    b = _normal(14, (3, 24, 16), jnp.bfloat16)
    out = jax.vmap(functools.partial(matmul, interpret=True))(a, b)
    _assert_close(out, _reference(a, b), jnp.bfloat16, 24)
    shared = jax.vmap(lambda x: matmul(x, b[0], interpret=True))(a)
    _assert_close(shared, _reference(a, b[0]), jnp.bfloat16, 24)


@pytest.mark.parametrize("a_shape,b_shape,a_dtype,b_dtype,match", [
    ((4, 8), (9, 5), jnp.bfloat16, jnp.bfloat16, "K"),
    ((4, 8), (8, 5), jnp.bfloat16, jnp.float16, "share one dtype"),
    ((4, 8), (8, 5), jnp.int32, jnp.int32, "takes float16"),
    ((8,), (8, 5), jnp.bfloat16, jnp.bfloat16, "at least 2 dimensions"),
    ((2, 4, 8), (3, 8, 5), jnp.bfloat16, jnp.bfloat16, "batch axes"),
])
def test_bad_inputs_are_refused(a_shape, b_shape, a_dtype, b_dtype, match):
    a = jnp.ones(a_shape, a_dtype)
    b = jnp.ones(b_shape, b_dtype)
    with pytest.raises(jtile.JtileShapeError, match=match) as info:
        matmul(a, b, interpret=True)
    assert "jtile.ops.matmul" in str(info.value)


def test_bad_preferred_element_type_is_refused():
    a = jnp.ones((4, 8), jnp.bfloat16)
    with pytest.raises(jtile.JtileShapeError, match="preferred_element_type"):
        matmul(a, a.T, preferred_element_type=jnp.int8, interpret=True)


def test_float8_is_refused_before_sm_90a(monkeypatch):
    monkeypatch.setenv("JTILE_TARGET", "sm_80")
    a = jnp.ones((64, 64), jnp.float8_e4m3fn)
    with pytest.raises(jtile.JtileError, match="sm_90a"):
        matmul(a, a, interpret=False)


def _lower(m, n, k, dtype, trans_a, trans_b, arch, out="bfloat16", accumulate=False):
    tiling = gemm_tiling(m, n, dtype, arch)
    call = gemm_launcher(tiling, trans_a, trans_b, "float32" if accumulate else out,
                         accumulate, False)
    args = [S((k, m) if trans_a else (m, k), dtype), S((n, k) if trans_b else (k, n), dtype)]
    if accumulate:
        args.append(S((m, n), jnp.float32))
    return call.lower(*args, target=arch)


@pytest.mark.parametrize("trans_a,trans_b,accumulate", [(False, False, False),
                                                        (False, True, False),
                                                        (True, False, False),
                                                        (False, True, True)])
def test_sm_90a_kernels_take_the_hopper_path(trans_a, trans_b, accumulate):
    with warnings.catch_warnings():
        warnings.simplefilter("error", jtile.JtilePerformanceWarning)
        lowered = _lower(4096, 4096, 4096, jnp.bfloat16, trans_a, trans_b, "sm_90a",
                         accumulate=accumulate)
        source = lowered.cuda_source()
        binary = lowered.compile()
    assert "wgmma.mma_async" in source and "tma_load_2d" in source
    assert "mbarrier_wait_parity" in source
    assert binary.cubin[:4] == b"\x7fELF" and 0 < binary.registers <= 255
    _assert_sass_has(binary.cubin, ("HGMMA", "UTMALDG"))


def test_tile_choice_per_shape():
    large = gemm_tiling(4096, 4096, jnp.bfloat16)
    assert (large.block_m, large.block_n, large.block_k, large.stages, large.threads) == \
        (128, 256, 64, 4, 256)
    assert gemm_tiling(4096, 4096, jnp.bfloat16, "sm_80").stages == 3
    small = gemm_tiling(512, 384, jnp.bfloat16)   # fewer than a wave of 128 x 256 tiles
    assert small.block_m * small.block_n < 128 * 256
    assert gemm_tiling(4096, 4096, jnp.float8_e4m3fn).block_k == 128


@pytest.mark.parametrize("trans_a, trans_b", [(True, False), (False, True)])
def test_small_outputs_with_a_long_k_split_k(trans_a, trans_b):
    """A weight gradient's shape (768 x 128 from 4000 rows, K not a multiple of the tile):
    the K runs of several blocks, summed, equal one product; the split kernel takes the
    Hopper path."""
    m, n, k = 256, 128, 4000
    tiling = gemm_tiling(m, n, jnp.bfloat16)
    splits = split_k(m, n, k, tiling)
    assert splits > 1 and split_k(4096, 4096, 4096, gemm_tiling(4096, 4096, jnp.bfloat16)) == 1
    ka, kb = jax.random.split(jax.random.key(41))
    a = jax.random.normal(ka, (k, m) if trans_a else (m, k), jnp.float32).astype(jnp.bfloat16)
    b = jax.random.normal(kb, (n, k) if trans_b else (k, n), jnp.float32).astype(jnp.bfloat16)
    a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
    want = (a64.T if trans_a else a64) @ (b64.T if trans_b else b64)
    got = gemm(a, b, trans_a=trans_a, trans_b=trans_b, out_dtype=jnp.float32, interpret=True,
               arch="sm_90a")
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-4, atol=1e-3)
    added = gemm(a, b, trans_a=trans_a, trans_b=trans_b, out_dtype=jnp.float32,
                 interpret=True, arch="sm_90a", accumulate_into=jnp.full((m, n), 2.0))
    np.testing.assert_allclose(np.asarray(added), want + 2.0, rtol=1e-4, atol=1e-3)
    with warnings.catch_warnings():
        warnings.simplefilter("error", jtile.JtilePerformanceWarning)
        lowered = gemm_launcher(tiling, trans_a, trans_b, "float32", False, False, splits) \
            .lower(a, b, target="sm_90a")
        binary = lowered.compile()
    assert "wgmma.mma_async" in lowered.cuda_source()
    _assert_sass_has(binary.cubin, ("HGMMA",))


def test_float8_kernel_runs_on_wgmma_for_sm_90a_and_cuda_cores_for_sm_80():
    # The op refuses float8 before sm_90a (test_float8_is_refused_before_sm_90a); its kernel
    # alone would run there on the CUDA cores, with a warning.
    source = _lower(512, 512, 512, jnp.float8_e4m3fn, False, True, "sm_90a").cuda_source()
    assert "e4m3" in source and "wgmma.mma_async" in source
    with pytest.warns(jtile.JtilePerformanceWarning, match="CUDA cores.*sm_90a"):
        lowered = _lower(512, 512, 512, jnp.float8_e4m3fn, False, True, "sm_80")
    assert "wgmma" not in lowered.cuda_source()


@pytest.mark.parametrize("trans_a,trans_b", [(False, False), (False, True), (True, False)])
def test_sm_80_kernels_compile(trans_a, trans_b):
    binary = _lower(1024, 1024, 512, jnp.float16, trans_a, trans_b, "sm_80").compile()
    assert binary.cubin[:4] == b"\x7fELF" and 0 < binary.registers <= 255


def _assert_sass_has(cubin: bytes, opcodes) -> None:
    """The cubin's SASS holds each opcode (skipped where cuobjdump is missing)."""
    counts = sass_counts(cubin)
    for opcode in opcodes:
        assert counts[opcode] > 0, (opcode, counts)


def test_shard_map_data_and_tensor_parallel():
    _run("""
        a = arr((8, 16), P("data", None))
        b = arr((16, 12), P())
        compare(lambda a, b: jnp.sum(ops.matmul(a, b) ** 2),
                lambda a, b: jnp.sum(jnp.matmul(a, b, precision="highest") ** 2),
                (a, b), (P("data", None), P()), (0, 1))
        bt = arr((16, 12), P(None, "model"))
        compare(lambda a, b: jnp.sum(ops.matmul(a, b) ** 2),
                lambda a, b: jnp.sum(jnp.matmul(a, b, precision="highest") ** 2),
                (a, bt), (P("data", None), P(None, "model")), (0, 1))
    """)
