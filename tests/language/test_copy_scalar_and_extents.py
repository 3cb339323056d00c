"""TileLang's `T.copy` rules: two element addresses are a scalar store `B[j] = A[i]`, and a head
address takes the other side's extents right-aligned (a (32, 1) column stays a column)."""

import jax
import jax.numpy as jnp
import numpy as np

import jtile.language as T
from jtile.ir import nodes as ir
from jtile.ir.types import DType
from tests.language.kernel_runs import run_both_ways
from tests.trace.helpers import trace1

N = 128


def _spec(shape, dtype):
    return jax.ShapeDtypeStruct(shape, dtype)


def test_two_element_addresses_are_a_store_with_a_cast():
    def kernel(X, Perm, O, First):
        with T.Kernel(1, threads=128):
            for i in T.Parallel(N):
                T.copy(X[Perm[i]], O[i])          # float32 -> float16 gather
            T.copy(X[5], First[0])                # outside T.Parallel: one element

    rng = np.random.default_rng(0)
    x = rng.uniform(-4, 4, N).astype(np.float32)
    perm = rng.permutation(N).astype(np.int32)
    (out, first), _ = run_both_ways(kernel, [x, perm],
                                    (_spec((N,), jnp.float16), _spec((1,), jnp.float32)))
    np.testing.assert_array_equal(out, x[perm].astype(np.float16))
    np.testing.assert_array_equal(first, x[5:6])


def test_two_element_addresses_trace_to_a_store():
    def kernel(X, O):
        with T.Kernel(1, threads=32):
            T.copy(X[1], O[2])

    (stmt,) = trace1(kernel).body
    assert isinstance(stmt, ir.Store) and stmt.buffer.name == "O"
    assert isinstance(stmt.value, ir.Load) and stmt.value.buffer.name == "X"


def test_head_address_takes_the_other_sides_extents_right_aligned():
    def kernel(X, O):
        with T.Kernel(1, threads=128):
            col = T.alloc_shared((32, 1), "float32")
            tile = T.alloc_shared((16, 8), "float32")
            T.copy(X[0:32, 3:4], col)
            T.copy(col, O[0, 1, 0])               # a column: O[0, 1:33, 0:1]
            T.copy(X[32:48, 0:8], tile)
            T.copy(tile, O[1, 0, 8])              # rank 3 from a 2-D tile: O[1, 0:16, 8:16]

    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 1, (64, 16)).astype(np.float32)
    o = np.zeros((2, 64, 16), np.float32)

    def with_zeros(X, Zeros, O):
        kernel(X, O)

    (out,), _ = run_both_ways(with_zeros, [x, o], _spec((2, 64, 16), jnp.float32),
                              input_output_aliases={1: 0})
    expected = o.copy()
    expected[0, 1:33, 0] = x[0:32, 3]
    expected[1, 0:16, 8:16] = x[32:48, 0:8]
    np.testing.assert_array_equal(out, expected)


def test_head_regions_in_the_ir():
    def kernel(X, O):
        with T.Kernel(1, threads=32):
            col = T.alloc_shared((32, 1), "float32")
            row = T.alloc_shared((32,), "float32")
            T.copy(X[0, 0], col)                  # (32, 1) fits a (64, 64) buffer as is
            T.copy(X[1, 0], row)                  # (32,) right-aligned: (1, 32)
            T.copy(col, O[0, 0])

    copies = [s for s in trace1(kernel, shape=(64, 64)).body if isinstance(s, ir.Copy)]
    assert copies[0].src.extents == (32, 1)
    assert copies[1].src.extents == (1, 32)
    assert copies[2].dst.extents == (32, 1)
    assert copies[0].src.buffer.dtype is DType.float32


def test_a_global_tile_may_reach_past_the_end_of_the_array():
    # TileLang bounds-checks global accesses: a 64-row tile read from a 32-row array gets zeros
    # past the end, and the rows stored past the end are dropped (a decoding kernel copies a
    # fixed block of query heads from fewer heads).
    heads, block, step, dim = 32, 64, 4, 16

    def kernel(Q, O, Sums):
        with T.Kernel(heads // step, threads=128) as bx:
            tile = T.alloc_shared((block, dim), "float16")
            acc = T.alloc_fragment((block, dim), "float32")
            total = T.alloc_fragment((block,), "float32")
            T.copy(Q[bx * step:bx * step + block, :], tile)
            T.copy(tile, acc)
            for i, j in T.Parallel(block, dim):
                acc[i, j] = acc[i, j] * 2
            T.reduce_sum(acc, total, dim=1)
            T.copy(acc, O[bx * step:bx * step + block, :])
            T.copy(total, Sums[bx, :])

    q = np.random.default_rng(3).uniform(-2, 2, (heads, dim)).astype(np.float16)
    (out, sums), _ = run_both_ways(kernel, [q], (_spec((heads, dim), jnp.float16),
                                                 _spec((heads // step, block), jnp.float32)))
    np.testing.assert_array_equal(out, q * 2)
    padded = np.concatenate([q.astype(np.float32) * 2, np.zeros((block, dim), np.float32)])
    expected = np.stack([padded[b * step:b * step + block].sum(1) for b in range(heads // step)])
    np.testing.assert_allclose(sums, expected, rtol=1e-6, atol=1e-5)
