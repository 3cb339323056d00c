"""Compiled `jtile.ops.attention` on the GPU at realistic sizes: forward and gradients against
`jax.nn.dot_product_attention` (implementation="xla") computed in float32 from the same inputs,
element by element (tests/gpu/compare.py)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import pytest

from jtile.ops.attention import attention
from tests.gpu.compare import assert_close
from tests.ops.test_attention_op import _inputs, reference

pytestmark = pytest.mark.gpu

# (batch, seq, heads, kv_heads, head_dim, causal, segments)
CASES = [
    (2, 1024, 8, 8, 64, False, 0),
    (2, 1024, 8, 8, 64, True, 0),
    # Past attention.SHORT_SEQ head dim 64 takes the 128-query, three-stage forward.
    (2, 2048, 4, 2, 64, True, 0),
    (1, 1900, 4, 4, 64, False, 0),
    (2, 1024, 8, 8, 128, False, 0),
    (2, 1024, 8, 8, 128, True, 0),
    (2, 1024, 8, 8, 256, False, 0),
    (2, 1024, 8, 8, 256, True, 0),
    (2, 1100, 8, 2, 128, True, 0),
    (2, 1024, 8, 4, 64, False, 5),
    (2, 1500, 8, 2, 128, True, 3),
]


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16])
@pytest.mark.parametrize("case", CASES, ids=[
    f"b{b}s{s}h{h}kv{kv}d{d}{'_causal' if c else ''}{f'_seg{n}' if n else ''}"
    for b, s, h, kv, d, c, n in CASES])
def test_compiled_attention_matches_dot_product_attention(case, dtype):
    batch, seq, heads, kv_heads, dim, causal, segments = case
    name = f"gpu-{case}-{jnp.dtype(dtype).name}"
    q, k, v, do, seg = _inputs(name, batch, seq, heads, kv_heads, dim, dtype, segments)
    options = dict(causal=causal, segment_ids=seg)
    op = functools.partial(attention, interpret=False, **options)
    want_fn = functools.partial(reference, **options)
    out = jax.jit(op)(q, k, v)
    assert out.dtype == dtype
    assert_close(out, want_fn(q, k, v), dtype, name="O")

    def loss(f):
        return lambda q, k, v: jnp.sum(f(q, k, v).astype(jnp.float32) * do)

    got = jax.jit(jax.grad(loss(op), (0, 1, 2)))(q, k, v)
    want = jax.jit(jax.grad(loss(want_fn), (0, 1, 2)))(q, k, v)
    for label, g, w in zip(("dQ", "dK", "dV"), got, want):
        assert g.dtype == dtype, label
        assert_close(g, w, dtype, k=seq, name=label)


@pytest.mark.parametrize("case", [CASES[1], CASES[4], CASES[9]], ids=["d64_causal", "d128",
                                                                      "d64_seg"])
def test_compiled_backward_on_queries_by_keys_scores(monkeypatch, case):
    """attention_bwd_body(queries_by_keys=True) compiled (wgmma reading P and dS transposed
    from shared memory) against the same reference."""
    import importlib

    module = importlib.import_module("jtile.ops.attention")
    tiles = {d: (f, dict(b, queries_by_keys=True)) for d, (f, b) in module.HOPPER_TILES.items()}
    monkeypatch.setattr(module, "HOPPER_TILES", tiles)
    module._launcher.cache_clear()
    try:
        test_compiled_attention_matches_dot_product_attention(case, jnp.bfloat16)
    finally:
        module._launcher.cache_clear()
