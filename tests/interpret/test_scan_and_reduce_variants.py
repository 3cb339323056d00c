"""Interpret mode: T.cumsum / T.cummax and TileLang's T.reduce variants against numpy."""

import numpy as np
import pytest

import jtile.language as T
from jtile.errors import JtileError

from interpret_helpers import assert_close, random, run


@pytest.mark.parametrize("dim,reverse", [(0, False), (1, False), (1, True), (-2, True)])
def test_cumsum_shared_in_place(dim, reverse):
    def kernel(X, O):
        with T.Kernel(1, threads=128):
            tile = T.alloc_shared((16, 32), "float32")
            T.copy(X, tile)
            T.cumsum(tile, dim=dim, reverse=reverse)
            T.copy(tile, O)

    x = random(np.random.default_rng(1), (16, 32), "float32")
    (out,) = run(kernel, [x], [((16, 32), "float32")])
    flipped = np.flip(x, dim) if reverse else x
    expected = np.cumsum(flipped, axis=dim)
    expected = np.flip(expected, dim) if reverse else expected
    assert_close(out, expected, "float32")


def test_cumsum_fragment_to_separate_dst_and_region_slice():
    def kernel(X, O, P):
        with T.Kernel(2, threads=64) as bx:
            frag = T.alloc_fragment((32,), "float16")
            out = T.alloc_shared((32,), "float16")
            T.copy(X[bx, 0:32], frag)
            T.cumsum(frag, out, dim=0)                 # fragment src: staged through shared
            T.copy(out, O[bx, 0:32])
            tile = T.alloc_shared((4, 16), "float32")
            T.copy(X[bx * 2:bx * 2 + 4, 0:16], tile)
            T.cumsum(tile[1:3, 0:16], dim=1)           # a slice: rows 1..2 only
            T.copy(tile, P[bx * 4:bx * 4 + 4, :])

    x = random(np.random.default_rng(2), (6, 32), "float16")
    out, p = run(kernel, [x], [((2, 32), "float16"), ((8, 16), "float32")])
    assert_close(out, np.cumsum(x[:2].astype(np.float32), axis=1), "float16")
    for b in range(2):
        block = x[b * 2:b * 2 + 4, :16].astype(np.float32).copy()
        block[1:3] = np.cumsum(block[1:3], axis=1)
        assert_close(p[b * 4:b * 4 + 4], block, "float16")


def test_cummax_reverse_int32():
    def kernel(X, O):
        with T.Kernel(1):
            tile = T.alloc_shared((8, 16), "int32")
            T.copy(X, tile)
            T.cummax(tile, dim=1, reverse=True)
            T.copy(tile, O)

    x = np.random.default_rng(3).integers(-1000, 1000, (8, 16)).astype(np.int32)
    (out,) = run(kernel, [x], [((8, 16), "int32")])
    expected = np.flip(np.maximum.accumulate(np.flip(x, 1), axis=1), 1)
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("kind", ["sum", "max", "min", "abssum", "absmax"])
def test_generic_reduce_matches_named(kind):
    def kernel(X, O):
        with T.Kernel(1, threads=128):
            x = T.alloc_fragment((16, 64), "float32")
            r = T.alloc_fragment((16,), "float32")
            T.copy(X, x)
            T.reduce(x, r, kind, 1, True)
            T.copy(r, O)

    x = random(np.random.default_rng(4), (16, 64), "float32")
    (out,) = run(kernel, [x], [((16,), "float32")])
    ref = {"sum": x.sum(1), "max": x.max(1), "min": x.min(1), "abssum": np.abs(x).sum(1),
           "absmax": np.abs(x).max(1)}[kind]
    assert_close(out, ref, "float32")


@pytest.mark.parametrize("kind", ["bitand", "bitor", "bitxor"])
def test_bitwise_reductions_with_clear_false(kind):
    fn = {"bitand": T.reduce_bitand, "bitor": T.reduce_bitor, "bitxor": T.reduce_bitxor}[kind]

    def kernel(X, Init, O):
        with T.Kernel(1, threads=128):
            x = T.alloc_fragment((8, 32), "int32")
            r = T.alloc_fragment((32,), "int32")
            T.copy(X, x)
            T.copy(Init, r)
            fn(x, r, dim=0, clear=False)
            T.copy(r, O)

    rng = np.random.default_rng(5)
    x = rng.integers(0, 2**31 - 1, (8, 32)).astype(np.int32)
    init = rng.integers(0, 2**31 - 1, (32,)).astype(np.int32)
    (out,) = run(kernel, [x, init], [((32,), "int32")])
    ufunc = {"bitand": np.bitwise_and, "bitor": np.bitwise_or, "bitxor": np.bitwise_xor}[kind]
    np.testing.assert_array_equal(out, ufunc(ufunc.reduce(x, axis=0), init))


def test_reduce_of_shared_tiles_goes_through_fragments():
    def kernel(X, O):
        with T.Kernel(1, threads=128):
            s = T.alloc_shared((32, 16), "float32")
            r = T.alloc_shared((16,), "float32")
            T.copy(X, s)
            T.fill(r, 1.0)
            T.reduce_sum(s, r, dim=0, clear=False)
            T.copy(r, O)

    x = random(np.random.default_rng(6), (32, 16), "float32")
    (out,) = run(kernel, [x], [((16,), "float32")])
    assert_close(out, x.sum(0) + 1.0, "float32")


@pytest.mark.parametrize("call,match", [
    (lambda x, r: T.reduce_prod(x, r), "reduce_prod does not exist in TileLang"),
    (lambda x, r: T.reduce(x, r, "prod", 1, True), "reduce_type 'prod'"),
    (lambda x, r: T.reduce_sum(x, r, batch=2), "batch=2"),
    (lambda x, r: T.reduce_max(x, r, nan_propagate=True), "nan_propagate"),
    (lambda x, r: T.reduce_bitor(x, r), "needs integer or bool"),
])
def test_reduce_refusals_name_the_argument(call, match):
    def kernel(X, O):
        with T.Kernel(1, threads=128):
            x = T.alloc_fragment((16, 64), "float32")
            r = T.alloc_fragment((16,), "float32")
            T.copy(X, x)
            call(x, r)
            T.copy(r, O)

    x = random(np.random.default_rng(7), (16, 64), "float32")
    with pytest.raises(JtileError, match=match):
        run(kernel, [x], [((16,), "float32")])


def test_cumsum_shape_mismatch_is_refused():
    def kernel(X, O):
        with T.Kernel(1):
            a = T.alloc_shared((8, 8), "float32")
            b = T.alloc_shared((8, 4), "float32")
            T.copy(X, a)
            T.cumsum(a, b, dim=1)
            T.copy(a, O)

    x = random(np.random.default_rng(8), (8, 8), "float32")
    with pytest.raises(JtileError, match=r"T.cumsum at .*must have src's shape \(8, 8\)"):
        run(kernel, [x], [((8, 8), "float32")])
