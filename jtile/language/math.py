"""Element-wise math on scalars and buffer elements, casts and dtype helpers.

Functions of 16-bit floats compute in float32 and round back (as CUDA's half intrinsics do).
"""

from __future__ import annotations

from jtile.ir.nodes import Cast, Const, as_expr, call
from jtile.ir.types import as_dtype, value_range


def _unary(fn):
    def op(x):
        return call(fn, x)

    op.__name__ = fn
    op.__doc__ = f"Element-wise `{fn}` (CUDA: jt::{fn})."
    return op


exp = _unary("exp")
exp2 = _unary("exp2")
log = _unary("log")
log2 = _unary("log2")
sqrt = _unary("sqrt")
rsqrt = _unary("rsqrt")
abs = _unary("abs")  # noqa: A001 (TileLang's name)
tanh = _unary("tanh")
sigmoid = _unary("sigmoid")


def max(a, b):  # noqa: A001 (TileLang's name)
    """Element-wise maximum of two values."""
    return call("max", a, b)


def min(a, b):  # noqa: A001 (TileLang's name)
    """Element-wise minimum of two values."""
    return call("min", a, b)


def cast(x, dtype):
    """`x` converted to `dtype` (floats to ints truncate toward zero, as in C)."""
    dt = as_dtype(dtype)
    expr = as_expr(x, like=dt)
    return expr if expr.dtype is dt else Cast(expr, dt)


def infinity(dtype):
    """+inf of a floating dtype."""
    return Const(float("inf"), as_dtype(dtype))


def max_value(dtype):
    """The largest finite value of `dtype`."""
    dt = as_dtype(dtype)
    return Const(value_range(dt)[1], dt)


def min_value(dtype):
    """The lowest finite value of `dtype` (negative for floats)."""
    dt = as_dtype(dtype)
    return Const(value_range(dt)[0], dt)


class _DTypeName(str):
    """A dtype spelled as TileLang does (`T.float16`); calling it casts (`T.float32(x)`)."""

    def __call__(self, x):
        return cast(x, str(self))


bool_ = _DTypeName("bool")
int8 = _DTypeName("int8")
int16 = _DTypeName("int16")
int32 = _DTypeName("int32")
int64 = _DTypeName("int64")
uint8 = _DTypeName("uint8")
uint16 = _DTypeName("uint16")
uint32 = _DTypeName("uint32")
uint64 = _DTypeName("uint64")
float16 = _DTypeName("float16")
bfloat16 = _DTypeName("bfloat16")
float32 = _DTypeName("float32")
float64 = _DTypeName("float64")
float8_e4m3 = _DTypeName("float8_e4m3")
float8_e5m2 = _DTypeName("float8_e5m2")
