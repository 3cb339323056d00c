"""Compiled `jtile.ops.matmul` on the GPU at realistic sizes against float64, forward and
backward (the Hopper path on an H100/H200)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jtile.ops import matmul
from tests.gpu.compare import assert_close, seed_of
from tests.gpu.references import f64

pytestmark = pytest.mark.gpu


def _normal(name, shape, dtype):
    key = jax.random.key(seed_of(name))
    return jax.random.normal(key, shape, jnp.float32).astype(dtype)


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
@pytest.mark.parametrize("shape", [(4096, 4096, 4096), (1000, 1544, 712), (2, 300, 4096, 256)])
def test_forward_and_gradients_match_float64(dtype, shape):
    *lead, m, n, k = shape if len(shape) == 4 else (None,) + shape
    batch = tuple(x for x in lead if x)
    a = _normal(f"a{shape}{dtype}", batch + (m, k), dtype)
    b = _normal(f"b{shape}{dtype}", (k, n), dtype)
    g = _normal(f"g{shape}{dtype}", batch + (m, n), dtype)
    out = jax.jit(lambda a, b: matmul(a, b, interpret=False))(a, b)
    assert out.dtype == dtype
    assert_close(out, f64(a) @ f64(b), dtype, k=k, operand_scale=1.0, name="a @ b")
    da, db = jax.jit(jax.grad(lambda a, b: jnp.sum(matmul(a, b, interpret=False)
                                                   .astype(jnp.float32) * g.astype(jnp.float32)),
                              (0, 1)))(a, b)
    ga, a64 = f64(g).reshape(-1, n), f64(a).reshape(-1, k)
    assert_close(da.reshape(-1, k), ga @ f64(b).T, dtype, k=n, operand_scale=1.0, name="da")
    assert_close(db, a64.T @ ga, dtype, k=a64.shape[0], operand_scale=1.0, name="db")


@pytest.mark.parametrize("dtype", [jnp.float8_e4m3fn, jnp.float8_e5m2])
def test_float8_forward_matches_float64(dtype):
    a = _normal(f"fp8a{dtype}", (2048, 1024), dtype)
    b = _normal(f"fp8b{dtype}", (1024, 3072), dtype)
    out = jax.jit(lambda a, b: matmul(a, b, interpret=False))(a, b)
    assert out.dtype == jnp.bfloat16
    assert_close(out, f64(a) @ f64(b), jnp.bfloat16, k=1024, operand_scale=1.0, name="fp8")


def test_batched_b_matches_float64():
    a = _normal("ba", (4, 512, 768), jnp.bfloat16)
    b = _normal("bb", (4, 768, 640), jnp.bfloat16)
    out = jax.jit(lambda a, b: matmul(a, b, interpret=False))(a, b)
    assert_close(out, np.einsum("bmk,bkn->bmn", f64(a), f64(b)), jnp.bfloat16, k=768,
                 operand_scale=1.0, name="batched")
