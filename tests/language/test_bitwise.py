"""`&`, `|`, `^`, `~`, `<<`, `>>` on integer expressions are bitwise, as in TileLang; on two bools
`&`, `|` (and `^`) combine truth values and `~` negates. Interpret mode, generated CUDA, and
(on a GPU) the compiled kernel agree."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jtile
import jtile.language as T
from tests.language.kernel_runs import run_both_ways

N = 256


def _spec(shape, dtype):
    return jax.ShapeDtypeStruct(shape, dtype)


def _random_ints(rng, dtype, size=N):
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, size=size, endpoint=True, dtype=dtype)


def test_and_or_on_integers_are_bitwise():
    """`(x & 6) | 1` once became `(x && 6) || 1`, which is 1 everywhere."""
    def kernel(X, O):
        with T.Kernel(1, threads=128):
            for i in T.Parallel(N):
                O[i] = (X[i] & 6) | 1

    x = _random_ints(np.random.default_rng(0), np.int32)
    (out,), cuda = run_both_ways(kernel, [x], _spec((N,), jnp.int32))
    np.testing.assert_array_equal(out, (x & 6) | 1)
    assert len(np.unique(out)) > 1
    line = next(text for text in cuda.splitlines() if "O[" in text and "=" in text)
    assert re.search(r"& 6\) \| 1\)", line), line
    assert "&&" not in line and "||" not in line


@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32])
def test_every_operator_on_every_width(dtype):
    """Sub-32-bit results wrap in their own type in both modes: `(x << s) >> s` clears (or sign-
    fills) the high bits in interpret mode and in C, where the operands are promoted to int."""
    bits = np.iinfo(dtype).bits

    def kernel(X, Y, S, O):
        with T.Kernel(1, threads=128):
            for i in T.Parallel(N):
                x, y, s = X[i], Y[i], S[i]
                O[0, i] = x & y
                O[1, i] = x | y
                O[2, i] = x ^ y
                O[3, i] = ~x
                O[4, i] = x << s
                O[5, i] = x >> s
                O[6, i] = (x << s) >> s
                O[7, i] = ~(x ^ y) & (x | 5)

    rng = np.random.default_rng([bits, int(np.iinfo(dtype).min < 0)])
    x, y = _random_ints(rng, dtype), _random_ints(rng, dtype)
    s = rng.integers(0, bits, size=N).astype(dtype)
    (out,), cuda = run_both_ways(kernel, [x, y, s], _spec((8, N), dtype))
    expected = np.stack([x & y, x | y, x ^ y, ~x, x << s, x >> s, (x << s) >> s,
                         ~(x ^ y) & (x | dtype(5))])
    np.testing.assert_array_equal(out, expected.astype(dtype))
    assert "&&" not in cuda and "||" not in cuda
    if bits < 32:   # C computes in int: the generated code narrows each result back
        c_name = {np.int8: "signed char", np.uint8: "unsigned char", np.int16: "short",
                  np.uint16: "unsigned short"}[dtype]
        assert f"(({c_name})((" in cuda


def test_python_literals_on_the_left_and_mixed_widths():
    def kernel(X, O):
        with T.Kernel(1, threads=128):
            for i in T.Parallel(N):
                O[0, i] = 0xF0 & X[i]
                O[1, i] = 1 << (X[i] & 7)
                O[2, i] = 0x55 ^ X[i]
                O[3, i] = 3 | X[i]
                O[4, i] = 1024 >> (X[i] & 7)

    x = _random_ints(np.random.default_rng(1), np.int32)
    (out,), _ = run_both_ways(kernel, [x], _spec((5, N), jnp.int32))
    expected = np.stack([0xF0 & x, 1 << (x & 7), 0x55 ^ x, 3 | x, 1024 >> (x & 7)])
    np.testing.assert_array_equal(out, expected)


def test_unsigned_shift_right_is_logical_and_signed_arithmetic():
    def kernel(X, U, O, P):
        with T.Kernel(1, threads=128):
            for i in T.Parallel(N):
                O[i] = X[i] >> 28
                P[i] = U[i] >> 28

    rng = np.random.default_rng(2)
    x = _random_ints(rng, np.int32)
    u = x.view(np.uint32)
    (o, p), _ = run_both_ways(kernel, [x, u], (_spec((N,), jnp.int32), _spec((N,), jnp.uint32)))
    np.testing.assert_array_equal(o, x >> 28)
    np.testing.assert_array_equal(p, u >> 28)
    assert (o < 0).any() and (p > 7).any()


def test_on_bools_and_or_xor_not_combine_truth_values():
    def kernel(X, Y, O):
        with T.Kernel(1, threads=128):
            for i in T.Parallel(N):
                a, b = X[i] > 0, Y[i] > 0
                O[0, i] = T.cast(a & b, "int32")
                O[1, i] = T.cast(a | b, "int32")
                O[2, i] = T.cast(a ^ b, "int32")
                O[3, i] = T.cast(~a, "int32")
                O[4, i] = T.if_then_else((a & ~b) | (~a & b), 7, -7)
                with T.If((X[i] > 0.5) & (Y[i] < -0.5)):
                    O[5, i] = 1
                with T.Else():
                    O[5, i] = 0

    rng = np.random.default_rng(3)
    x, y = rng.uniform(-1, 1, N).astype(np.float32), rng.uniform(-1, 1, N).astype(np.float32)
    (out,), cuda = run_both_ways(kernel, [x, y], _spec((6, N), jnp.int32))
    a, b = x > 0, y > 0
    expected = np.stack([a & b, a | b, a ^ b, ~a, np.where(a ^ b, 7, -7),
                         (x > 0.5) & (y < -0.5)]).astype(np.int32)
    np.testing.assert_array_equal(out, expected)
    assert "&&" in cuda and "||" in cuda and "(!" in cuda


def test_bool_mixed_with_an_integer_is_bitwise_on_zero_and_one():
    def kernel(X, O):
        with T.Kernel(1, threads=128):
            for i in T.Parallel(N):
                O[i] = (X[i] > 0) | (X[i] & 6)

    x = _random_ints(np.random.default_rng(4), np.int32)
    (out,), _ = run_both_ways(kernel, [x], _spec((N,), jnp.int32))
    np.testing.assert_array_equal(out, (x > 0).astype(np.int32) | (x & 6))


def test_alloc_var_takes_bitwise_operators():
    def kernel(X, O):
        with T.Kernel(1, threads=128):
            v = T.alloc_var("int32", 0x0F0F)
            for i in T.Parallel(N):
                O[0, i] = v & X[i]
                O[1, i] = X[i] | v
                O[2, i] = v ^ X[i]
                O[3, i] = ~v + (v << 2) + (v >> 3) + (1 << (X[i] & 3) & v)

    x = _random_ints(np.random.default_rng(5), np.int32)
    (out,), _ = run_both_ways(kernel, [x], _spec((4, N), jnp.int32))
    v = np.int32(0x0F0F)
    expected = np.stack([v & x, x | v, v ^ x,
                         np.broadcast_to(~v + (v << 2) + (v >> 3), x.shape) + ((1 << (x & 3)) & v)])
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("case, rule", [
    ("float_and", r"`&` on a float32 operand; it takes integers or bools"),
    ("float_shift", r"`<<` on a float32 operand; it takes integers"),
    ("bool_shift", r"`>>` on a bool operand; it takes integers"),
    ("float_invert", r"`~` on a float32 operand"),
])
def test_bitwise_on_floats_is_refused(case, rule):
    def bad(X, O):
        with T.Kernel(1, threads=128):
            for i in T.Parallel(N):
                if case == "float_and":
                    O[i] = X[i] & 1
                elif case == "float_shift":
                    O[i] = X[i] << 1
                elif case == "bool_shift":
                    O[i] = T.cast((X[i] > 0) >> 1, "float32")
                else:
                    O[i] = ~X[i]

    f = jtile.pallas_like(bad, out_shape=_spec((N,), jnp.float32), interpret=True)
    with pytest.raises(jtile.JtileTraceError, match=r"bad \(test_bitwise.py:\d+\): "
                       r"test_bitwise.py:\d+: " + rule):
        f(np.ones(N, np.float32))
