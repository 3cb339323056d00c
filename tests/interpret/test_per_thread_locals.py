"""Per-thread locals in interpret mode: T.alloc_local / T.alloc_var written by per-thread code
hold one copy per thread, as in the compiled code, so SIMT-style kernels (TileLang's gemv and
hadamard style) run in interpret mode with the values the GPU computes."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jtile
import jtile.language as T
from jtile.errors import JtileError
from jtile.trace.trace_kernel import trace
from tests.interpret.interpret_helpers import run
from tests.interpret.per_thread_cases import CASES, launcher, random_inputs

S = jax.ShapeDtypeStruct


def _tuple(x):
    return tuple(x) if isinstance(x, (tuple, list)) else (x,)


def _check(name, outputs, expected):
    for got, want in zip(_tuple(outputs), _tuple(expected)):
        got = np.asarray(got)
        assert not np.isnan(got.astype(np.float64)).any(), f"{name}: poisoned memory was read"
        if np.issubdtype(got.dtype, np.integer):
            np.testing.assert_array_equal(got, want)
        else:
            scale = max(float(np.max(np.abs(want))), 1.0)
            np.testing.assert_allclose(got.astype(np.float64), want, rtol=1e-5,
                                       atol=1e-5 * scale)


@pytest.mark.parametrize("name", sorted(CASES))
def test_simt_kernel_matches_numpy_in_interpret_mode_and_compiles_for_sm_80(name):
    args = random_inputs(name, seed=len(name))
    outputs = launcher(name, interpret=True)(*[jnp.asarray(a) for a in args])
    _check(name, outputs, CASES[name][3](*args))
    # The same program is one the compiler takes (the GPU suite checks its values).
    specs = CASES[name][1]
    assert launcher(name, interpret=False).lower(*specs, target="sm_80").compile() is not None


def test_jit_and_vmap_of_per_thread_locals():
    name = "gemv_tree"
    f = launcher(name, interpret=True)
    a, x = random_inputs(name, seed=3)
    batch = np.stack([a, a[::-1]]), np.stack([x, -x])
    out = np.asarray(jax.jit(jax.vmap(f))(*[jnp.asarray(b) for b in batch]))
    for i in range(2):
        _check(name, out[i], CASES[name][3](batch[0][i], batch[1][i]))


def test_only_private_buffers_written_per_thread_get_one_copy_per_thread():
    """Block-wide code that writes a local (a scale read by T.Parallel) keeps one copy per
    block; the accumulator the per-thread code writes gets one per thread."""
    from jtile.interpret.threads import per_thread_buffers

    kernel_fn, specs, out, _ = CASES["center_rows"]
    kernel = trace(kernel_fn, [(s.shape, s.dtype) for s in specs], [(out.shape, out.dtype)])
    names = {b.name for b in kernel.allocations if id(b) in per_thread_buffers(kernel)}
    assert names == {"acc"}


def test_values_flow_between_private_buffers_per_thread():
    """A local copied from a per-thread local, and a var counting up from the thread index,
    are per-thread too (the fixed point), in whatever order the statements come."""
    def kernel(X, O):
        with T.Kernel(1, threads=64):
            tx = T.get_thread_binding()
            first = T.alloc_local((2,), "float32")
            second = T.alloc_local((2,), "float32")
            count = T.alloc_var("int32", tx // 8)
            for k in T.serial(3):
                second[1] = first[0] * 2.0 + T.Cast("float32", count)
                first[0] = X[tx] + k
                count = count + 1
            O[tx] = second[1]

    x = np.random.default_rng(5).standard_normal(64).astype(np.float32)
    (out,) = run(kernel, [x], [((64,), "float32")])
    expected = (x + 1.0) * 2.0 + (np.arange(64) // 8 + 2)
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-6)


def test_view_of_a_per_thread_local_reads_each_threads_bytes():
    def kernel(X, O):
        with T.Kernel(1, threads=32):
            tx = T.get_thread_binding()
            words = T.alloc_local((2,), "int32")
            halves = T.view(words, (4,), "int16")
            words[0] = X[tx]
            words[1] = X[tx] * 3
            for k in T.serial(4):
                O[tx, k] = halves[k]

    x = np.random.default_rng(6).integers(-2**20, 2**20, 32).astype(np.int32)
    (out,) = run(kernel, [x], [((32, 4), "int16")])
    expected = np.stack([x, x * 3], axis=1).astype(np.int32).view(np.int16).reshape(32, 4)
    np.testing.assert_array_equal(out, expected)


def test_t_parallel_reading_a_per_thread_local_is_refused():
    def kernel(X, O):
        with T.Kernel(1, threads=32):
            tx = T.get_thread_binding()
            mine = T.alloc_local((1,), "float32")
            mine[0] = X[tx]
            for i in T.Parallel(32):
                O[i] = mine[0]

    with pytest.raises(JtileError, match=r"kernel \(test_per_thread_locals.py:\d+\): "
                       r"test_per_thread_locals.py:\d+: this statement inside T.Parallel reads "
                       r"mine \(local float32 \(1,\)\), which holds a different value in each "
                       r"thread"):
        run(kernel, [np.zeros(32, np.float32)], [((32,), "float32")])


def test_block_wide_tile_operation_in_per_thread_code_is_still_refused():
    def kernel(X, O):
        with T.Kernel(1, threads=32):
            tx = T.get_thread_binding()
            tile = T.alloc_shared((32,), "float32")
            count = T.alloc_var("int32", tx)
            if count < 4:
                T.copy(X, tile)
            O[tx] = tile[tx]

    with pytest.raises(JtileError, match=r"T.copy in per-thread code"):
        run(kernel, [np.zeros(32, np.float32)], [((32,), "float32")])


def test_tile_operation_under_a_var_that_starts_from_the_thread_index_is_refused_both_ways():
    """The compiler's divergence rule sees a var that starts from the thread index: a tile
    operation under a condition on it is refused compiled, and before interpret mode runs."""
    def kernel(X, O):
        with T.Kernel(1, threads=32):
            tx = T.get_thread_binding()
            tile = T.alloc_shared((32,), "float32")
            count = T.alloc_var("int32", tx)
            T.fill(tile, 0.0)
            if count < 4:
                T.copy(X, tile)
            O[tx] = tile[tx]

    f = jtile.pallas_like(kernel, out_shape=S((32,), jnp.float32), interpret=True)
    with pytest.raises(JtileError, match=r"T.copy under the condition of T.If"):
        f(jnp.zeros(32, jnp.float32))
    compiled = jtile.pallas_like(kernel, out_shape=S((32,), jnp.float32))
    with pytest.raises(JtileError, match=r"T.copy under the condition of T.If"):
        compiled.lower(S((32,), jnp.float32), target="sm_80")
