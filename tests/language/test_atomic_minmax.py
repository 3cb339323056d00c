"""`T.atomic_max` / `T.atomic_min` beside `T.atomic_add`, element and tile forms, in global and
shared memory: interpret mode, generated CUDA and (on a GPU) the compiled kernel agree."""

import functools

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest

import jtile
import jtile.language as T
from tests.language.kernel_runs import run_both_ways

N = 512        # values
BINS = 16      # destinations: many values collide on each


def _spec(shape, dtype):
    return jax.ShapeDtypeStruct(shape, dtype)


def _values(rng, dtype, size):
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return rng.integers(max(info.min, -10**6), min(info.max, 10**6), size, dtype=dtype)
    return rng.uniform(-100, 100, size).astype(dtype)


def scatter_kernel(X, Bin, Init, O, *, op):
    """O[Bin[i]] = op(O[Bin[i]], X[i]) for every i, over 4 blocks (O aliased to Init)."""
    (n,) = X.shape
    with T.Kernel(4, threads=128) as bx:
        for i in T.Parallel(n // 4):
            k = bx * (n // 4) + i
            if op == "max":
                T.atomic_max(O[Bin[k]], X[k])
            elif op == "min":
                T.atomic_min(O[Bin[k]], X[k])
            else:
                T.atomic_add(O[Bin[k]], X[k])


@pytest.mark.parametrize("op", ["max", "min"])
@pytest.mark.parametrize("dtype", [np.float32, np.int32, np.uint32, np.float16,
                                   ml_dtypes.bfloat16])
def test_element_atomics_with_collisions(op, dtype):
    rng = np.random.default_rng(3 if op == "max" else 4)
    x = _values(rng, dtype, N)
    bins = rng.integers(0, BINS, N, dtype=np.int32)
    init = _values(rng, dtype, BINS)
    kernel = functools.partial(scatter_kernel, op=op)
    (out,), cuda = run_both_ways(kernel, [x, bins, init], _spec((BINS,), dtype),
                                 input_output_aliases={2: 0})
    reduce = np.maximum if op == "max" else np.minimum
    expected = init.copy()
    reduce.at(expected, bins, x)
    np.testing.assert_array_equal(out, expected)
    assert f"jt::atomic_{op}(&O[" in cuda


def test_element_atomic_add_still_adds():
    rng = np.random.default_rng(5)
    x = rng.integers(-1000, 1000, N, dtype=np.int32)
    bins = rng.integers(0, BINS, N, dtype=np.int32)
    init = rng.integers(-1000, 1000, BINS, dtype=np.int32)
    kernel = functools.partial(scatter_kernel, op="add")
    (out,), cuda = run_both_ways(kernel, [x, bins, init], _spec((BINS,), np.int32),
                                 input_output_aliases={2: 0})
    expected = init.copy()
    np.add.at(expected, bins, x)
    np.testing.assert_array_equal(out, expected)
    assert "jt::atomic_add(&O[" in cuda


def tile_kernel(X, Init, O, *, rows):
    """Column max and min of X, per block of rows: a fragment tile, a shared tile and a head
    address as destinations of the tile forms (O aliased to Init)."""
    M, C = X.shape
    with T.Kernel(M // rows, threads=128) as bx:
        x = T.alloc_fragment((rows, C), "float32")
        col = T.alloc_fragment((C,), "float32")
        low = T.alloc_shared((C,), "float32")
        T.copy(X[bx * rows, 0], x)
        T.reduce_max(x, col, dim=0)
        T.atomic_max(O[0, :], col)          # slice <- fragment
        T.reduce_min(x, col, dim=0)
        T.copy(col, low)
        T.atomic_min(O[1, 0], low)          # head address <- shared tile


def test_tile_atomics():
    rng = np.random.default_rng(6)
    x = rng.uniform(-50, 50, (64, 32)).astype(np.float32)
    init = np.stack([np.full(32, -1e9), np.full(32, 1e9)]).astype(np.float32)
    init[:, :4] = ((40, 41, 42, 43), (-40, -41, -42, -43))     # some columns keep the initial
    kernel = functools.partial(tile_kernel, rows=16)
    (out,), cuda = run_both_ways(kernel, [x, init], _spec((2, 32), jnp.float32),
                                 input_output_aliases={1: 0})
    expected = np.stack([np.maximum(init[0], x.max(0)), np.minimum(init[1], x.min(0))])
    np.testing.assert_array_equal(out, expected)
    assert "jt::atomic_max(" in cuda and "jt::atomic_min(" in cuda


def test_one_element_buffer_as_destination_and_shared_memory_counters():
    def kernel(X, Init, O):
        (n,) = X.shape
        with T.Kernel(2, threads=128) as bx:
            best = T.alloc_shared((1,), "int32")
            T.fill(best, -(2**31))
            for i in T.Parallel(n // 2):
                T.atomic_max(best, X[bx * (n // 2) + i])       # a one-element buffer
            T.atomic_max(O, best)                              # tile (1,) <- shared tile

    rng = np.random.default_rng(7)
    x = rng.integers(-10**6, 10**6, N, dtype=np.int32)
    init = np.array([-5], np.int32)
    (out,), _ = run_both_ways(kernel, [x, init], _spec((1,), jnp.int32),
                              input_output_aliases={1: 0})
    np.testing.assert_array_equal(out, [max(init[0], x.max())])


@pytest.mark.parametrize("target", ["sm_80", "sm_90a"])
def test_64_bit_atomics_compile(target):
    def kernel(X, L, O_init, P_init, O, P):   # O, P start as O_init, P_init (aliased)
        with T.Kernel(1, threads=128):
            for i in T.Parallel(128):
                T.atomic_max(O[i % 4], X[i])
                T.atomic_min(O[4 + i % 4], X[i])
                T.atomic_max(P[i % 4], L[i])
                T.atomic_min(P[4 + i % 4], L[i])

    f = jtile.pallas_like(kernel, out_shape=(_spec((8,), jnp.float64), _spec((8,), jnp.int64)),
                          input_output_aliases={2: 0, 3: 1})
    lowered = f.lower(_spec((128,), jnp.float64), _spec((128,), jnp.int64),
                      _spec((8,), jnp.float64), _spec((8,), jnp.int64), target=target)
    assert lowered.compile().cubin[:4] == b"\x7fELF"
    assert "jt::atomic_max(&O[" in lowered.cuda_source()


@pytest.mark.parametrize("case, rule", [
    ("order", r"T.atomic_max at test_atomic_minmax.py:\d+: memory_order='acquire' is not "
              "supported"),
    ("prev", r"T.atomic_min at test_atomic_minmax.py:\d+: return_prev=True inside T.Parallel "
             r"is not supported"),
    ("prev_tile", r"T.atomic_add at test_atomic_minmax.py:\d+: return_prev=True returns one "
                  r"element's previous value"),
    ("tma", r"T.atomic_add at test_atomic_minmax.py:\d+: use_tma=True"),
    ("broadcast", r"T.atomic_max at test_atomic_minmax.py:\d+: a scalar value needs one "
                  r"element as dst.*tile \(16,\)"),
    ("dtype", r"T.atomic_max at .*atomic max supports"),
])
def test_refusals(case, rule):
    def bad(X, O):
        with T.Kernel(1, threads=128):
            small = T.alloc_shared((4,), "int8")
            if case == "order":
                T.atomic_max(O[0], X[0], memory_order="acquire")
            elif case == "prev":
                for i in T.Parallel(16):
                    T.atomic_min(O[i], X[i], return_prev=True)
            elif case == "prev_tile":
                T.atomic_add(O[0:16], X[0:16], return_prev=True)
            elif case == "tma":
                T.atomic_add(O[0:16], X[0:16], use_tma=True)
            elif case == "broadcast":
                T.atomic_max(O[0:16], X[0])
            else:
                T.atomic_max(small[0], 1)

    f = jtile.pallas_like(bad, out_shape=_spec((16,), jnp.float32), interpret=True)
    with pytest.raises(jtile.JtileTraceError, match=r"bad \(test_atomic_minmax.py:\d+\): " + rule):
        f(np.ones(16, np.float32))
