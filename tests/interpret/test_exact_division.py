"""Interpret mode divides floats exactly as the GPU does (TileLang compiles without fast math):
correctly rounded, also where XLA would turn a division by a broadcast value or a constant into
a multiplication by its reciprocal."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jtile
import jtile.language as T


def row_scaled(X, S, O, F):
    (m, n) = X.shape
    with T.Kernel(1, threads=128):
        x = T.alloc_fragment((m, n), "float32")
        s = T.alloc_fragment((m,), "float32")
        T.copy(X, x)
        T.copy(S, s)
        for i, j in T.Parallel(m, n):
            O[0, i, j] = x[i, j] / s[i]           # a per-row divisor, broadcast along j
            O[1, i, j] = x[i, j] / 3.0            # a constant divisor
            O[2, i, j] = S[i] / x[i, j]           # a broadcast dividend
            F[i, j] = T.floordiv(x[i, j] * 7.0, s[i])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_division_is_correctly_rounded(seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((8, 128)).astype(np.float32)
    s = (rng.random(8) + 0.5).astype(np.float32)
    f = jtile.pallas_like(row_scaled, out_shape=(jax.ShapeDtypeStruct((3, 8, 128), jnp.float32),
                                                 jax.ShapeDtypeStruct((8, 128), jnp.float32)),
                          interpret=True)
    o, fl = (np.asarray(y) for y in f(jnp.asarray(x), jnp.asarray(s)))
    np.testing.assert_array_equal(o[0], x / s[:, None])
    np.testing.assert_array_equal(o[1], x / np.float32(3.0))
    np.testing.assert_array_equal(o[2], s[:, None] / x)
    np.testing.assert_array_equal(fl, np.floor((x * np.float32(7.0)) / s[:, None]))
