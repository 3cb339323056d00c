"""`jtile.ops.linear_cross_entropy` in interpret mode against `cross_entropy(h @ w, labels)` in
jax.numpy, forward and backward (several vocabulary chunks, ragged vocabularies, labels
outside the vocabulary), vmap, shard_map, errors, and its kernels compiled for sm_90a (TMA +
wgmma) and sm_80 on the CPU."""

from __future__ import annotations

import sys
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import jtile
from jtile.ops import linear_cross_entropy
from jtile.ops.linear_cross_entropy_kernels import (
    launcher,
    lce_dlogits_kernel,
    lce_forward_kernel,
    logits_tiling,
)
from tests.ops import references as ref
from tests.ops.test_matmul_op import _assert_sass_has
from tests.ops.launches import compile_every_launch
from tests.ops.test_ops_shard_map import _run

S = jax.ShapeDtypeStruct
LCE = sys.modules["jtile.ops.linear_cross_entropy"]
TOL = {"float32": 1e-5, "bfloat16": 2e-2, "float16": 5e-3}


def _inputs(seed, lead, hidden, vocab, dtype, scale=0.3):
    rng = np.random.default_rng(seed)
    h = jnp.asarray(rng.standard_normal(lead + (hidden,)), jnp.float32).astype(dtype)
    w = jnp.asarray(rng.standard_normal((hidden, vocab)) * scale, jnp.float32).astype(dtype)
    labels = jnp.asarray(rng.integers(0, vocab, lead), jnp.int32)
    return h, w, labels


def _reference(h, w, labels):
    logits = jnp.matmul(h.astype(jnp.float32), w.astype(jnp.float32),
                        precision=jax.lax.Precision.HIGHEST)
    return ref.cross_entropy(logits, labels)


@pytest.fixture
def narrow_chunks(monkeypatch):
    """Backward chunks of 256 columns, so that small vocabularies take several."""
    monkeypatch.setattr(LCE, "CHUNK_BYTES", 1)
    monkeypatch.setattr(LCE, "MIN_CHUNK", 256)


# Ragged vocabularies: 300 and 1000 are no multiple of the 256-column tile, 300 not of 8.
@pytest.mark.parametrize("dtype,vocab", [(jnp.float32, 300), (jnp.bfloat16, 1000),
                                         (jnp.float16, 300)])
def test_forward_matches_jnp(dtype, vocab):
    h, w, labels = _inputs(1, (2, 37), 40, vocab, dtype)
    out = linear_cross_entropy(h, w, labels, interpret=True)
    assert out.shape == (2, 37) and out.dtype == jnp.float32
    tol = TOL[np.dtype(dtype).name]
    np.testing.assert_allclose(np.asarray(out), np.asarray(_reference(h, w, labels)),
                               rtol=tol, atol=tol)


def test_float32_gradients_pass_check_grads(narrow_chunks):
    h, w, labels = _inputs(2, (11,), 16, 600, jnp.float32)
    assert LCE.chunk_width(11, 600, jnp.float32, 128) == 256   # two chunks and a tail
    check_grads(lambda h, w: linear_cross_entropy(h, w, labels, interpret=True), (h, w),
                order=1, modes=("rev",), atol=1e-2, rtol=1e-2)


