"""`T.cast(value, dtype)`, TileLang's `T.Cast(dtype, value)`, `.astype(dtype)` on elements and on
`T.alloc_var` variables, and `T.reinterpret`: interpret mode, generated CUDA and (on a GPU) the
compiled kernel agree."""

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest

import jtile
import jtile.language as T
from tests.language.kernel_runs import run_both_ways

N = 128


def _spec(shape, dtype):
    return jax.ShapeDtypeStruct(shape, dtype)


def test_cast_Cast_and_astype_agree():
    def kernel(X, O):
        with T.Kernel(1, threads=128):
            for i in T.Parallel(N):
                O[0, i] = T.cast(T.cast(X[i], "int32"), "float32")
                O[1, i] = T.Cast("int32", X[i]) * 2
                O[2, i] = X[i].astype("int32") + 0.5
                O[3, i] = (X[i] * 3).astype(T.float16).astype(T.float32)

    x = np.random.default_rng(0).uniform(-100, 100, N).astype(np.float32)
    (out,), cuda = run_both_ways(kernel, [x], _spec((4, N), jnp.float32))
    truncated = x.astype(np.int32).astype(np.float32)
    np.testing.assert_array_equal(out[0], truncated)
    np.testing.assert_array_equal(out[1], truncated * 2)
    np.testing.assert_array_equal(out[2], truncated + 0.5)
    np.testing.assert_array_equal(out[3], (x * 3).astype(np.float16).astype(np.float32))
    assert "jt::cast<int>" in cuda and "jt::cast<jt::half>" in cuda


def test_astype_on_an_alloc_var():
    def kernel(X, O):
        with T.Kernel(1, threads=128):
            total = T.alloc_var("float32", 0.0)
            for k in T.serial(N):
                total[0] = total + X[k]
            count = T.alloc_var(T.int32, N)
            for i in T.Parallel(N):
                O[i] = total.astype("int32") + count.astype("float32") * 0.5 + i

    x = np.random.default_rng(1).uniform(0, 4, N).astype(np.float32)
    (out,), _ = run_both_ways(kernel, [x], _spec((N,), jnp.float32), rtol=1e-6)
    total = np.float32(0)
    for value in x:
        total = np.float32(total + value)
    expected = np.int32(total) + N * 0.5 + np.arange(N)
    np.testing.assert_allclose(out, expected.astype(np.float32), rtol=1e-6)


def test_casts_into_float8_saturate_as_cuda_does():
    """CUDA's __nv_fp8 conversions saturate to the largest finite value (__NV_SATFINITE);
    interpret mode does the same instead of overflowing to NaN (e4m3) or inf (e5m2)."""
    def kernel(X, O, P):
        with T.Kernel(1, threads=128):
            for i in T.Parallel(N):
                O[i] = T.cast(X[i], T.float8_e4m3)
                P[i] = T.cast(X[i], T.float8_e5m2)

    x = np.random.default_rng(2).uniform(-1000, 1000, N).astype(np.float32)
    x[:4] = (1e6, -1e6, 448.0, 3.0)
    (o, p), _ = run_both_ways(kernel, [x], (_spec((N,), jnp.float8_e4m3fn),
                                            _spec((N,), jnp.float8_e5m2)))
    e4m3 = np.clip(x, -448, 448).astype(ml_dtypes.float8_e4m3fn)
    e5m2 = np.clip(x, -57344, 57344).astype(ml_dtypes.float8_e5m2)
    np.testing.assert_array_equal(o.astype(np.float32), e4m3.astype(np.float32))
    np.testing.assert_array_equal(p.astype(np.float32), e5m2.astype(np.float32))
    assert o.astype(np.float32)[0] == 448.0 and o.astype(np.float32)[1] == -448.0


def test_reinterpret_reads_the_bits():
    def kernel(X, U, O, F):
        with T.Kernel(1, threads=128):
            for i in T.Parallel(N):
                O[i] = T.reinterpret(X[i], "uint32") >> 23          # biased exponent + sign
                F[i] = T.reinterpret("float32", U[i] | 0x3F800000)  # TileLang's older order

    rng = np.random.default_rng(3)
    x = rng.uniform(-1e3, 1e3, N).astype(np.float32)
    u = rng.integers(0, 1 << 23, N, dtype=np.uint32)
    (o, f), cuda = run_both_ways(kernel, [x, u], (_spec((N,), jnp.uint32),
                                                  _spec((N,), jnp.float32)))
    np.testing.assert_array_equal(o, x.view(np.uint32) >> 23)
    np.testing.assert_array_equal(f, (u | 0x3F800000).view(np.float32))
    assert "jt::bitcast<unsigned>" in cuda and "jt::bitcast<float>" in cuda


def test_reinterpret_of_16_bit_types():
    def kernel(X, O):
        with T.Kernel(1, threads=128):
            for i in T.Parallel(N):
                O[i] = T.reinterpret(X[i], T.uint16) ^ 0x8000   # flips the sign bit

    x = np.random.default_rng(4).uniform(-8, 8, N).astype(ml_dtypes.bfloat16)
    (out,), _ = run_both_ways(kernel, [x], _spec((N,), jnp.uint16))
    np.testing.assert_array_equal(out, x.view(np.uint16) ^ np.uint16(0x8000))


@pytest.mark.parametrize("case, rule", [
    ("width", r"T.reinterpret from float32 \(32 bits\) to float16 \(16 bits\): the widths must "
              "be equal"),
    ("bool", "T.reinterpret from bool to int8: bool has no defined bit pattern"),
    ("dtype", "T.cast: unknown dtype 'floaty'"),
])
def test_bad_casts_are_refused(case, rule):
    def bad(X, O):
        with T.Kernel(1, threads=128):
            for i in T.Parallel(N):
                if case == "width":
                    O[i] = T.reinterpret(X[i], "float16")
                elif case == "bool":
                    O[i] = T.reinterpret(X[i] > 0, "int8")
                else:
                    O[i] = T.cast(X[i], "floaty")

    f = jtile.pallas_like(bad, out_shape=_spec((N,), jnp.float32), interpret=True)
    with pytest.raises(jtile.JtileTraceError, match=r"bad \(test_casts.py:\d+\): "
                       r"test_casts.py:\d+: " + rule):
        f(np.ones(N, np.float32))
