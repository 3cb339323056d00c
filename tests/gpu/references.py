"""float64 references the GPU tests of Hopper kernels share."""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np


def f64(x) -> np.ndarray:
    """`x` (any JAX dtype, float8 included) as a float64 NumPy array."""
    return np.asarray(jnp.asarray(x, jnp.float32), np.float64)


def attention_f64(q, k, v, causal: bool) -> np.ndarray:
    """softmax(Q K^T / sqrt(d)) V in float64, (B, S, H, D) layout; K and V may have fewer
    heads than Q (grouped-query attention), each serving H / KVH query heads in turn."""
    q, k, v = f64(q), f64(k), f64(v)
    groups = q.shape[2] // k.shape[2]
    k, v = np.repeat(k, groups, axis=2), np.repeat(v, groups, axis=2)
    s = np.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(q.shape[-1])
    if causal:
        n = q.shape[1]
        s = np.where(np.tril(np.ones((n, n), bool)), s, -np.inf)
    p = np.exp(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    return np.einsum("bhqk,bkhd->bqhd", p, v)


def assert_flash_attention_matches_float64(q, k, v, causal: bool, *, interpret=False,
                                           **tiles) -> None:
    """examples/flash_attention.py on `tiles` (block_m, block_n, stages, threads) against
    `attention_f64`, element-wise with the 16-bit dtype's tolerance."""
    from examples import flash_attention as fa

    f = functools.partial(fa.flash_attention, causal=causal, interpret=interpret, **tiles)
    tol = 2e-2 if q.dtype == jnp.bfloat16 else 4e-3
    np.testing.assert_allclose(f64(jax.jit(f)(q, k, v)), attention_f64(q, k, v, causal),
                               rtol=tol, atol=tol)