@pytest.mark.parametrize("dtype,vocab", [(jnp.float32, 1000), (jnp.bfloat16, 520)])
def test_gradients_match_jnp_over_several_chunks(narrow_chunks, dtype, vocab):
    h, w, labels = _inputs(3, (3, 30), 48, vocab, dtype)
    # A label past the vocabulary: NaN loss, masked below; its row's gradient is g * softmax.
    labels = labels.at[0, 0].set(vocab + 3).at[0, 1].set(-2)
    g = jnp.asarray(np.random.default_rng(4).standard_normal((3, 30)), jnp.float32)
    valid = jnp.ones((3, 30), bool).at[0, 0].set(False)

    def loss(f):
        return lambda h, w: jnp.sum(jnp.where(valid, f(h, w, labels) * g, 0.0))

    dh, dw = jax.jit(jax.grad(loss(lambda *a: linear_cross_entropy(*a, interpret=True)),
                              (0, 1)))(h, w)
    rdh, rdw = jax.grad(loss(_reference), (0, 1))(h.astype(jnp.float32), w.astype(jnp.float32))
    assert dh.dtype == dtype and dw.dtype == dtype and dw.shape == w.shape
    # dlogits are rounded to the operands' dtype before the dh / dw GEMMs.
    tol = {"float32": 1e-4, "bfloat16": 3e-2}[np.dtype(dtype).name]
    for got, want in ((dh, rdh), (dw, rdw)):
        scale = float(np.max(np.abs(np.asarray(want))))
        np.testing.assert_allclose(np.asarray(got, np.float32), np.asarray(want), rtol=tol,
                                   atol=tol * scale)


def test_labels_follow_jnp_indexing():
    h, w, labels = _inputs(5, (12,), 8, 100, jnp.float32)
    labels = labels.at[0].set(-1).at[1].set(-100).at[2].set(100).at[3].set(-101)
    out = np.asarray(linear_cross_entropy(h, w, labels, interpret=True))
    want = np.asarray(_reference(h, w, labels))
    # -1 and -100 count from the end; 100 and -101 are outside: NaN, as jnp gives.
    assert np.isnan(out).tolist() == np.isnan(want).tolist()
    assert np.isnan(out)[[2, 3]].all() and not np.isnan(out)[:2].any()
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)


