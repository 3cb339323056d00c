"""`T.reshape` of a fragment (TileLang's DeepSeek-v3.2 indexer: a gemm's (N, Q*H) accumulator
read as (N, Q, H) and reduced over H): the same registers under another shape, in interpret
mode, compiled for sm_80 and sm_90a, and run on a GPU where one is present."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jtile
import jtile.language as T
from tests.language.kernel_runs import run_both_ways


def weighted_head_sums(K, Q, W, O, *, heads, threads):
    """O[n, q] = sum_h relu(K Q^T)[n, q * heads + h] * W[q, h], one block."""
    N, D = K.shape
    QH, _ = Q.shape
    q_count = QH // heads
    with T.Kernel(1, threads=threads):
        k_shared = T.alloc_shared((N, D), K.dtype)
        q_shared = T.alloc_shared((QH, D), Q.dtype)
        s = T.alloc_fragment((N, QH), "float32")
        s_heads = T.reshape(s, (N, q_count, heads))
        weights = T.alloc_fragment((q_count, heads), "float32")
        logits = T.alloc_fragment((N, q_count), "float32")
        T.copy(K, k_shared)
        T.copy(Q, q_shared)
        T.copy(W, weights)
        T.gemm(k_shared, q_shared, s, transpose_B=True, clear_accum=True)
        for n, q, h in T.Parallel(N, q_count, heads):
            s_heads[n, q, h] = T.max(s_heads[n, q, h], 0) * weights[q, h]
        T.reduce_sum(s_heads, logits, dim=-1)
        T.copy(logits, O)


@pytest.mark.parametrize("n, heads, q_count, threads", [(64, 16, 8, 128), (128, 8, 16, 256)])
def test_a_gemm_accumulator_reduced_over_its_heads(n, heads, q_count, threads):
    rng = np.random.default_rng(n + heads)
    k = rng.integers(-3, 4, (n, 64)).astype(np.float16)
    q = rng.integers(-3, 4, (q_count * heads, 64)).astype(np.float16)
    w = rng.integers(-2, 3, (q_count, heads)).astype(np.float32)
    kernel = functools.partial(weighted_head_sums, heads=heads, threads=threads)
    (out,), _ = run_both_ways(kernel, (k, q, w), jax.ShapeDtypeStruct((n, q_count), jnp.float32))
    scores = np.maximum(k.astype(np.float64) @ q.astype(np.float64).T, 0)
    want = (scores.reshape(n, q_count, heads) * w[None]).sum(-1)
    np.testing.assert_array_equal(out, want)


@pytest.mark.parametrize("shape, rule", [
    ((64, 96), r"a fragment is reshaped, not reinterpreted: .*every dimension a power of 2"),
    ((64, 32), r"same number of elements"),
])
def test_reshapes_that_would_move_elements_between_threads_are_refused(shape, rule):
    def bad(X, O):
        with T.Kernel(1, threads=128):
            f = T.alloc_fragment((64, 64), "float32")
            T.copy(X, f)
            v = T.reshape(f, shape)
            T.copy(f, O)

    launch = jtile.pallas_like(bad, out_shape=jax.ShapeDtypeStruct((64, 64), jnp.float32),
                               interpret=True)
    with pytest.raises(jtile.JtileError, match=rf"bad \(test_fragment_reshape.py:\d+\): .*{rule}"):
        launch(np.ones((64, 64), np.float32))


def test_every_register_of_every_thread_holds_the_same_element_under_the_reshape():
    """Layout.reshape keeps (thread, register) -> flat element: the compiled view indexes the
    fragment's own registers."""
    from jtile.passes.layout import WgmmaTiling, MmaTiling

    def flat(index, shape):
        out = 0
        for i, n in zip(index, shape):
            out = out * n + i
        return out

    layouts = [WgmmaTiling(64, 128, 1, 2).accumulator_layout(256),
               MmaTiling(128, 64, 2, 2).accumulator_layout(128)]
    for layout in layouts:
        m, n = layout.shape
        for shape in ((m, n // 8, 8), (m * n,), (m // 2, 2, n), (m, 2, n // 2)):
            view = layout.reshape(shape)
            threads = 1 << len(layout.thread_bits)
            for t in range(threads):
                for r in range(layout.num_registers):
                    assert flat(layout.logical_index(t, r), layout.shape) == \
                        flat(view.logical_index(t, r), shape), (shape, t, r)


def test_the_view_names_the_fragments_registers_in_cuda():
    k = np.ones((64, 64), np.float16)
    q = np.ones((128, 64), np.float16)
    w = np.ones((8, 16), np.float32)
    kernel = functools.partial(weighted_head_sums, heads=16, threads=128)
    source = jtile.pallas_like(kernel, out_shape=jax.ShapeDtypeStruct((64, 8), jnp.float32)) \
        .lower(k, q, w, target="sm_90a").cuda_source()
    assert "s_view" not in source and "s_frag[" in source
