"""Interpret mode: element-wise kernels, control flow, casts, C arithmetic, poison, aliases."""

import ml_dtypes
import numpy as np
import pytest

import jtile.language as T
from jtile.errors import JtileError
from jtile.interpret import interpret
from jtile.ir.types import DType
from jtile.trace.trace_kernel import trace

from interpret_helpers import assert_close, random, run, spec


def add_kernel(X, Y, O):
    (N,) = X.shape
    with T.Kernel(T.ceildiv(N, 256), threads=256) as bx:
        for i in T.Parallel(256):
            with T.If(bx * 256 + i < N):
                O[bx * 256 + i] = X[bx * 256 + i] + Y[bx * 256 + i]


def test_vector_add_ragged_tail():
    rng = np.random.default_rng(1)
    x, y = random(rng, (1000,), "float32"), random(rng, (1000,), "float32")
    (out,) = run(add_kernel, [x, y], [((1000,), "float32")])
    assert_close(out, x + y, "float32")


def test_vector_add_pallas_grid():
    def kernel(X, Y, O):
        bx = T.program_id(0)
        for i in T.Parallel(128):
            with T.If(bx * 128 + i < X.shape[0]):
                O[bx * 128 + i] = X[bx * 128 + i] * Y[bx * 128 + i]

    rng = np.random.default_rng(2)
    x, y = random(rng, (300,), "float16"), random(rng, (300,), "float16")
    (out,) = run(kernel, [x, y], [((300,), "float16")], grid=(3,))
    assert_close(out, x.astype(np.float32) * y.astype(np.float32), "float16")


def test_if_else_inside_parallel_nested():
    def kernel(X, O):
        with T.Kernel(1):
            for i in T.Parallel(64):
                with T.If(X[i] > 0):
                    O[i] = X[i] * 2.0
                with T.Else():
                    with T.If(X[i] < -0.5):
                        O[i] = -1.0
                    with T.Else():
                        O[i] = X[i] + 10.0

    rng = np.random.default_rng(3)
    x = random(rng, (64,), "float32")
    (out,) = run(kernel, [x], [((64,), "float32")])
    expected = np.where(x > 0, 2 * x, np.where(x < -0.5, -1.0, x + 10.0))
    assert_close(out, expected, "float32")


def test_if_else_outside_parallel():
    def kernel(X, O):
        with T.Kernel(6) as bx:
            tile = T.alloc_shared((16,), "float32")
            with T.If(bx % 2 == 0):
                T.fill(tile, 1.0)
            with T.Else():
                T.copy(X[bx * 16:(bx + 1) * 16], tile)
            T.copy(tile, O[bx * 16:(bx + 1) * 16])

    rng = np.random.default_rng(4)
    x = random(rng, (96,), "float32")
    (out,) = run(kernel, [x], [((96,), "float32")])
    expected = x.reshape(6, 16).copy()
    expected[::2] = 1.0
    assert_close(out, expected.reshape(-1), "float32")


def test_if_then_else_value():
    def kernel(X, O):
        with T.Kernel(1):
            for i, j in T.Parallel(8, 16):
                O[i, j] = T.if_then_else(X[i, j] > 0.25, X[i, j], 0.25 * X[i, j])

    rng = np.random.default_rng(5)
    x = random(rng, (8, 16), "float32")
    (out,) = run(kernel, [x], [((8, 16), "float32")])
    assert_close(out, np.where(x > 0.25, x, 0.25 * x), "float32")


def test_casts_truncate_and_round():
    def kernel(X, I, B):
        with T.Kernel(1):
            for i in T.Parallel(128):
                I[i] = T.cast(X[i], "int32")
                B[i] = T.cast(X[i], "bfloat16")

    rng = np.random.default_rng(6)
    x = random(rng, (128,), "float32", -50.0, 50.0)
    ints, bf16 = run(kernel, [x], [((128,), "int32"), ((128,), "bfloat16")])
    np.testing.assert_array_equal(ints, np.trunc(x).astype(np.int32))
    np.testing.assert_array_equal(bf16.astype(np.float32),
                                  x.astype(ml_dtypes.bfloat16).astype(np.float32))