def test_vmap_with_shared_and_batched_weights():
    h, w, labels = _inputs(6, (3, 20), 32, 200, jnp.bfloat16)
    shared = jax.vmap(lambda h, l: linear_cross_entropy(h, w, l, interpret=True))(h, labels)
    np.testing.assert_allclose(np.asarray(shared), np.asarray(_reference(h, w, labels)),
                               rtol=2e-2, atol=2e-2)
    ws = jnp.stack([w, w * 0.5, -w])
    per = jax.vmap(lambda h, w, l: linear_cross_entropy(h, w, l, interpret=True))(h, ws, labels)
    want = jax.vmap(_reference)(h, ws, labels)
    np.testing.assert_allclose(np.asarray(per), np.asarray(want), rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("h_shape,w_shape,l_shape,w_dtype,l_dtype,match", [
    ((4, 8), (9, 20), (4,), jnp.bfloat16, jnp.int32, "hidden = 8"),
    ((4, 8), (8, 20), (4,), jnp.float16, jnp.int32, "share one dtype"),
    ((4, 8), (8, 20), (5,), jnp.bfloat16, jnp.int32, "one class index per row"),
    ((4, 8), (8, 20), (4,), jnp.bfloat16, jnp.float32, "integer"),
    ((4, 8), (8,), (4,), jnp.bfloat16, jnp.int32, "at least 2 dimensions"),
])
def test_bad_inputs_are_refused(h_shape, w_shape, l_shape, w_dtype, l_dtype, match):
    h = jnp.ones(h_shape, jnp.bfloat16)
    with pytest.raises(jtile.JtileShapeError, match=match) as info:
        linear_cross_entropy(h, jnp.ones(w_shape, w_dtype), jnp.zeros(l_shape, l_dtype),
                             interpret=True)
    assert "jtile.ops.linear_cross_entropy" in str(info.value)


def _kernel_args(rows, hidden, columns, dtype, forward):
    if forward:
        return (S((rows, hidden), dtype), S((hidden, columns), dtype), S((rows,), jnp.int32))
    return (S((rows, hidden), dtype), S((hidden, columns), dtype), S((rows,), jnp.int32),
            S((rows,), jnp.float32), S((rows,), jnp.float32))


@pytest.mark.parametrize("forward", [True, False])
def test_sm_90a_kernels_take_the_hopper_path_at_full_size(forward):
    rows, hidden, vocab = 16384, 4096, 131072
    tiling = logits_tiling(rows, jnp.bfloat16, "sm_90a")
    if forward:
        call = launcher(lce_forward_kernel, "lce_fwd", tiling, False, vocab=vocab)
    else:
        call = launcher(lce_dlogits_kernel, "lce_dlogits", tiling, False)
    args = _kernel_args(rows, hidden, vocab if forward else 8192, jnp.bfloat16, forward)
    with warnings.catch_warnings():
        warnings.simplefilter("error", jtile.JtilePerformanceWarning)
        lowered = call.lower(*args, target="sm_90a")
        source = lowered.cuda_source()
        binary = lowered.compile()
    assert "wgmma.mma_async" in source and "tma_load_2d" in source
    assert binary.cubin[:4] == b"\x7fELF" and 0 < binary.registers <= 255
    _assert_sass_has(binary.cubin, ("HGMMA", "UTMALDG"))


def test_small_vocabularies_take_narrow_tiles_and_more_blocks():
    wide = logits_tiling(16384, jnp.bfloat16, "sm_90a", vocab=131072)
    assert (wide.block_rows, wide.block_cols) == (128, 256)
    # A 128-token vocabulary: 128-column tiles (no padding), 64-row tiles (256 blocks, not
    # 128, on 132 multiprocessors).
    small = logits_tiling(16384, jnp.bfloat16, "sm_90a", vocab=128)
    assert (small.block_rows, small.block_cols, small.gemm.threads) == (64, 128, 128)
    assert logits_tiling(65536, jnp.bfloat16, "sm_90a", vocab=128).block_rows == 128
    for forward in (True, False):
        call = (launcher(lce_forward_kernel, "lce_fwd", small, False, vocab=128) if forward
                else launcher(lce_dlogits_kernel, "lce_dlogits", small, False))
        with warnings.catch_warnings():
            warnings.simplefilter("error", jtile.JtilePerformanceWarning)
            binary = call.lower(*_kernel_args(16384, 768, 128, jnp.bfloat16, forward),
                                target="sm_90a").compile()
        _assert_sass_has(binary.cubin, ("HGMMA", "UTMALDG"))


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float32])
def test_sm_80_kernels_compile(dtype):
    tiling = logits_tiling(4096, dtype, "sm_80")
    for forward in (True, False):
        call = (launcher(lce_forward_kernel, "lce_fwd", tiling, False, vocab=32000) if forward
                else launcher(lce_dlogits_kernel, "lce_dlogits", tiling, False))
        binary = call.lower(*_kernel_args(4096, 1024, 32000, dtype, forward),
                            target="sm_80").compile()
        assert binary.cubin[:4] == b"\x7fELF" and 0 < binary.registers <= 255


def test_every_launch_of_the_op_compiles_for_sm_90a(monkeypatch):
    compiled = compile_every_launch(monkeypatch)
    h, w, labels = _inputs(7, (40,), 64, 700, jnp.bfloat16)   # one chunk, padded to 704
    jax.grad(lambda h, w: jnp.sum(linear_cross_entropy(h, w, labels, interpret=True)),
             (0, 1))(h, w)
    names = {name for name, _ in compiled}
    assert {"lce_fwd", "lce_dlogits", "matmul_acc_tb", "matmul_ta"} <= names, names
    for name, binary in compiled:
        assert binary.cubin[:4] == b"\x7fELF", name


def test_shard_map_data_parallel_sums_the_weight_gradient():
    _run("""
        h = arr((8, 16), P("data", None))
        w = arr((16, 40), P())
        labels = jax.device_put(rng.integers(0, 40, (8,)).astype(np.int32),
                                NamedSharding(mesh, P("data")))
        def want(h, w, l):
            return ref.cross_entropy(jnp.matmul(h, w, precision="highest"), l)
        compare(lambda h, w, l: jnp.sum(ops.linear_cross_entropy(h, w, l) ** 2),
                lambda h, w, l: jnp.sum(want(h, w, l) ** 2),
                (h, w, labels), (P("data", None), P(), P("data")), (0, 1))
    """)
