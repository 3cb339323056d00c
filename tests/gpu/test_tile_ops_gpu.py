"""On the GPU: T.cumsum/T.cummax, T.im2col convolution through views, T.use_swizzle,
bitwise reductions and thread-block clusters give the interpret-mode (numpy) results."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jtile
import jtile.language as T
from tests.codegen.test_tile_ops_and_options_compile import cluster_kernel, conv_kernel, \
    scan_kernel, views_kernel

pytestmark = pytest.mark.gpu


def both(kernel, out_shape, *args):
    """(compiled, interpreted) results of one kernel."""
    compiled = jtile.pallas_like(kernel, out_shape=out_shape)(*args)
    interpreted = jtile.pallas_like(kernel, out_shape=out_shape, interpret=True)(*args)
    return jax.tree_util.tree_map(np.asarray, (compiled, interpreted))


def test_scans_match_interpret_and_numpy():
    x = np.random.default_rng(50).uniform(-1, 1, (128, 64)).astype(np.float16)
    shapes = (jax.ShapeDtypeStruct((128, 64), jnp.float16),
              jax.ShapeDtypeStruct((128, 64), jnp.float32))
    (o, p), (io, ip) = both(scan_kernel, shapes, x)
    xf = x.astype(np.float32)
    rev = np.flip(np.cumsum(np.flip(xf, 1), 1), 1)
    np.testing.assert_allclose(o.astype(np.float32), rev, rtol=1e-2, atol=2e-2)
    np.testing.assert_allclose(o.astype(np.float32), io.astype(np.float32), rtol=1e-2, atol=2e-2)
    runmax = np.concatenate([np.maximum.accumulate(xf[b * 32:(b + 1) * 32], 0)
                             for b in range(4)])
    np.testing.assert_array_equal(p, runmax)
    np.testing.assert_array_equal(p, ip)


def test_im2col_convolution_with_views_and_swizzle():
    rng = np.random.default_rng(51)
    data = rng.uniform(-1, 1, (2, 10, 10, 32)).astype(np.float16)
    weight = rng.uniform(-1, 1, (3, 3, 32, 64)).astype(np.float16)
    out, ref = both(conv_kernel, jax.ShapeDtypeStruct((2, 10, 10, 64), jnp.float16),
                    data, weight)
    scale = np.abs(ref.astype(np.float32)).max()
    np.testing.assert_allclose(out.astype(np.float32), ref.astype(np.float32), rtol=2e-2,
                               atol=2e-2 * scale)


def test_bitwise_reductions_and_clusters():
    def kernel(X, O):
        with T.Kernel(1, threads=128):
            x = T.alloc_fragment((16, 64), "int32")
            r = T.alloc_fragment((16,), "int32")
            T.copy(X, x)
            T.reduce_bitxor(x, r, dim=1)
            T.copy(r, O)

    x = np.random.default_rng(52).integers(0, 2**31 - 1, (16, 64)).astype(np.int32)
    out, ref = both(kernel, jax.ShapeDtypeStruct((16,), jnp.int32), x)
    np.testing.assert_array_equal(out, np.bitwise_xor.reduce(x, axis=1))
    np.testing.assert_array_equal(out, ref)
    y = np.random.default_rng(53).uniform(-1, 1, (2, 512)).astype(np.float32)
    out, ref = both(cluster_kernel, jax.ShapeDtypeStruct((2, 512), jnp.float32), y)
    np.testing.assert_allclose(out, y + 1.0, rtol=1e-6)


def test_views_and_column_swizzle():
    x = np.random.default_rng(54).integers(0, 256, (64,)).astype(np.uint8)
    shapes = (jax.ShapeDtypeStruct((16,), jnp.int32), jax.ShapeDtypeStruct((8, 8), jnp.uint8))
    (o, p), (io, ip) = both(views_kernel, shapes, x)
    np.testing.assert_array_equal(o, x.view(np.int32) + 1)
    np.testing.assert_array_equal(p, x.reshape(8, 8).T)
    np.testing.assert_array_equal(o, io)

    def swizzled(X, O):
        with T.Kernel(5, 7, threads=32) as (bx, by):
            T.use_swizzle(panel_size=2, order="column")
            for i in T.Parallel(32):
                O[by, bx * 32 + i] = X[by, bx * 32 + i] + by * 100 + bx

    y = np.random.default_rng(55).uniform(-1, 1, (7, 160)).astype(np.float32)
    out, ref = both(swizzled, jax.ShapeDtypeStruct((7, 160), jnp.float32), y)
    expected = y + np.arange(7)[:, None] * 100 + (np.arange(160) // 32)[None, :]
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    np.testing.assert_allclose(ref, expected, rtol=1e-6)