def test_integer_division_floors_like_tilelang():
    # `//` and `%` are TVM's floordiv / floormod (Python's); `/` on integers truncates (C).
    def kernel(A, B, Q, R, D):
        with T.Kernel(1):
            for i in T.Parallel(200):
                Q[i] = A[i] // B[i]
                R[i] = A[i] % B[i]
                D[i] = A[i] / B[i]

    rng = np.random.default_rng(7)
    a = rng.integers(-1000, 1000, size=200).astype(np.int32)
    b = rng.integers(1, 30, size=200).astype(np.int32) * rng.choice([-1, 1], size=200).astype(
        np.int32)
    q, r, d = run(kernel, [a, b], [((200,), "int32")] * 3)
    truncated = (np.abs(a) // np.abs(b)) * np.sign(a) * np.sign(b)
    np.testing.assert_array_equal(q, a // b)
    np.testing.assert_array_equal(r, a % b)
    np.testing.assert_array_equal(d, truncated)
    assert (np.sign(r[r != 0]) == np.sign(b[r != 0])).all()   # the remainder takes b's sign


def test_float_floordiv_and_mod():
    def kernel(X, Y, F, M):
        with T.Kernel(1):
            for i in T.Parallel(64):
                F[i] = X[i] // Y[i]
                M[i] = X[i] % Y[i]

    rng = np.random.default_rng(8)
    x = random(rng, (64,), "float32", -10, 10)
    y = random(rng, (64,), "float32", 0.5, 3) * rng.choice([-1, 1], size=64).astype(np.float32)
    f, m = run(kernel, [x, y], [((64,), "float32")] * 2)
    assert_close(f, np.floor(x / y), "float32")
    assert_close(m, np.fmod(x, y), "float32")


def test_math_functions_half():
    def kernel(X, O):
        with T.Kernel(1):
            for i in T.Parallel(64):
                O[0, i] = T.exp(X[i])
                O[1, i] = T.exp2(X[i])
                O[2, i] = T.log(T.abs(X[i]) + 1.0)
                O[3, i] = T.sqrt(T.abs(X[i]))
                O[4, i] = T.rsqrt(T.abs(X[i]) + 0.5)
                O[5, i] = T.tanh(X[i])
                O[6, i] = T.sigmoid(X[i])
                O[7, i] = T.max(X[i], 0.1) + T.min(X[i], -0.1) + T.log2(T.abs(X[i]) + 2.0)

    rng = np.random.default_rng(9)
    x = random(rng, (64,), "float16", -2, 2)
    (out,) = run(kernel, [x], [((8, 64), "float16")])
    f = x.astype(np.float32)
    expected = np.stack([np.exp(f), np.exp2(f), np.log(np.abs(f) + 1), np.sqrt(np.abs(f)),
                         1 / np.sqrt(np.abs(f) + 0.5), np.tanh(f), 1 / (1 + np.exp(-f)),
                         np.maximum(f, 0.1) + np.minimum(f, -0.1) + np.log2(np.abs(f) + 2)])
    for row in range(8):
        assert_close(out[row], expected[row], "float16")


def test_unwritten_output_is_poisoned():
    def kernel(X, O, I):
        with T.Kernel(1):
            for i in T.Parallel(8):
                O[i] = X[i]
                I[i] = 7

    x = random(np.random.default_rng(10), (16,), "float32")
    out, ints = run(kernel, [x], [((16,), "float32"), ((16,), "int32")])
    assert_close(out[:8], x[:8], "float32")
    assert np.isnan(out[8:]).all()
    np.testing.assert_array_equal(ints, [7] * 8 + [-1] * 8)


def test_missing_clear_shows_as_nan():
    def kernel(X, O):
        with T.Kernel(1):
            acc = T.alloc_fragment((32,), "float32")
            for i in T.Parallel(32):
                acc[i] = acc[i] + X[i]
            T.copy(acc, O)

    (out,) = run(kernel, [random(np.random.default_rng(11), (32,), "float32")],
                 [((32,), "float32")])
    assert np.isnan(out).all()


def test_alias_in_place_update():
    def kernel(X, O):
        with T.Kernel(4) as bx:
            for i in T.Parallel(32):
                X[bx * 32 + i] = X[bx * 32 + i] * 3.0 + 1.0

    x = random(np.random.default_rng(12), (128,), "float32")
    (out,) = run(kernel, [x], [((128,), "float32")], aliases={0: 0})
    assert_close(out, x * 3 + 1, "float32")


def test_alias_output_starts_as_input():
    def kernel(X, Y, O):
        with T.Kernel(1):
            for i in T.Parallel(10):
                O[i] = O[i] + Y[i]

    rng = np.random.default_rng(13)
    x, y = random(rng, (20,), "float32"), random(rng, (20,), "float32")
    (out,) = run(kernel, [x, y], [((20,), "float32")], aliases={0: 0})
    expected = x.copy()
    expected[:10] += y[:10]
    assert_close(out, expected, "float32")


def test_store_to_input_without_alias_is_refused():
    def kernel(X, O):
        with T.Kernel(1):
            for i in T.Parallel(8):
                X[i] = 0.0
                O[i] = 1.0

    with pytest.raises(JtileError, match=r"kernel \(.*writes input X"):
        run(kernel, [np.ones(8, np.float32)], [((8,), "float32")])


def test_thread_index_inside_parallel_is_refused():
    def kernel(X, O):
        with T.Kernel(1, threads=128):
            tx = T.get_thread_binding()
            for i in T.Parallel(128):
                O[i] = X[tx]

    with pytest.raises(JtileError, match=r"kernel .*test_elementwise.py:\d+.*inside T.Parallel "
                                         r"reads the thread index"):
        run(kernel, [np.ones(128, np.float32)], [((128,), "float32")])


def test_tmem_is_refused():
    def kernel(X, O):
        with T.Kernel(1):
            T.alloc_tmem((128, 32), "float32")
            for i in T.Parallel(8):
                O[i] = X[i]

    with pytest.raises(JtileError, match="TMEM/tcgen05 have no interpret-mode semantics"):
        run(kernel, [np.ones(8, np.float32)], [((8,), "float32")])


def test_input_mismatch_is_refused():
    kernel = trace(add_kernel, [((16,), DType.float32)] * 2, [((16,), DType.float32)])
    with pytest.raises(JtileError, match="input X"):
        interpret(kernel, [np.ones(16, np.float16), np.ones(16, np.float32)])
    assert spec(np.ones(3, np.float32)) == ((3,), DType.float32)
