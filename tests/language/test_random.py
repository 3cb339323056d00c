"""`T.rng_init` / `T.rng_rand` / `T.rng_rand_float`: each thread's curand-compatible
Philox4x32-10 stream, checked against Random123's known-answer vectors and a Python model of
curand's state machine; interpret mode and compiled (sm_80, sm_90a; run on a GPU where one is
present) draw the same words. Draws inside T.Parallel (except in a kernel of one thread, which
visits the elements in the loop's order) and other generators are refused."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jtile
import jtile.language as T
from tests.language.kernel_runs import run_both_ways

MASK = 0xFFFFFFFF


def philox(counter, key):
    """Philox4x32-10 of a 128-bit counter (four words) under a 64-bit key (two words)."""
    c, k = list(counter), list(key)
    for r in range(10):
        if r:
            k = [(k[0] + 0x9E3779B9) & MASK, (k[1] + 0xBB67AE85) & MASK]
        p0, p1 = 0xD2511F53 * c[0], 0xCD9E8D57 * c[2]
        c = [((p1 >> 32) ^ c[1] ^ k[0]) & MASK, p1 & MASK,
             ((p0 >> 32) ^ c[3] ^ k[1]) & MASK, p0 & MASK]
    return c


class CurandPhilox:
    """curand_init(seed, subsequence, offset) and curand() of curandStatePhilox4_32_10_t."""

    def __init__(self, seed, subsequence=0, offset=0):
        self.key = [seed & MASK, (seed >> 32) & MASK]
        count = (subsequence << 64) + (offset // 4)
        self.counter = [(count >> (32 * i)) & MASK for i in range(4)]
        self.index = offset % 4
        self.output = philox(self.counter, self.key)
        self.waiting = None

    def next(self):
        word = self.output[self.index]
        self.index += 1
        if self.index == 4:
            count = sum(w << (32 * i) for i, w in enumerate(self.counter)) + 1
            self.counter = [(count >> (32 * i)) & MASK for i in range(4)]
            self.output = philox(self.counter, self.key)
            self.index = 0
        return word

    def uniform(self):
        return np.float32(self.next()) * np.float32(2.0 ** -32) + np.float32(2.0 ** -33)

    def normal(self):
        if self.waiting is not None:
            value, self.waiting = self.waiting, None
            return value
        u = np.float32(self.next()) * np.float32(2.0 ** -32) + np.float32(2.0 ** -33)
        v = (np.float32(self.next()) * np.float32(2.0 ** -32 * 2 * math.pi)
             + np.float32(2.0 ** -33 * 2 * math.pi))
        radius = math.sqrt(-2.0 * math.log(u))
        self.waiting = radius * math.cos(v)
        return radius * math.sin(v)


def test_the_model_matches_random123s_known_answers():
    assert philox([0, 0, 0, 0], [0, 0]) == [0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8]
    assert philox([MASK] * 4, [MASK] * 2) == [0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD]
    assert philox([0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344],
                  [0xA4093822, 0x299F31D0]) == [0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1]


THREADS, DRAWS = 64, 11


def _words_kernel(seed, seq, offset_stride):
    """Each thread seeds seed / seq with an offset of its own and draws DRAWS words."""
    def kernel(Out):
        with T.Kernel(2, threads=THREADS) as bx:
            tx = T.get_thread_binding()
            T.rng_init(seed, seq, (bx * THREADS + tx) * offset_stride)
            for j in T.serial(DRAWS):
                Out[bx * THREADS + tx, j] = T.rng_rand()
    return kernel


@pytest.mark.parametrize("seed,seq,stride", [(42, 0, 128), (0x1234_5678_9ABC, 3, 7),
                                             (7, 2**40 + 5, 1), (np.uint64(2**63 + 11), 1, 3),
                                             (-5, 0, 2)])
def test_each_thread_draws_its_curand_stream(seed, seq, stride):
    out_shape = jax.ShapeDtypeStruct((2 * THREADS, DRAWS), jnp.uint32)
    (words,), _ = run_both_ways(_words_kernel(seed, seq, stride), [], out_shape)
    for thread in (0, 1, 5, THREADS, 2 * THREADS - 1):
        model = CurandPhilox(int(seed) & (2**64 - 1), seq, thread * stride)
        assert [int(w) for w in words[thread]] == [model.next() for _ in range(DRAWS)], thread


def test_a_static_offset_past_32_bits_carries_into_the_counter():
    offset = (1 << 34) + 4 * (MASK - 1) + 2      # the block count wraps its low word

    def kernel(Out):
        with T.Kernel(1, threads=32) as bx:
            T.rng_init(9, 0, offset)
            for j in T.serial(8):
                Out[j] = T.rng_rand()

    (words,), _ = run_both_ways(kernel, [], jax.ShapeDtypeStruct((8,), jnp.uint32))
    model = CurandPhilox(9, 0, offset)
    assert [int(w) for w in words] == [model.next() for _ in range(8)]


def test_uniform_and_normal_floats():
    def kernel(U, N):
        with T.Kernel(1, threads=THREADS) as bx:
            tx = T.get_thread_binding()
            T.rng_init(2024, tx, 0)
            for j in T.serial(6):
                U[tx, j] = T.rng_rand_float()
            for j in T.serial(5):   # an odd count: the last pair's second value stays cached
                N[tx, j] = T.rng_rand_float(dist="normal")

    shapes = (jax.ShapeDtypeStruct((THREADS, 6), jnp.float32),
              jax.ShapeDtypeStruct((THREADS, 5), jnp.float32))
    (uniform, normal), _ = run_both_ways(kernel, [], shapes, rtol=1e-5, atol=1e-5)
    for thread in (0, 17, THREADS - 1):
        model = CurandPhilox(2024, thread, 0)
        want = [model.uniform() for _ in range(6)]
        np.testing.assert_array_equal(uniform[thread], np.asarray(want, np.float32))
        np.testing.assert_allclose(normal[thread], [model.normal() for _ in range(5)],
                                   rtol=1e-5, atol=1e-5)
    assert 0.0 < uniform.min() and uniform.max() <= 1.0
    assert abs(normal.mean()) < 0.2 and 0.8 < normal.std() < 1.2


def test_draws_in_one_thread_under_a_condition():
    """TileLang's blockwise form: every thread seeds, thread 0 alone draws."""
    def kernel(Out):
        with T.Kernel(16, threads=32) as bx:
            tx = T.get_thread_binding()
            T.rng_init(42, 0, bx)
            with T.If(tx == 0):
                Out[bx] = T.rng_rand()

    (words,), _ = run_both_ways(kernel, [], jax.ShapeDtypeStruct((16,), jnp.uint32))
    assert [int(w) for w in words] == [CurandPhilox(42, 0, b).next() for b in range(16)]


