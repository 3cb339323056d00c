"""A 1-D fragment reduced over its only dimension into a (1,) fragment, then read inside
T.Parallel (as one-row kernels do): it compiled to an IndexError in code generation, the
result's layout having lost its dimension. Interpret mode, compiled for sm_80 and sm_90a, and
run on a GPU where one is present; and an aligned floor-divided start loads in vectors."""

import jax
import jax.numpy as jnp
import numpy as np

import jtile.language as T
from tests.language.kernel_runs import run_both_ways


def row_extremes(X, O):
    (n,) = X.shape
    rows = O.shape[0]
    with T.Kernel(rows, threads=128) as bx:
        x = T.alloc_fragment((1024,), "float32")
        top = T.alloc_fragment((1,), "float32")
        total = T.alloc_fragment((1,), "float32")
        # 16-byte aligned starts inside a row of 1000 (the floor division keeps them so).
        T.copy(X[bx * 1000 // 4 * 4], x)
        T.reduce_max(x, top, dim=0)
        for j in T.Parallel(1024):
            x[j] = x[j] - top[0]
        T.reduce_sum(x, total, dim=0)
        for i in T.Parallel(1):
            O[bx, 0] = top[i]
            O[bx, 1] = total[i]


def test_a_vector_reduced_to_one_element_compiles_and_loads_in_vectors():
    rows = 4
    x = np.random.default_rng(5).standard_normal(rows * 1000 + 24).astype(np.float32)
    (out,), cuda = run_both_ways(row_extremes, (x,),
                                 jax.ShapeDtypeStruct((rows, 2), jnp.float32),
                                 rtol=1e-5, atol=1e-3)
    for r in range(rows):
        window = x[r * 1000 // 4 * 4:][:1024]
        np.testing.assert_allclose(out[r, 0], window.max(), rtol=1e-6)
        np.testing.assert_allclose(out[r, 1], np.sum(window - window.max()), rtol=1e-4)
    assert "jt::vec<float, 4>" in cuda
