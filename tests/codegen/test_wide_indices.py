"""Indices into arrays of 2**31 elements or more are computed in 64-bit arithmetic."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

import jtile
import jtile.language as T

TILE = 1024


def double(X):
    (n,) = X.shape
    Y = T.empty((n,), X.dtype)
    with T.Kernel(T.ceildiv(n, TILE), threads=128) as bx:
        x = T.alloc_fragment((TILE,), X.dtype)
        T.copy(X[bx * TILE], x)
        for i in T.Parallel(TILE):
            x[i] = x[i] * 2
        T.copy(x, Y[bx * TILE])
    return Y


@pytest.mark.parametrize("n, index_type", [(2**31 + TILE, "long long"), (2**20, "int")])
def test_block_index_is_64_bit_when_an_array_needs_it(n, index_type):
    # bx * 1024 wraps past 2**31 in int arithmetic at block 2**21: the 1-D element offset
    # would be negative and the kernel would write below the array.
    source = jtile.pallas_like(double).lower(jax.ShapeDtypeStruct((n,), jnp.bfloat16),
                                             target="sm_90a").cuda_source()
    assert f"const {index_type} bx = blockIdx.x;" in source
