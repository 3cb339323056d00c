"""On the GPU: kernels using Python control flow and TileLang's two kernel styles, compiled,
agree with NumPy (and with interpret mode)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jtile
import jtile.language as T
from tests.binding.test_kernel_styles import (eager_add, matmul, row_scale_factory,
                                              split_kernel)
from tests.trace.test_python_control_flow import if_elif_else_kernel, logic_kernel

pytestmark = pytest.mark.gpu


def _normal(seed, shape, dtype=jnp.float32):
    return jax.random.normal(jax.random.PRNGKey(seed), shape, jnp.float32).astype(dtype)


def _both(kernel, *args, out_shape=None):
    compiled = jtile.pallas_like(kernel, out_shape=out_shape)(*args)
    interpreted = jtile.pallas_like(kernel, out_shape=out_shape, interpret=True)(*args)
    return compiled, interpreted


def test_if_elif_else_and_logic_compiled():
    x, y = _normal(0, (256,)), _normal(1, (256,))
    out = jax.ShapeDtypeStruct((256,), jnp.float32)
    got, ref = _both(if_elif_else_kernel, x, out_shape=out)
    xn = np.asarray(x)
    np.testing.assert_allclose(got, np.where(xn > 1, xn * 2, np.where(xn < -1, -xn, 0.5)),
                               rtol=1e-6)
    np.testing.assert_allclose(got, ref, rtol=1e-6)
    got, ref = _both(logic_kernel, x, y, out_shape=out)
    np.testing.assert_allclose(got, ref, rtol=1e-6)


def test_while_loops_compiled():
    def steps(X, O):
        (n,) = X.shape
        with T.Kernel(1, threads=128):
            count = T.alloc_var("int32", 0)
            total = T.alloc_var("float32", 0.0)
            while count < n and X[count] < 1.5:
                total += X[count]
                count = count + 1
            v = T.alloc_local((n,), "int32")
            for i in T.Parallel(n):
                v[i] = T.cast(T.abs(X[i]) * 20.0, "int32") + 1
                O[i] = 0.0
                while v[i] != 1:
                    v[i] = T.if_then_else(v[i] % 2 == 0, v[i] // 2, 3 * v[i] + 1)
                    O[i] = O[i] + 1.0
                O[i] = O[i] + total * 1000.0 + T.cast(count, "float32") * 1e6

    x = _normal(2, (64,))
    got, ref = _both(steps, x, out_shape=jax.ShapeDtypeStruct((64,), jnp.float32))
    np.testing.assert_allclose(got, ref, rtol=1e-5)


def test_kernel_styles_compiled():
    a, b = _normal(3, (64, 96)), _normal(4, (64, 96))
    got, _ = _both(eager_add, a, b)
    np.testing.assert_allclose(got, np.asarray(a) + np.asarray(b), rtol=1e-6)

    a16, b16 = _normal(5, (128, 64), jnp.float16), _normal(6, (64, 128), jnp.float16)
    got, ref = _both(matmul(128, 128, 64, 64, 64, 32), a16, b16)
    want = np.asarray(a16, np.float32) @ np.asarray(b16, np.float32)
    np.testing.assert_allclose(np.asarray(got, np.float32), want, rtol=2e-2, atol=2e-2)

    x = _normal(7, (16, 32))
    (pos, neg), _ = _both(split_kernel(16, 32, 128), x)
    np.testing.assert_allclose(pos, np.maximum(np.asarray(x), 0))
    np.testing.assert_array_equal(neg, (np.asarray(x) < 0).astype(np.int32))

    x = _normal(8, (64, 32))
    got, ref = _both(row_scale_factory(64, 32, 16, False), x)
    xn = np.asarray(x)
    np.testing.assert_allclose(got, xn / np.abs(xn).max(axis=1, keepdims=True), rtol=1e-5)
