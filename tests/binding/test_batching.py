"""vmap of a jtile kernel folds into the launch: one `jtile_call` with the batch, checked in
interpret mode against a Python loop of unbatched calls."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jtile
import jtile.language as T
from jtile.binding.primitive import jtile_call_p

N = 256
BLOCK = 128
B = 3


@pytest.fixture(autouse=True)
def _no_global_switches(monkeypatch):
    for name in ("JTILE_INTERPRET", "JTILE_DEBUG", "JTILE_TARGET"):
        monkeypatch.delenv(name, raising=False)


def axpy_kernel(X, Y, O):
    (n,) = X.shape
    with T.Kernel(n // BLOCK, threads=BLOCK) as bx:
        for i in T.Parallel(BLOCK):
            O[bx * BLOCK + i] = 2.0 * X[bx * BLOCK + i] + Y[bx * BLOCK + i]


axpy = jtile.pallas_like(axpy_kernel, out_shape=jax.ShapeDtypeStruct((N,), jnp.float32),
                         interpret=True)


def _jtile_calls(fn, *args):
    """The jtile_call equations of fn's jaxpr (looking inside nested jaxprs too)."""
    found = []

    def visit(jaxpr):
        for eqn in jaxpr.eqns:
            if eqn.primitive is jtile_call_p:
                found.append(eqn)
            for param in eqn.params.values():
                inner = getattr(param, "jaxpr", None)
                if inner is not None:
                    visit(getattr(inner, "jaxpr", inner))

    visit(jax.make_jaxpr(fn)(*args).jaxpr)
    return found


def _data(*shape, seed=0):
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float32)


def test_vmap_binds_one_call_with_the_batch():
    xs, ys = _data(B, N), _data(B, N, seed=1)
    (eqn,) = _jtile_calls(jax.vmap(axpy), xs, ys)
    call = eqn.params["call"]
    assert call.batch == B and call.batched == (True, True)
    assert eqn.outvars[0].aval.shape == (B, N)

    expected = np.stack([axpy(xs[b], ys[b]) for b in range(B)])
    np.testing.assert_allclose(jax.vmap(axpy)(xs, ys), expected, rtol=1e-6)
    np.testing.assert_allclose(jax.jit(jax.vmap(axpy))(xs, ys), expected, rtol=1e-6)


def test_vmap_with_an_unbatched_operand_keeps_it_unbatched():
    xs, y = _data(B, N), _data(N, seed=1)
    f = jax.vmap(axpy, in_axes=(0, None))
    (eqn,) = _jtile_calls(f, xs, y)
    assert eqn.params["call"].batched == (True, False)
    assert eqn.invars[1].aval.shape == (N,)  # not broadcast
    expected = np.stack([axpy(xs[b], y) for b in range(B)])
    np.testing.assert_allclose(f(xs, y), expected, rtol=1e-6)


def test_vmap_over_a_non_leading_axis():
    xs, ys = _data(N, B), _data(B, N, seed=1)
    f = jax.vmap(axpy, in_axes=(1, 0), out_axes=1)
    expected = np.stack([axpy(xs[:, b], ys[b]) for b in range(B)], axis=1)
    np.testing.assert_allclose(f(xs, ys), expected, rtol=1e-6)
    (eqn,) = _jtile_calls(f, xs, ys)
    assert eqn.params["call"].batch == B


def test_nested_vmap_folds_into_one_call():
    outer = 2
    xs, ys = _data(outer, B, N), _data(outer, B, N, seed=1)
    f = jax.vmap(jax.vmap(axpy))
    (eqn,) = _jtile_calls(f, xs, ys)
    assert eqn.params["call"].batch == outer * B
    expected = np.stack([[axpy(xs[o, b], ys[o, b]) for b in range(B)] for o in range(outer)])
    np.testing.assert_allclose(f(xs, ys), expected, rtol=1e-6)


def test_nested_vmap_with_operands_batched_at_different_levels():
    outer = 2
    xs, ys = _data(B, N), _data(outer, N, seed=1)
    # Inner vmap over x only, outer vmap over y only.
    f = jax.vmap(jax.vmap(axpy, in_axes=(0, None)), in_axes=(None, 0))
    (eqn,) = _jtile_calls(f, xs, ys)
    assert eqn.params["call"].batch == outer * B
    expected = np.stack([[axpy(xs[b], ys[o]) for b in range(B)] for o in range(outer)])
    result = f(xs, ys)
    assert result.shape == (outer, B, N)
    np.testing.assert_allclose(result, expected, rtol=1e-6)


