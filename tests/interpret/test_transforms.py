"""Interpret mode under jax.jit and jax.vmap."""

import jax
import jax.numpy as jnp
import numpy as np

import jtile.language as T
from jtile.interpret import interpret
from jtile.ir.types import DType
from jtile.trace.trace_kernel import trace

from interpret_helpers import assert_close, random


def add_kernel(X, Y, O):
    (N,) = X.shape
    with T.Kernel(T.ceildiv(N, 128), threads=128) as bx:
        for i in T.Parallel(128):
            with T.If(bx * 128 + i < N):
                O[bx * 128 + i] = X[bx * 128 + i] + Y[bx * 128 + i]


def branchy_kernel(X, O):
    """Block-level T.If (lax.cond), a traced serial trip count and a local variable."""
    with T.Kernel(4) as bx:
        total = T.alloc_var("float32", 0.0)
        for k in T.serial(bx + 1):
            total[0] = total + X[bx, k]
        with T.If(X[bx, 0] > 0):
            O[bx] = total
        with T.Else():
            O[bx] = -total


def test_under_jit():
    add = trace(add_kernel, [((300,), DType.float32)] * 2, [((300,), DType.float32)])
    rng = np.random.default_rng(40)
    x, y = random(rng, (300,), "float32"), random(rng, (300,), "float32")
    out = jax.jit(lambda a, b: interpret(add, [a, b])[0])(x, y)
    assert_close(out, x + y, "float32")


def test_under_vmap():
    add = trace(add_kernel, [((300,), DType.float32)] * 2, [((300,), DType.float32)])
    rng = np.random.default_rng(41)
    x, y = random(rng, (5, 300), "float32"), random(rng, (5, 300), "float32")
    out = jax.vmap(lambda a, b: interpret(add, [a, b])[0])(x, y)
    assert_close(out, x + y, "float32")


def _branchy_reference(x):
    out = np.zeros(4, np.float64)
    for b in range(4):
        total = x[b, :b + 1].astype(np.float64).sum()
        out[b] = total if x[b, 0] > 0 else -total
    return out


def test_branches_and_loops_under_jit_of_vmap():
    kernel = trace(branchy_kernel, [((4, 4), DType.float32)], [((4,), DType.float32)])
    x = random(np.random.default_rng(42), (3, 4, 4), "float32")
    out = jax.jit(jax.vmap(lambda a: interpret(kernel, [a])[0]))(x)
    for batch in range(3):
        assert_close(out[batch], _branchy_reference(x[batch]), "float32")


def test_vmap_with_aliases():
    def scale(X, O):
        with T.Kernel(2) as bx:
            for i in T.Parallel(8):
                O[bx * 8 + i] = O[bx * 8 + i] * 2.0

    kernel = trace(scale, [((16,), DType.float32)], [((16,), DType.float32)])
    x = random(np.random.default_rng(43), (4, 16), "float32")
    out = jax.vmap(lambda a: interpret(kernel, [a], aliases={0: 0})[0])(jnp.asarray(x))
    assert_close(out, 2 * x, "float32")
