"""Inputs of every op, as (op, reference, args, differentiable argnums), from fixed seeds."""

from __future__ import annotations

import zlib

import jax
import jax.numpy as jnp

import jtile.ops as ops
from tests.ops import references as ref


def keys(name: str, count: int):
    return jax.random.split(jax.random.key(zlib.crc32(name.encode())), count)


def normal(key, shape, dtype, scale=1.0, shift=0.0):
    return (jax.random.normal(key, shape, jnp.float32) * scale + shift).astype(dtype)


def make(name: str, dtype, lead=(3, 5), n=96):
    """`(jtile op, jnp reference, args, argnums to differentiate)` for op `name`."""
    k = keys(f"{name}-{jnp.dtype(dtype).name}-{lead}-{n}", 6)
    x = normal(k[0], lead + (n,), dtype, 2.0, 0.5)
    if name == "rms_norm":
        return ops.rms_norm, ref.rms_norm, (x, normal(k[1], (n,), dtype)), (0, 1)
    if name == "rms_norm_residual":
        fn = lambda x, r, w, **kw: ops.rms_norm(x, w, residual=r, **kw)  # noqa: E731
        return fn, ref.rms_norm_residual, (x, normal(k[2], x.shape, dtype),
                                           normal(k[1], (n,), dtype)), (0, 1, 2)
    if name == "layer_norm":
        return ops.layer_norm, ref.layer_norm, (x, normal(k[1], (n,), dtype),
                                                normal(k[2], (n,), dtype)), (0, 1, 2)
    if name == "softmax":
        return ops.softmax, ref.softmax, (x,), (0,)
    if name == "cross_entropy":
        labels = jax.random.randint(k[3], lead, 0, n)
        return ops.cross_entropy, ref.cross_entropy, (x, labels), (0,)
    if name == "swiglu":
        return ops.swiglu, ref.swiglu, (x, normal(k[1], x.shape, dtype)), (0, 1)
    if name == "rotary":
        b, s = lead
        x = normal(k[0], (b, s, 4, n), dtype)
        angle = jax.random.uniform(k[4], (s, n // 2), jnp.float32, 0, 6.3)
        return ops.rotary, ref.rotary, (x, jnp.cos(angle), jnp.sin(angle)), (0, 1, 2)
    raise KeyError(name)


NAMES = ("rms_norm", "rms_norm_residual", "layer_norm", "softmax", "cross_entropy", "swiglu",
         "rotary")
