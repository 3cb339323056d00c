"""TileLang's function spellings of operators: T.bitwise_*, T.shift_*, T.Select, T.isnan and
T.isinf, in interpret mode and compiled (and on a GPU, both ways agree)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import jtile.language as T
from tests.language.kernel_runs import run_both_ways

N = 128


def test_bitwise_and_shift_functions():
    def kernel(A, B, O):
        with T.Kernel(1, threads=128):
            for i in T.Parallel(N):
                O[0, i] = T.bitwise_and(A[i], B[i])
                O[1, i] = T.bitwise_or(A[i], B[i])
                O[2, i] = T.bitwise_xor(A[i], B[i])
                O[3, i] = T.bitwise_not(A[i])
                O[4, i] = T.shift_left(A[i], 3)
                O[5, i] = T.shift_right(A[i], 2)

    rng = np.random.default_rng(3)
    a = rng.integers(-1000, 1000, N).astype(np.int32)
    b = rng.integers(-1000, 1000, N).astype(np.int32)
    (out,), _ = run_both_ways(kernel, [a, b], jax.ShapeDtypeStruct((6, N), jnp.int32))
    np.testing.assert_array_equal(out, np.stack([a & b, a | b, a ^ b, ~a, a << 3, a >> 2]))


def test_select_isnan_isinf():
    def kernel(X, O):
        with T.Kernel(1, threads=128):
            for i in T.Parallel(N):
                O[0, i] = T.Select(T.isnan(X[i]), 1.0, 0.0)
                O[1, i] = T.Select(T.isinf(X[i]), 1.0, 0.0)
                O[2, i] = T.Select(X[i] > 0, X[i], -X[i])

    rng = np.random.default_rng(4)
    x = rng.standard_normal(N).astype(np.float32)
    x[::7], x[3::11], x[5::13] = np.nan, np.inf, -np.inf
    (out,), _ = run_both_ways(kernel, [x], jax.ShapeDtypeStruct((3, N), jnp.float32))
    np.testing.assert_array_equal(out[0], np.isnan(x).astype(np.float32))
    np.testing.assert_array_equal(out[1], np.isinf(x).astype(np.float32))
    finite = np.isfinite(x)
    np.testing.assert_array_equal(out[2][finite], np.abs(x)[finite])


def test_isinf_and_isnan_of_integers_are_false():
    def kernel(A, O):
        with T.Kernel(1, threads=128):
            for i in T.Parallel(N):
                O[i] = T.Select(T.isinf(A[i]) | T.isnan(A[i]), 1, 0)

    a = np.arange(N, dtype=np.int32) - 64
    (out,), _ = run_both_ways(kernel, [a], jax.ShapeDtypeStruct((N,), jnp.int32))
    assert (out == 0).all()

