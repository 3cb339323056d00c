"""The `jax.numpy` definitions the ops are tested against, and tolerances by dtype."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

# (rtol, atol) for a result rounded once to the dtype after float32 arithmetic.
TOLERANCE = {"float32": (1e-5, 1e-5), "bfloat16": (2e-2, 2e-2), "float16": (5e-3, 5e-3)}
# Gradients sum over a row or the batch before rounding: a little looser.
GRAD_TOLERANCE = {"float32": (1e-4, 1e-4), "bfloat16": (5e-2, 5e-2), "float16": (1e-2, 1e-2)}


def rms_norm(x, w, eps=1e-6):
    x32 = x.astype(jnp.float32)
    y = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, -1, keepdims=True) + eps) * w.astype(jnp.float32)
    return y.astype(x.dtype)


def rms_norm_residual(x, residual, w, eps=1e-6):
    s = x + residual
    return rms_norm(s, w, eps), s


def layer_norm(x, w, b, eps=1e-5):
    x32 = x.astype(jnp.float32)
    mean = x32.mean(-1, keepdims=True)
    var = ((x32 - mean) ** 2).mean(-1, keepdims=True)
    return ((x32 - mean) * jax.lax.rsqrt(var + eps) * w.astype(jnp.float32)
            + b.astype(jnp.float32)).astype(x.dtype)


def softmax(x, axis=-1):
    return jax.nn.softmax(x.astype(jnp.float32), axis=axis).astype(x.dtype)


def cross_entropy(logits, labels):
    x = logits.astype(jnp.float32)
    picked = jnp.take_along_axis(x, labels[..., None].astype(jnp.int32), -1)[..., 0]
    return jax.nn.logsumexp(x, -1) - picked


def swiglu(gate, up):
    g = gate.astype(jnp.float32)
    return (jax.nn.silu(g) * up.astype(jnp.float32)).astype(gate.dtype)


def rotary(x, cos, sin):
    half = x.shape[-1] // 2
    x32 = x.astype(jnp.float32)
    x1, x2 = x32[..., :half], x32[..., half:]
    c = cos.astype(jnp.float32)[None, :, None, :]
    s = sin.astype(jnp.float32)[None, :, None, :]
    return jnp.concatenate([x1 * c - x2 * s, x2 * c + x1 * s], -1).astype(x.dtype)


def assert_close(actual, expected, dtype, table=TOLERANCE):
    rtol, atol = table[np.dtype(dtype).name]
    scale = max(1.0, float(np.max(np.abs(np.asarray(expected, np.float32)))))
    np.testing.assert_allclose(np.asarray(actual, np.float32), np.asarray(expected, np.float32),
                               rtol=rtol, atol=atol * scale)
