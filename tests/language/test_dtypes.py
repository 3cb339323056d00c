"""TileLang's dtype names (`T.float16`, `T.float`, `T.bool`, ...) and `T.dtype`: strings that go
wherever a dtype goes, callable to make typed constants and casts."""

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest

import jtile
import jtile.language as T
from jtile.errors import JtileError
from jtile.ir.nodes import Cast, Const
from jtile.ir.types import DType
from tests.language.kernel_runs import run_both_ways

N = 128

# name -> (canonical string, jtile element type)
NAMES = {
    "bool": ("bool", DType.bool), "bool_": ("bool", DType.bool),
    "short": ("int16", DType.int16), "int": ("int32", DType.int32),
    "uint": ("uint32", DType.uint32), "long": ("int64", DType.int64),
    "half": ("float16", DType.float16), "float": ("float32", DType.float32),
    "double": ("float64", DType.float64),
    "int8": ("int8", DType.int8), "int16": ("int16", DType.int16),
    "int32": ("int32", DType.int32), "int64": ("int64", DType.int64),
    "uint8": ("uint8", DType.uint8), "uint16": ("uint16", DType.uint16),
    "uint32": ("uint32", DType.uint32), "uint64": ("uint64", DType.uint64),
    "float16": ("float16", DType.float16), "bfloat16": ("bfloat16", DType.bfloat16),
    "float32": ("float32", DType.float32), "float64": ("float64", DType.float64),
    "float8_e4m3": ("float8_e4m3", DType.float8_e4m3),
    "float8_e4m3fn": ("float8_e4m3fn", DType.float8_e4m3),
    "float8_e5m2": ("float8_e5m2", DType.float8_e5m2),
}


@pytest.mark.parametrize("name", sorted(NAMES))
def test_every_name_is_a_canonical_dtype_string(name):
    text, element = NAMES[name]
    value = getattr(T, name)
    assert isinstance(value, T.dtype) and isinstance(value, str)
    assert value == text and value.element is element
    assert value.bits == element.bits and value.lanes == 1
    assert T.dtype(value) == text and T.dtype(name.rstrip("_")) == text


def test_dtype_accepts_numpy_jax_and_python_types():
    assert T.dtype(np.float16) == "float16"
    assert T.dtype(jnp.bfloat16) == "bfloat16"
    assert T.dtype(np.dtype("uint8")) == "uint8"
    assert T.dtype(ml_dtypes.float8_e5m2) == "float8_e5m2"
    assert T.dtype(float) == "float32"        # TileLang reads Python float as float32
    assert T.dtype(int) == "int32"
    assert T.dtype(bool) == "bool"
    assert T.float == T.float32 and T.half == T.float16 and T.double == T.float64


@pytest.mark.parametrize("name, rule", [
    ("int4", "pack two 4-bit values"),
    ("float8_e8m0fnu", "dtype 'float8_e8m0fnu' is TileLang's but jtile does not support it"),
    ("float16x2", "vector dtypes are not element types in jtile"),
    ("complex64", "unknown dtype 'complex64'; expected one of bool, int8"),
])
def test_unsupported_dtypes_are_refused_saying_what_to_use(name, rule):
    with pytest.raises(JtileError, match=rule):
        T.dtype(name)


def test_dtype_names_work_where_dtype_strings_do():
    def kernel(X: T.Tensor((N,), T.float16), O: T.Tensor((N,), T.float)):
        with T.Kernel(1, threads=128):
            s = T.alloc_shared((N,), T.half)
            f = T.alloc_fragment((N,), T.float32)
            v = T.alloc_var(T.int, 3)
            T.copy(X, s)
            for i in T.Parallel(N):
                f[i] = T.cast(s[i], T.float) * T.float32(v) + T.max_value(T.float8_e4m3)
            T.copy(f, O)

    x = np.random.default_rng(0).uniform(-2, 2, N).astype(np.float16)
    (out,), _ = run_both_ways(kernel, [x], jax.ShapeDtypeStruct((N,), jnp.float32), rtol=1e-6)
    np.testing.assert_allclose(out, x.astype(np.float32) * 3 + 448.0, rtol=1e-6)


