"""`//`, `%`, `T.floordiv` and `T.floormod` round toward -inf like Python (TileLang's / TVM's
floordiv and floormod); `T.truncdiv` / `T.truncmod` keep C's truncation; interpret mode,
generated CUDA and (on a GPU) the compiled kernel agree."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jtile.language as T
from tests.language.kernel_runs import run_both_ways

N = 256


def _spec(shape, dtype):
    return jax.ShapeDtypeStruct(shape, dtype)


def _nonzero(rng, low, high, dtype):
    values = rng.integers(low, high, N).astype(dtype)
    values[values == 0] = 1
    return values


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.uint32])
def test_floor_semantics_on_integers(dtype):
    def kernel(A, B, O):
        with T.Kernel(1, threads=128):
            for i in T.Parallel(N):
                O[0, i] = T.floordiv(A[i], B[i])
                O[1, i] = T.floormod(A[i], B[i])
                O[2, i] = T.truncdiv(A[i], B[i])
                O[3, i] = T.truncmod(A[i], B[i])
                O[4, i] = T.floordiv(A[i], 3) + T.floormod(A[i], -3 if dtype != np.uint32 else 5)
                O[5, i] = A[i] // B[i]
                O[6, i] = A[i] % B[i]

    rng = np.random.default_rng(np.iinfo(dtype).bits)
    signed = np.iinfo(dtype).min < 0
    a = rng.integers(-100 if signed else 0, 100, N).astype(dtype)
    b = _nonzero(rng, -9 if signed else 1, 9, dtype)
    (out,), _ = run_both_ways(kernel, [a, b], _spec((7, N), dtype))
    wide_a, wide_b = a.astype(np.int64), b.astype(np.int64)
    truncated = np.trunc(wide_a / wide_b).astype(np.int64)
    other = -3 if signed else 5
    expected = np.stack([wide_a // wide_b, wide_a % wide_b, truncated, wide_a - truncated * wide_b,
                         wide_a // 3 + wide_a % other, wide_a // wide_b, wide_a % wide_b])
    np.testing.assert_array_equal(out.astype(np.int64), expected)
    if signed:
        assert (out[0] != out[2]).any() and (out[1] != out[3]).any()


def test_floor_semantics_on_floats():
    def kernel(A, B, O):
        with T.Kernel(1, threads=128):
            for i in T.Parallel(N):
                O[0, i] = T.floordiv(A[i], B[i])
                O[1, i] = T.floormod(A[i], B[i])
                O[2, i] = A[i] % B[i]

    rng = np.random.default_rng(7)
    a = rng.uniform(-50, 50, N).astype(np.float32)
    b = rng.choice([-1, 1], N).astype(np.float32) * rng.uniform(0.5, 7, N).astype(np.float32)
    (out,), _ = run_both_ways(kernel, [a, b], _spec((3, N), jnp.float32), rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(out[0], np.floor(a / b), rtol=1e-6)
    np.testing.assert_allclose(out[1], np.mod(a, b), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out[2], np.fmod(a, b), rtol=1e-5, atol=1e-5)


def test_static_numbers_give_python_numbers():
    assert T.floordiv(-7, 2) == -4 and T.floormod(-7, 2) == 1
    assert T.truncdiv(-7, 2) == -3 and T.truncmod(-7, 2) == -1
    big = 2**60 + 1                      # beyond a double's 53 bits: integer arithmetic only
    assert T.truncdiv(-big, 3) == -(big // 3) and T.truncmod(-big, 3) == -(big % 3)
    assert T.floordiv(7.5, -2) == -4.0 and T.floormod(7, -2) == -1
