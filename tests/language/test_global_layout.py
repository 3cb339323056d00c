"""`T.annotate_layout` on a global buffer: its array holds the elements in the order of the
index map, as in TileLang (a flash-attention backward accumulates dQ in the order of its MMA
fragments; the kernel that reads dQ back annotates the same map)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jtile
import jtile.language as T
from jtile.errors import JtileError
from tests.language.kernel_runs import run_both_ways

L, D = 32, 16


def fragment_order(l, d):
    return [l // 8, d // 8, d % 2, 4 * (l % 8) + (d % 8) // 2]


def _positions():
    """numpy: the array position of each logical element under fragment_order."""
    l, d = np.meshgrid(np.arange(L), np.arange(D), indexing="ij")
    coords = fragment_order(l, d)
    return ((coords[0] * (D // 8) + coords[1]) * 2 + coords[2]) * 32 + coords[3]


def _physical(logical):
    """numpy: the array that holds `logical` in fragment_order."""
    out = np.empty(L * D, logical.dtype)
    out[_positions().reshape(-1)] = logical.reshape(-1)
    return out.reshape(L, D)


def accumulate(X: T.Tensor((L, D), "float32"), dQ: T.Tensor((L, D), "float32")):
    with T.Kernel(2, threads=128) as bx:
        T.annotate_layout({dQ: T.Layout(dQ.shape, fragment_order)})
        for i, j in T.Parallel(L // 2, D):
            T.atomic_add(dQ[bx * (L // 2) + i, j], X[bx * (L // 2) + i, j] * 2)


def read_back(dQ, Out):
    with T.Kernel(1, threads=128):
        T.annotate_layout({dQ: T.Layout(dQ.shape, fragment_order)})
        tile = T.alloc_shared((L, D), "float32")
        T.copy(dQ, tile)
        T.copy(tile, Out)


def test_an_accumulator_in_fragment_order_round_trips():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((L, D)).astype(np.float32)
    start = rng.standard_normal((L, D)).astype(np.float32)    # the array, in its layout
    spec = jax.ShapeDtypeStruct((L, D), jnp.float32)
    (dq,), _ = run_both_ways(accumulate, [x, start], None, input_output_aliases={1: 0},
                             rtol=1e-6, atol=1e-6)
    logical_start = start.reshape(-1)[_positions()]
    # What TileLang's array holds: start + 2x, each element at its mapped position.
    expected = _physical(x * 2 + logical_start)
    np.testing.assert_allclose(dq, expected, rtol=1e-6, atol=1e-6)
    (out,), _ = run_both_ways(read_back, [dq], spec)
    np.testing.assert_allclose(out, x * 2 + logical_start, rtol=1e-6, atol=1e-6)


def test_the_layout_is_checked_when_traced():
    def kernel(X, O, *, layout):
        with T.Kernel(1, threads=128):
            T.annotate_layout({X: layout(X)})
            T.copy(X, O)

    spec = jax.ShapeDtypeStruct((L, D), jnp.float32)
    x = np.zeros((L, D), np.float32) + 1
    cases = [
        (lambda X: T.Layout(X.shape, lambda l, d: [l // 2, d]), "span \\[16, 16\\]"),
        (lambda X: T.Layout(X.shape, lambda l, d: [d % 4, l, (d // 8) * 2 + d % 2]),
         "sends two elements to one position"),
        (lambda X: T.Layout(X.shape, lambda l, d: [l * d]), "must be a bijection"),
        (lambda X: T.make_swizzled_layout(X), "swizzled layouts describe shared-memory tiles"),
    ]
    for layout, rule in cases:
        call = jtile.pallas_like(lambda X, O, layout=layout: kernel(X, O, layout=layout),
                                 out_shape=spec, interpret=True)
        with pytest.raises(JtileError, match=rule):
            call(x)


def test_under_jit_and_vmap():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, L, D)).astype(np.float32)
    start = rng.standard_normal((3, L, D)).astype(np.float32)
    call = jtile.pallas_like(accumulate, input_output_aliases={1: 0}, interpret=True)
    got = np.asarray(jax.jit(jax.vmap(call))(x, start))
    for b in range(3):
        expected = _physical(x[b] * 2 + start[b].reshape(-1)[_positions()])
        np.testing.assert_allclose(got[b], expected, rtol=1e-6, atol=1e-6)