def test_a_drawn_value_keeps_its_word_after_later_draws():
    def kernel(Words, Normals):
        with T.Kernel(1, threads=32) as bx:
            tx = T.get_thread_binding()
            T.rng_init(5, tx, 0)
            a = T.rng_rand()
            b = T.rng_rand()
            c = T.rng_rand_float(dist="normal")
            d = T.rng_rand_float(dist="normal")
            Words[tx, 0] = a
            Words[tx, 1] = b
            Normals[tx, 0] = c
            Normals[tx, 1] = d

    shapes = (jax.ShapeDtypeStruct((32, 2), jnp.uint32), jax.ShapeDtypeStruct((32, 2), jnp.float32))
    (words, normals), _ = run_both_ways(kernel, [], shapes, atol=1e-5)  # words: exact
    model = CurandPhilox(5, 3, 0)
    assert [int(w) for w in words[3]] == [model.next(), model.next()]
    np.testing.assert_allclose(normals[3], [model.normal(), model.normal()], rtol=1e-5, atol=1e-5)


def tilelang_rand_1d(M, seed):
    """TileLang's `examples/rand/rand_uint.py` kernel, its body as written: one thread per
    block draws num_per_thread words inside a T.Parallel loop."""
    num_per_thread = 128
    threads = 1
    blk_M = num_per_thread * threads

    A = T.empty((M,), "uint32")

    with T.Kernel(T.ceildiv(M, threads * num_per_thread), threads=threads) as bx:
        tx = T.get_thread_binding()
        T.rng_init(seed, 0, bx * blk_M + tx * num_per_thread)
        for i, j in T.Parallel(threads, num_per_thread):
            offsets = (bx * threads + i) * num_per_thread
            idx = offsets + j
            if idx < M:
                A[idx] = T.rng_rand()

    return A