def test_vmap_of_t_empty_tuple_outputs():
    def sum_diff_kernel(X, Y):
        (n,) = X.shape
        S = T.empty((n,), "float32")
        D = T.empty((n,), "float32")
        with T.Kernel(n // BLOCK, threads=BLOCK) as bx:
            for i in T.Parallel(BLOCK):
                S[bx * BLOCK + i] = X[bx * BLOCK + i] + Y[bx * BLOCK + i]
                D[bx * BLOCK + i] = X[bx * BLOCK + i] - Y[bx * BLOCK + i]
        return S, D

    f = jtile.pallas_like(sum_diff_kernel, interpret=True)
    xs, y = _data(B, N), _data(N, seed=1)
    s, d = jax.vmap(f, in_axes=(0, None))(xs, y)
    np.testing.assert_allclose(s, xs + y, rtol=1e-6)
    np.testing.assert_allclose(d, xs - y, rtol=1e-6)


def test_vmap_of_the_grid_form_reads_its_own_block_index():
    def rowwise_kernel(X, O):
        bx = T.program_id(0)
        for i in T.Parallel(BLOCK):
            O[bx * BLOCK + i] = X[bx * BLOCK + i] + bx

    f = jtile.pallas_like(rowwise_kernel, out_shape=jax.ShapeDtypeStruct((N,), jnp.float32),
                          grid=(N // BLOCK,), interpret=True)
    xs = _data(B, N)
    expected = np.stack([f(xs[b]) for b in range(B)])
    np.testing.assert_allclose(jax.vmap(f)(xs), expected, rtol=1e-6)


def test_vmap_with_an_unbatched_aliased_input_broadcasts_it():
    def accumulate_kernel(X, Acc, O):
        (n,) = X.shape
        with T.Kernel(n // BLOCK, threads=BLOCK) as bx:
            for i in T.Parallel(BLOCK):
                O[bx * BLOCK + i] = O[bx * BLOCK + i] + X[bx * BLOCK + i]

    acc = jtile.pallas_like(accumulate_kernel,
                            out_shape=jax.ShapeDtypeStruct((N,), jnp.float32),
                            input_output_aliases={1: 0}, interpret=True)
    xs, a = _data(B, N), _data(N, seed=1)
    f = jax.vmap(acc, in_axes=(0, None))
    (eqn,) = _jtile_calls(f, xs, a)
    # The output is batched, so the buffer it aliases must be too.
    assert eqn.params["call"].batched == (True, True)
    np.testing.assert_allclose(f(xs, a), xs + a, rtol=1e-6)


def test_vmap_inside_jit_and_grad_composes():
    @jax.custom_vjp
    def f(x, y):
        return axpy(x, y)

    f.defvjp(lambda x, y: (axpy(x, y), None),
             lambda _, g: (2.0 * g, g))

    def loss(x, y):
        return jnp.sum(f(x, y) ** 2)

    xs, ys = _data(B, N), _data(B, N, seed=1)
    grads = jax.jit(jax.vmap(jax.grad(loss)))(xs, ys)
    np.testing.assert_allclose(grads, 2.0 * 2.0 * (2.0 * xs + ys), rtol=1e-5)


@pytest.mark.parametrize("in_axes", [(0, 0), (0, None), (None, 0)])
def test_a_batch_of_one(in_axes):
    # A folded batch of 1 means "unbatched" to the call: vmap over an axis of size 1 once
    # returned outputs without their batch axis ("operand 0 is float32[1, 256] but the kernel
    # expects float32[256]").
    x = jnp.arange(N, dtype=jnp.float32)
    y = jnp.ones(N, jnp.float32)
    xs = x[None] if in_axes[0] == 0 else x
    ys = y[None] if in_axes[1] == 0 else y
    out = jax.vmap(axpy, in_axes=in_axes)(xs, ys)
    assert out.shape == (1, N)
    np.testing.assert_array_equal(np.asarray(out[0]), np.asarray(2 * x + y))
