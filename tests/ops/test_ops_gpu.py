"""Compiled jtile.ops on the GPU against their jax.numpy definitions, forward and backward."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

from tests.ops import references as ref
from tests.ops.cases import NAMES, make

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize("n", [96, 1024, 4096, 5120])
@pytest.mark.parametrize("name", NAMES)
def test_compiled_matches_jnp(name, n, dtype):
    fn, reference, args, argnums = make(name, dtype, lead=(8, 33), n=n)
    out = jax.jit(lambda *a: fn(*a, interpret=False))(*args)
    expected = reference(*args)
    for o, e in zip(jax.tree_util.tree_leaves(out), jax.tree_util.tree_leaves(expected)):
        assert o.dtype == e.dtype
        ref.assert_close(o, e, dtype)

    def loss(f):
        return lambda *a: sum(jnp.sum(o.astype(jnp.float32) ** 2)
                              for o in jax.tree_util.tree_leaves(f(*a)))

    up = lambda *a: reference(*(x.astype(jnp.float32) if x.dtype == dtype else x  # noqa: E731
                                for x in a))
    grads = jax.jit(jax.grad(loss(lambda *a: fn(*a, interpret=False)), argnums))(*args)
    for g, r in zip(grads, jax.grad(loss(up), argnums)(*args)):
        ref.assert_close(g, r, dtype, ref.GRAD_TOLERANCE)


def test_compiled_cross_entropy_over_a_large_vocabulary():
    key = jax.random.key(3)
    logits = jax.random.normal(key, (64, 50257), jnp.float32).astype(jnp.bfloat16) * 4
    labels = jax.random.randint(jax.random.key(4), (64,), 0, 50257)
    import jtile.ops as ops

    ref.assert_close(ops.cross_entropy(logits, labels, interpret=False),
                     ref.cross_entropy(logits, labels), jnp.float32, ref.GRAD_TOLERANCE)
    # Rows of 50257 bfloat16 start at odd addresses: element-wise moves, coalesced.
    cot = jax.random.normal(jax.random.key(5), (64,), jnp.float32)
    grad = jax.grad(lambda x: jnp.sum(ops.cross_entropy(x, labels, interpret=False) * cot))
    want = jax.grad(lambda x: jnp.sum(ref.cross_entropy(x.astype(jnp.float32), labels) * cot))
    ref.assert_close(jax.jit(grad)(logits), want(logits), jnp.bfloat16, ref.GRAD_TOLERANCE)


@pytest.mark.parametrize("name", ["rms_norm", "rms_norm_residual", "layer_norm"])
def test_compiled_norms_over_rows_too_wide_to_stage(name):
    # 16384 float32 columns: the backward streams rows straight into registers.
    fn, reference, args, argnums = make(name, jnp.float32, lead=(40,), n=16384)

    def loss(f):
        return lambda *a: sum(jnp.sum(o.astype(jnp.float32) ** 2)
                              for o in jax.tree_util.tree_leaves(f(*a)))

    grads = jax.jit(jax.grad(loss(lambda *a: fn(*a, interpret=False)), argnums))(*args)
    for g, r in zip(grads, jax.grad(loss(reference), argnums)(*args)):
        ref.assert_close(g, r, jnp.float32, ref.GRAD_TOLERANCE)