@pytest.mark.parametrize("M,seed", [(384, 42), (200, 123)])
def test_draws_in_a_parallel_loop_of_a_one_thread_kernel_follow_the_loop(M, seed):
    import functools

    kernel = functools.partial(tilelang_rand_1d, M, seed)
    (words,), _ = run_both_ways(kernel, [], None)
    want = []
    for block in range(-(-M // 128)):
        model = CurandPhilox(seed, 0, block * 128)
        want += [model.next() for _ in range(128)]
    assert [int(w) for w in words] == want[:M]


def _lower(kernel, out_shape):
    return jtile.pallas_like(kernel, out_shape=out_shape, interpret=True)()


@pytest.mark.parametrize("body,match", [
    ("parallel", r"T.rng_rand.*inside T.Parallel.*T.serial"),
    ("no_init", r"T.rng_rand.*T.rng_init\(seed, seq, offset\) before drawing"),
    ("generator", r"T.rng_init.*curandStateXORWOW_t.*Philox4x32-10"),
    ("float64", r"T.rng_rand_float.*bit=64.*float32"),
    ("dist", r"T.rng_rand_float.*dist='poisson'"),
])
def test_refusals_name_the_rule(body, match):
    def kernel(Out):
        with T.Kernel(1, threads=32) as bx:
            if body == "generator":
                T.rng_init(1, generator="curandStateXORWOW_t")
            elif body != "no_init":
                T.rng_init(1)
            if body == "parallel":
                for i in T.Parallel(32):
                    Out[i] = T.rng_rand()
            elif body == "float64":
                Out[0] = T.cast(T.rng_rand_float(bit=64), "uint32")
            elif body == "dist":
                Out[0] = T.cast(T.rng_rand_float(dist="poisson"), "uint32")
            else:
                Out[0] = T.rng_rand()

    with pytest.raises(jtile.JtileError, match=match):
        _lower(kernel, jax.ShapeDtypeStruct((32,), jnp.uint32))


def test_dropout_with_a_counter_per_element():
    """Dropout as a kernel writes it: each thread seeds its own subsequence, draws one uniform
    per element it owns and keeps the element with probability 1 - p, scaled by 1 / (1 - p)."""
    rows, cols, p = 8, 96, 0.25
    x = np.random.default_rng(3).standard_normal((rows, cols)).astype(np.float32)

    def kernel(X, Y):
        with T.Kernel(rows, threads=32) as row:
            tx = T.get_thread_binding()
            T.rng_init(1234, row * 32 + tx, 0)
            for j in T.serial(cols // 32):
                col = j * 32 + tx
                keep = T.rng_rand_float() > p
                Y[row, col] = T.if_then_else(keep, X[row, col] * (1.0 / (1.0 - p)), 0.0)

    (y,), _ = run_both_ways(kernel, [x], jax.ShapeDtypeStruct((rows, cols), jnp.float32),
                            rtol=1e-6)
    want = np.zeros_like(x)
    for row in range(rows):
        for tx in range(32):
            model = CurandPhilox(1234, row * 32 + tx, 0)
            for j in range(cols // 32):
                col = j * 32 + tx
                want[row, col] = x[row, col] / (1 - p) if model.uniform() > p else 0.0
    np.testing.assert_allclose(y, want, rtol=1e-6)
    assert 0.6 < np.mean(y != 0) < 0.9
