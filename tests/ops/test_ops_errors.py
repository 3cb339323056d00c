"""Bad inputs to jtile.ops raise JtileError naming the op and the rule, before any kernel runs."""

from __future__ import annotations

import jax.numpy as jnp
import pytest

import jtile
import jtile.ops as ops

X = jnp.ones((4, 64), jnp.float32)
W = jnp.ones((64,), jnp.float32)


@pytest.mark.parametrize("call, words", [
    (lambda: ops.rms_norm(X.astype(jnp.int32), W), ("rms_norm", "x is int32[4, 64]")),
    (lambda: ops.rms_norm(X, jnp.ones((32,))), ("rms_norm", "w is float32[32]", "[64]")),
    (lambda: ops.rms_norm(X, W, residual=jnp.ones((4, 32))), ("rms_norm", "residual")),
    (lambda: ops.rms_norm(X, W, residual=X.astype(jnp.bfloat16)), ("share one dtype",)),
    (lambda: ops.rms_norm(X, W, eps=jnp.float32(1e-6) + X[0, 0]), ("eps", "static")),
    (lambda: ops.rms_norm(jnp.ones((4, 20000)), jnp.ones((20000,))), ("16384",)),
    (lambda: ops.layer_norm(X, W, jnp.ones((63,))), ("layer_norm", "b is float32[63]")),
    (lambda: ops.softmax(X, axis=2), ("softmax", "axis=2", "out of range")),
    (lambda: ops.softmax(X, axis=(0, 1)), ("softmax", "one static Python int")),
    (lambda: ops.cross_entropy(X, jnp.zeros((4,), jnp.float32)), ("cross_entropy", "integer")),
    (lambda: ops.cross_entropy(X, jnp.zeros((5,), jnp.int32)), ("labels is int32[5]", "[4]")),
    (lambda: ops.swiglu(X, jnp.ones((4, 63))), ("swiglu", "up is float32[4, 63]")),
    (lambda: ops.swiglu(X, X.astype(jnp.bfloat16)), ("swiglu", "share one dtype")),
    (lambda: ops.rotary(X, W, W), ("rotary", "(batch, seq, heads, dim)")),
    (lambda: ops.rotary(jnp.ones((1, 2, 3, 5)), jnp.ones((2, 2)), jnp.ones((2, 2))),
     ("rotary", "must be even")),
    (lambda: ops.rotary(jnp.ones((1, 2, 3, 8)), jnp.ones((3, 4)), jnp.ones((2, 4))),
     ("rotary", "cos is float32[3, 4]", "(seq, dim // 2)")),
    (lambda: ops.softmax(jnp.ones((0, 8))), ("softmax", "no elements")),
])
def test_bad_inputs_are_refused(call, words):
    with pytest.raises(jtile.JtileError) as info:
        call()
    message = str(info.value)
    assert message.startswith("jtile.ops.")
    for word in words:
        assert word in message, message