def test_calling_a_name_makes_typed_constants_and_casts():
    def kernel(X, O):
        with T.Kernel(1, threads=128):
            for i in T.Parallel(N):
                O[0, i] = T.float32(1.5) + T.float32(T.int8(X[i] * 0.4))  # truncates
                O[1, i] = T.float32(T.int32(X[i] * 100.0))                 # truncates
                O[2, i] = T.float32(T.bool(X[i]))                          # nonzero -> 1
                O[3, i] = T.if_then_else(X[i] > 0, T.float32("inf"), T.float32("-inf"))
                O[4, i] = T.float32(T.float16(X[i] * 3.0))                 # rounds to f16

    x = np.random.default_rng(1).uniform(-300, 300, N).astype(np.float32)
    x[:4] = (0.0, 127.9, -128.5, 0.25)
    (out,), _ = run_both_ways(kernel, [x], jax.ShapeDtypeStruct((5, N), jnp.float32))
    expected = np.stack([
        1.5 + (x * np.float32(0.4)).astype(np.int8).astype(np.float32),
        (x * 100.0).astype(np.int32).astype(np.float32),
        (x != 0).astype(np.float32),
        np.where(x > 0, np.inf, -np.inf),
        (x * 3.0).astype(np.float16).astype(np.float32),
    ])
    np.testing.assert_allclose(out[[0, 1, 2, 4]], expected[[0, 1, 2, 4]], rtol=1e-6)
    np.testing.assert_array_equal(out[3], expected[3])


def test_constants_are_typed_and_checked():
    from jtile.trace.builder import Builder, tracing
    from jtile.ir.nodes import SourceLoc

    with tracing(Builder("consts", SourceLoc("k.py", 1))):
        c = T.int8(-128)
        assert isinstance(c, Const) and c.dtype is DType.int8 and c.value == -128
        assert T.float16(2).dtype is DType.float16 and T.float16(2).value == 2.0
        assert T.uint32(7.9).value == 7                       # C conversion truncates
        assert T.bool(3).value is True
        assert isinstance(T.float32(T.int8(1) + T.int8(2)), Cast)  # a traced value is cast
        assert T.float32(T.float32(2.0)).value == 2.0               # same type: unchanged
        with pytest.raises(jtile.JtileTraceError, match=r"T.int8\(300\): the value does not "
                                                        r"fit int8 \(range -128..127\)"):
            T.int8(300)
        with pytest.raises(jtile.JtileTraceError, match=r"T.float16\(100000.0\): the value "
                                                        "overflows float16"):
            T.float16(1e5)
        with pytest.raises(jtile.JtileTraceError, match=r"T.int32\(\) without a value declares "
                                                        "a symbolic variable"):
            T.int32()
        with pytest.raises(jtile.JtileTraceError, match="'inf', '-inf' or 'nan'"):
            T.int32("inf")


def test_bool_underscore_still_works():
    def kernel(X, O):
        with T.Kernel(1, threads=128):
            flags = T.alloc_fragment((N,), T.bool_)
            for i in T.Parallel(N):
                flags[i] = X[i] > 0
            for i in T.Parallel(N):
                O[i] = T.if_then_else(flags[i], 1.0, 0.0)

    x = np.random.default_rng(2).uniform(-1, 1, N).astype(np.float32)
    (out,), _ = run_both_ways(kernel, [x], jax.ShapeDtypeStruct((N,), jnp.float32))
    np.testing.assert_array_equal(out, (x > 0).astype(np.float32))


def test_star_import_leaves_python_builtins_alone():
    namespace = {}
    exec("from jtile.language import *", namespace)
    assert "float" not in namespace and "int" not in namespace and "bool" not in namespace
    assert namespace["float32"] == "float32" and namespace["dtype"] is T.dtype
