"""Compiled jtile.ops on the GPU against their jax.numpy definitions, forward and backward."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

from tests.ops import references as ref
from tests.ops.cases import NAMES, make

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize("n", [96, 1024, 4096])
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
