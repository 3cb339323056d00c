"""TileLang's dtype names: `T.float16`, `T.float`, `T.bool`, ... and `T.dtype(...)`.

Each name is a `dtype`: a string (so it goes wherever a dtype string goes: `T.alloc_shared(
shape, T.float16)`, `T.Tensor(shape, T.float32)`, `T.cast(x, T.int8)`) that can also be called
to make a typed value, as in TileLang: `T.float32(1.0)` is a float32 constant, `T.int32(x)`
casts a traced value, `T.float32("inf")` is +inf.

This module assigns names such as `bool`, `int` and `float` at module level (TileLang's names),
so the code above them reaches Python's own types through `builtins`.
"""

from __future__ import annotations

import builtins
import math

import numpy as np

from jtile.errors import JtileError
from jtile.ir.nodes import Buffer, Cast, Const, Expr, as_expr, traced_value_error
from jtile.ir.types import DType, as_dtype, value_range

# TileLang's short names and the canonical names it displays them as (`T.float` is "float32").
_DISPLAY_NAMES = {"float": "float32", "double": "float64", "half": "float16", "int": "int32",
                  "uint": "uint32", "long": "int64", "short": "int16", "ulong": "uint64"}

# Spellings of special float values TileLang accepts in `T.float32("inf")`.
_SPECIAL_FLOATS = {"inf": builtins.float("inf"), "-inf": builtins.float("-inf"),
                   "nan": builtins.float("nan")}


class dtype(builtins.str):  # noqa: N801 (TileLang's name)
    """A TileLang dtype name: a string that is also callable to make a typed value.

    `T.dtype(x)` accepts a dtype string, another `T.dtype`, a NumPy/JAX dtype or scalar type, or
    Python's `bool`, `int` (int32) and `float` (float32), and returns the canonical name
    (`T.dtype("float") == "float32"`). An unknown or unsupported dtype is a JtileError that says
    what jtile supports.
    """

    def __new__(cls, value):
        if isinstance(value, builtins.str):
            name = _DISPLAY_NAMES.get(value, value)
            as_dtype(name)  # refuses unknown and unsupported names, saying what to use
        else:
            name = builtins.str(as_dtype(value))
        return builtins.str.__new__(cls, name)

    @property
    def element(self) -> DType:
        """jtile's element type for this name."""
        return as_dtype(builtins.str(self))

    @property
    def bits(self) -> builtins.int:
        """Width in bits (8 for bool, as stored)."""
        return self.element.bits

    @property
    def lanes(self) -> builtins.int:
        """Always 1: jtile has no vector dtypes."""
        return 1

    def __repr__(self) -> builtins.str:
        return f"T.dtype({builtins.str.__repr__(self)})"

    def __call__(self, value=None, is_size_var: builtins.bool = False):
        """A value of this dtype: a constant from a Python number or "inf"/"-inf"/"nan", or a
        cast of a traced value (`T.int32(x)`)."""
        if value is None or is_size_var:
            raise traced_value_error(
                f"T.{self}() without a value declares a symbolic variable in TileLang; in jtile "
                f"a symbolic dimension is T.dynamic(\"M\") (or a size read from X.shape), and "
                f"T.{self}(x) casts x, T.{self}(1) is a constant")
        dt = self.element
        if isinstance(value, builtins.str):
            if value not in _SPECIAL_FLOATS or not dt.is_float:
                raise traced_value_error(
                    f"T.{self}({value!r}): a string value must be 'inf', '-inf' or 'nan' and the "
                    "dtype a float type")
            return Const(_SPECIAL_FLOATS[value], dt)
        if isinstance(value, (Expr, Buffer)):
            expr = as_expr(value, like=dt)
            return expr if expr.dtype is dt else Cast(expr, dt)
        return typed_constant(value, dt, f"T.{self}")


def typed_constant(value, dt: DType, what: builtins.str) -> Expr:
    """A Python or NumPy number as a constant of `dt`, refusing values the type cannot hold."""
    if isinstance(value, np.generic):
        value = value.item()
    if not isinstance(value, (builtins.int, builtins.float)):
        raise traced_value_error(f"{what}({value!r}): expected a number, a traced value, or "
                                 "'inf' / '-inf' / 'nan'")
    if dt.is_bool:
        return Const(builtins.bool(value), dt)
    low, high = value_range(dt)
    if dt.is_int:
        if isinstance(value, builtins.float):
            if not math.isfinite(value):
                raise traced_value_error(f"{what}({value!r}): {dt} has no infinities or NaN")
            value = builtins.int(value)  # C's conversion: truncation toward zero
        if not low <= value <= high:
            raise traced_value_error(f"{what}({value!r}): the value does not fit {dt} "
                                     f"(range {low}..{high})")
        return Const(builtins.int(value), dt)
    if math.isfinite(value) and builtins.abs(value) > high:
        raise traced_value_error(f"{what}({value!r}): the value overflows {dt} "
                                 f"(largest finite {high:g})")
    return Const(builtins.float(value), dt)


def as_element_dtype(value, what: builtins.str) -> DType:
    """`as_dtype` with its error raised at the user's line of the `what` call."""
    try:
        return as_dtype(value)
    except JtileError as error:
        raise traced_value_error(f"{what}: {error}") from None


# TileLang's names (tilelang.language.dtypes). `bool_` is jtile's older spelling of `bool`.
bool = dtype("bool")  # noqa: A001
bool_ = bool
short = dtype("short")
int = dtype("int")  # noqa: A001
uint = dtype("uint")
long = dtype("long")
half = dtype("half")
float = dtype("float")  # noqa: A001
double = dtype("double")
int8 = dtype("int8")
int16 = dtype("int16")
int32 = dtype("int32")
int64 = dtype("int64")
uint8 = dtype("uint8")
uint16 = dtype("uint16")
uint32 = dtype("uint32")
uint64 = dtype("uint64")
float16 = dtype("float16")
bfloat16 = dtype("bfloat16")
float32 = dtype("float32")
float64 = dtype("float64")
float8_e4m3 = dtype("float8_e4m3")
float8_e4m3fn = dtype("float8_e4m3fn")
float8_e5m2 = dtype("float8_e5m2")
tfloat32 = dtype("tfloat32")

DTYPE_NAMES = (
    "bool", "bool_", "short", "int", "uint", "long", "half", "float", "double", "int8", "int16",
    "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float16", "bfloat16", "float32",
    "float64", "float8_e4m3", "float8_e4m3fn", "float8_e5m2", "tfloat32",
)
