"""The GPT example's packed projection kernels against slicing the projection and the jnp
definitions: q, k, v split and rotated (examples/gpt/qkv_rotary.py; dq and dk rotated back, dv
passed through, for head counts that are and are not powers of 2) and SwiGLU on gate | up
(examples/gpt/packed_swiglu.py; hidden sizes that fill one block's columns or not, a row
count that leaves a partial block), forward and gradients in interpret mode, compiled for
sm_90a; and the model with them against the model without them."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from examples.gpt import model as gpt
from examples.gpt.packed_swiglu import swiglu_packed
from examples.gpt.qkv_rotary import qkv_rotary
from tests.ops import references as ref


def _reference(qkv, cos, sin, heads, kv_heads):
    q = qkv[:, :, :heads]
    k = qkv[:, :, heads:heads + kv_heads]
    v = qkv[:, :, heads + kv_heads:]
    return ref.rotary(q, cos, sin), ref.rotary(k, cos, sin), v


@pytest.mark.parametrize("heads,kv_heads", [(4, 2), (12, 4), (3, 1)])
def test_forward_and_packed_gradient_match_slices_and_rotary(heads, kv_heads):
    batch, seq, dim = 2, 5, 32
    keys = jax.random.split(jax.random.key(heads), 5)
    qkv = jax.random.normal(keys[0], (batch, seq, heads + 2 * kv_heads, dim), jnp.float32)
    angle = jax.random.uniform(keys[1], (seq, dim // 2), jnp.float32, 0, 6.3)
    cos, sin = jnp.cos(angle), jnp.sin(angle)
    mine = functools.partial(qkv_rotary, heads=heads, kv_heads=kv_heads, interpret=True)
    want = _reference(qkv, cos, sin, heads, kv_heads)
    for got, expected in zip(mine(qkv, cos, sin), want):
        np.testing.assert_allclose(np.asarray(got), np.asarray(expected), rtol=1e-5, atol=1e-5)
    cots = [jax.random.normal(k, w.shape, jnp.float32) for k, w in zip(keys[2:], want)]

    def loss(f):
        return lambda x: sum(jnp.sum(o * c) for o, c in zip(f(x, cos, sin), cots))

    got = jax.grad(loss(mine))(qkv)
    expected = jax.grad(loss(lambda x, c, s: _reference(x, c, s, heads, kv_heads)))(qkv)
    np.testing.assert_allclose(np.asarray(got), np.asarray(expected), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("rows,hidden", [(6, 48), (9, 1024), (4, 1536)])
def test_packed_swiglu_matches_silu_gate_times_up(rows, hidden):
    keys = jax.random.split(jax.random.key(hidden), 2)
    gu = jax.random.normal(keys[0], (rows, 2 * hidden), jnp.float32)
    cot = jax.random.normal(keys[1], (rows, hidden), jnp.float32)

    def reference(x):
        return jax.nn.silu(x[:, :hidden]) * x[:, hidden:]

    mine = functools.partial(swiglu_packed, interpret=True)
    np.testing.assert_allclose(np.asarray(mine(gu)), np.asarray(reference(gu)), rtol=1e-5,
                               atol=1e-6)
    got = jax.grad(lambda x: jnp.sum(mine(x) * cot))(gu)
    want = jax.grad(lambda x: jnp.sum(reference(x) * cot))(gu)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-6)


def test_the_model_with_packed_projections_matches_the_model_without():
    cfg = gpt.GPTConfig(vocab_size=64, d_model=64, n_layers=1, n_heads=4, n_kv_heads=2,
                        head_dim=64, mlp_hidden=128, seq=128)
    params = gpt.init_params(cfg, jax.random.key(0))
    tokens = jax.random.randint(jax.random.key(1), (2, cfg.seq), 0, cfg.vocab_size)
    targets = jnp.roll(tokens, -1, axis=1)
    plain = gpt.jtile_ops(cfg.eps, interpret=True, packed_projections=False)
    packed = gpt.jtile_ops(cfg.eps, interpret=True)
    runs = [jax.value_and_grad(functools.partial(gpt.loss_fn, ops, cfg))(params, tokens, targets)
            for ops in (plain, packed)]
    (loss_a, grads_a), (loss_b, grads_b) = runs
    np.testing.assert_allclose(float(loss_a), float(loss_b), rtol=1e-5)
    for a, b in zip(jax.tree.leaves(grads_a), jax.tree.leaves(grads_b)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-2, atol=2e-4)


def test_the_kernels_compile_for_sm_90a(monkeypatch):
    from tests.ops.launches import compile_every_launch

    compiled = compile_every_launch(monkeypatch)
    qkv = jax.random.normal(jax.random.key(3), (2, 128, 20, 64), jnp.float32).astype(jnp.bfloat16)
    angle = jax.random.uniform(jax.random.key(4), (128, 32), jnp.float32, 0, 6.3)
    mine = functools.partial(qkv_rotary, heads=12, kv_heads=4, interpret=True)
    jax.grad(lambda x: sum(jnp.sum(o.astype(jnp.float32)) for o in mine(
        x, jnp.cos(angle), jnp.sin(angle))))(qkv)
    gu = jax.random.normal(jax.random.key(5), (256, 4096), jnp.float32).astype(jnp.bfloat16)
    jax.grad(lambda x: jnp.sum(swiglu_packed(x, interpret=True).astype(jnp.float32)))(gu)
    assert [name for name, _ in compiled] == ["qkv_rotary_fwd", "qkv_rotary_bwd",
                                              "swiglu_packed_fwd", "swiglu_packed_bwd"]
    for name, binary in compiled:
        assert binary.cubin[:4] == b"\x7fELF" and 0 < binary.registers <= 255, name


@pytest.mark.gpu
def test_compiled_packed_kernels_match_jnp():
    """On the GPU: both packed kernels compiled, bfloat16 at the step's shapes (12 + 2 * 4
    heads of 64, hidden 2048), forward and gradients against the jnp definitions."""
    keys = jax.random.split(jax.random.key(6), 4)
    qkv = jax.random.normal(keys[0], (2, 256, 20, 64), jnp.float32).astype(jnp.bfloat16)
    angle = jax.random.uniform(keys[1], (256, 32), jnp.float32, 0, 6.3)
    cos, sin = jnp.cos(angle), jnp.sin(angle)
    mine = functools.partial(qkv_rotary, heads=12, kv_heads=4, interpret=False)
    upcast = qkv.astype(jnp.float32)
    for got, want in zip(jax.jit(mine)(qkv, cos, sin), _reference(upcast, cos, sin, 12, 4)):
        ref.assert_close(got, want.astype(jnp.bfloat16), jnp.bfloat16)

    def loss(f):
        return lambda x: sum(jnp.sum(o.astype(jnp.float32) ** 2) for o in f(x))

    got = jax.jit(jax.grad(loss(lambda x: mine(x, cos, sin))))(qkv)
    want = jax.grad(loss(lambda x: _reference(x, cos, sin, 12, 4)))(upcast)
    ref.assert_close(got, want.astype(jnp.bfloat16), jnp.bfloat16, ref.GRAD_TOLERANCE)

    gu = jax.random.normal(keys[2], (512, 4096), jnp.float32).astype(jnp.bfloat16)

    def swiglu(x):
        return jax.nn.silu(x[:, :2048]) * x[:, 2048:]

    packed = functools.partial(swiglu_packed, interpret=False)
    ref.assert_close(jax.jit(packed)(gu), swiglu(gu.astype(jnp.float32)).astype(jnp.bfloat16),
                     jnp.bfloat16)
    got = jax.jit(jax.grad(lambda x: jnp.sum(packed(x).astype(jnp.float32) ** 2)))(gu)
    want = jax.grad(lambda x: jnp.sum(swiglu(x) ** 2))(gu.astype(jnp.float32))
    ref.assert_close(got, want.astype(jnp.bfloat16), jnp.bfloat16, ref.GRAD_TOLERANCE)


@pytest.mark.parametrize("shape", [(4, 7), (4, 2, 8)])
def test_packed_swiglu_refuses_an_array_that_is_not_gate_beside_up(shape):
    import jtile

    with pytest.raises(jtile.JtileError, match=r"swiglu_packed takes \(rows, 2 \* hidden\)"):
        swiglu_packed(jnp.ones(shape, jnp.float32), interpret=True)
