"""A T.Parallel loop shorter than the fragment it touches, along extents that are not powers
of 2 (`T.Parallel(8, 3)` over an (8, 4) fragment): interpret mode ran it, compiling refused it
("no layout puts the elements each iteration touches in one thread"). It now runs on the
fragment's layout, the iterations past its extents skipped, in both modes. Interpret mode,
compiled for sm_80 and sm_90a, and on a GPU compiled against interpret mode."""

import jax
import jax.numpy as jnp
import numpy as np

import jtile.language as T
from tests.language.kernel_runs import run_both_ways


def partial_columns(X, O, R):
    rows, cols = X.shape
    with T.Kernel(1, threads=128):
        x = T.alloc_fragment((8, 64), "float32")
        total = T.alloc_fragment((8,), "float32")
        T.copy(X, x)
        # Three of the eight rows and 48 of the 64 columns are scaled in place; the rest keep
        # the loaded values.
        for i, j in T.Parallel(3, 48):
            x[i, j] = x[i, j] * 3.0 - 1.0
        for i, j in T.Parallel(8, 5):
            O[i, j] = x[i, j] + x[i, j]
        T.reduce_sum(x, total, dim=1)
        T.copy(total, R)


def test_a_loop_shorter_than_its_fragment_runs_in_both_modes():
    x = np.random.default_rng(3).standard_normal((8, 64)).astype(np.float32)
    outs = (jax.ShapeDtypeStruct((8, 5), jnp.float32), jax.ShapeDtypeStruct((8,), jnp.float32))
    (o, r), cuda = run_both_ways(partial_columns, (x,), outs, rtol=1e-6, atol=1e-5)
    scaled = x.copy()
    scaled[:3, :48] = x[:3, :48] * 3.0 - 1.0
    np.testing.assert_allclose(o, 2 * scaled[:, :5], rtol=1e-6)
    np.testing.assert_allclose(r, scaled.sum(axis=1), rtol=1e-5, atol=1e-5)
    assert "if (((i < 3) && (j < 48)))" in cuda  # the padded loop skips the rest


def strided_over_a_fragment_every_thread_holds(X, Init, O):
    """O (aliased to Init) += mask[0] + ... + mask[4], one atomic add per iteration."""
    with T.Kernel(1, threads=64):
        mask = T.alloc_fragment((8,), "float32")
        T.copy(X, mask)
        if mask[0] > 100.0:  # named outside T.Parallel: every thread holds all of mask
            mask[1] = 0.0
        for i in T.Parallel(5):
            T.atomic_add(O[0], mask[i])


def test_a_short_loop_over_a_fragment_every_thread_holds_runs_each_iteration_once():
    """Not padded onto that fragment's layout (which every thread runs whole): the atomic
    adds happen once per iteration, as before."""
    x = np.arange(1, 9, dtype=np.float32)
    init = np.full((1,), 0.5, np.float32)
    (o,), _ = run_both_ways(strided_over_a_fragment_every_thread_holds, (x, init),
                            jax.ShapeDtypeStruct((1,), jnp.float32),
                            input_output_aliases={1: 0})
    np.testing.assert_allclose(o, [0.5 + x[:5].sum()])
