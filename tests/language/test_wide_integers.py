"""64-bit integers in interpret mode: with jax_enable_x64 off jax computes them in 32 bits, so
interpret mode refuses 64-bit integer buffers and arithmetic there (the compiled kernel keeps
64 bits: the two modes would disagree past 2**32 without a word). With jax_enable_x64 on, the
same kernel runs and matches Python's integers. A warp vote's uint64 mask, which holds 32 bits,
still runs."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jtile
import jtile.language as T


def wide_product(A):
    B = T.empty((2,), "uint32")
    with T.Kernel(1, threads=32) as bx:
        w = T.alloc_var("uint32")
        w = T.cast(A[0], "uint32")
        B[0] = T.cast((T.cast(w, "uint64") * T.uint64(3_000_000_000)) >> T.uint64(32), "uint32")
        B[1] = T.cast(T.cast(w, "uint64") * T.uint64(3_000_000_000), "uint32")
    return B


def wide_buffer(A):
    B = T.empty((1,), "int32")
    with T.Kernel(1, threads=32) as bx:
        w = T.alloc_local((1,), "int64")
        w[0] = T.cast(A[0], "int64")
        B[0] = T.cast(w[0], "int32")
    return B


X = np.array([123_456_789], np.int32)


@pytest.mark.parametrize("kernel,what", [(wide_product, "uint64 arithmetic"),
                                         (wide_buffer, r"w \(local int64 \(1,\)\)")])
def test_refused_while_64_bit_types_narrow(kernel, what):
    assert not jax.config.jax_enable_x64
    with pytest.raises(jtile.JtileError, match=rf"test_wide_integers.py:\d+: {what}: interpret "
                                               r"mode computes 64-bit integers in 32 bits.*"
                                               r"jax_enable_x64"):
        jtile.pallas_like(kernel, interpret=True)(X)


def test_runs_exactly_with_jax_enable_x64():
    product = 123_456_789 * 3_000_000_000
    enable_x64 = getattr(jax, "enable_x64", None)
    if enable_x64 is None:  # older spelling
        from jax.experimental import enable_x64
    with enable_x64(True):
        got = jtile.pallas_like(wide_product, interpret=True)(X)
    assert [int(v) for v in np.asarray(got)] == [product >> 32, product & 0xFFFFFFFF]


def test_a_warp_votes_mask_still_runs():
    def votes(X, V):
        with T.Kernel(1, threads=32):
            tx = T.get_thread_binding()
            V[tx] = T.ballot_sync(X[tx] > 0)

    x = np.where(np.arange(32) % 3 == 0, 1, -1).astype(np.int32)
    got = jtile.pallas_like(votes, out_shape=jax.ShapeDtypeStruct((32,), jnp.uint32),
                            interpret=True)(x)
    want = sum(1 << i for i in range(32) if x[i] > 0)
    np.testing.assert_array_equal(np.asarray(got), np.full(32, want, np.uint32))
