"""Element-wise math on scalars and buffer elements, casts, floor division and dtype limits.

Functions of 16-bit floats compute in float32 and round back (as CUDA's half intrinsics do).
"""

from __future__ import annotations

import builtins

import numpy as np

from jtile.ir.nodes import Cast as IrCast, Call as IrCall, Const, Select, as_expr, binary, \
    call, traced_value_error
from jtile.ir.types import DType, as_dtype, value_range
from jtile.language.dtypes import as_element_dtype


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


def clamp(x, min_val, max_val):
    """`x` limited to [min_val, max_val] (TileLang's `T.clamp`): `T.max(T.min(x, max_val),
    min_val)`, element-wise on scalars and buffer elements, any arch."""
    return max(min(x, max_val), min_val)


def cast(x, dtype):
    """`x` converted to `dtype`; TileLang's `T.cast(value, dtype)`.

    Floats to ints truncate toward zero (as in C; values outside the int's range are undefined);
    between floats the result rounds to nearest even, and into float8 it saturates to the
    largest finite value (CUDA's __NV_SATFINITE). Works on any arch the dtype exists on.
    """
    dt = as_element_dtype(dtype, "T.cast")
    expr = as_expr(x, like=dt)
    return expr if expr.dtype is dt else IrCast(expr, dt)


def Cast(dtype, value):  # noqa: N802 (TileLang's name)
    """TileLang's `T.Cast(dtype, value)`: `T.cast` with the arguments the other way round."""
    return cast(value, dtype)


def _is_dtype_like(value) -> bool:
    return isinstance(value, (str, DType, np.dtype)) or isinstance(value, type)


def reinterpret(value, dtype):
    """The bits of the element `value` read as `dtype` (same width); TileLang's
    `T.reinterpret(value, dtype)` (its older order `(dtype, value)` is accepted too).

    E.g. `T.reinterpret(x, "uint32")` gives a float32's IEEE bits. CUDA: a register move, no
    conversion (any arch). bool has no defined bit pattern and is refused.
    """
    if _is_dtype_like(value) and not _is_dtype_like(dtype):
        value, dtype = dtype, value
    dt = as_element_dtype(dtype, "T.reinterpret")
    expr = as_expr(value)
    if expr.dtype.is_bool or dt.is_bool:
        raise traced_value_error(f"T.reinterpret from {expr.dtype} to {dt}: bool has no defined "
                                 "bit pattern; use T.cast")
    if expr.dtype.bits != dt.bits:
        raise traced_value_error(
            f"T.reinterpret from {expr.dtype} ({expr.dtype.bits} bits) to {dt} ({dt.bits} bits): "
            "the widths must be equal; use T.cast to convert values")
    return expr if expr.dtype is dt else IrCall("reinterpret", (expr,), dt)


def floordiv(a, b):
    """`floor(a / b)`, rounding toward -inf: TileLang's / TVM's floordiv, the same as `a // b`
    on traced values (and Python's `//`). `T.floordiv(-7, 2)` is -4. Two Python numbers give a
    Python number; on floats this is `floor(a / b)`. Any arch."""
    if _static_number(a) and _static_number(b):
        return a // b
    return binary("floordiv", a, b)


def floormod(a, b):
    """`a - floor(a / b) * b`, whose sign follows the divisor: TileLang's / TVM's floormod,
    the same as `a % b` on traced integers (and Python's `%`). `T.floormod(-7, 2)` is 1. Two
    Python numbers give a Python number; on floats too (where `%` alone is C's fmod). Any
    arch."""
    if _static_number(a) and _static_number(b):
        return a % b
    r = binary("mod", a, b)
    if not r.dtype.is_float:
        return r
    # fmod's result takes the dividend's sign: move it to the divisor's.
    adjust = (r != 0) & ((r < 0) != (r.b < 0))
    return Select(adjust, r + r.b, r, r.dtype)


def truncdiv(a, b):
    """Integer division rounding toward zero, as in C: `T.truncdiv(-7, 2)` is -3 (TileLang's
    truncdiv; `//` floors). Integers only. Any arch."""
    if _static_number(a) and _static_number(b):
        if isinstance(a, (float, np.floating)) or isinstance(b, (float, np.floating)):
            raise traced_value_error("T.truncdiv divides integers; use / on floats")
        q = builtins.abs(int(a)) // builtins.abs(int(b))   # exact at any size, no float
        return q if (a < 0) == (b < 0) else -q
    q = binary("div", a, b)
    if q.dtype.is_float:
        raise traced_value_error(f"T.truncdiv on {q.dtype}: it divides integers; use / on floats")
    return q


def truncmod(a, b):
    """The remainder of `T.truncdiv`, whose sign follows the dividend as in C's `%`:
    `T.truncmod(-7, 2)` is -1 (TileLang's truncmod; `%` follows the divisor). Integers only.
    Any arch."""
    if _static_number(a) and _static_number(b):
        return a - truncdiv(a, b) * b
    q = truncdiv(a, b)
    return q.a - q * q.b


def _static_number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def infinity(dtype):
    """+inf of a floating dtype."""
    dt = as_dtype(dtype)
    if not dt.is_float:
        raise traced_value_error(f"T.infinity({dt}): only floating dtypes have infinities; "
                                 "use T.max_value for the largest integer")
    return Const(float("inf"), dt)


def max_value(dtype):
    """The largest finite value of `dtype`."""
    dt = as_dtype(dtype)
    return Const(value_range(dt)[1], dt)


def min_value(dtype):
    """The lowest finite value of `dtype` (negative for floats)."""
    dt = as_dtype(dtype)
    return Const(value_range(dt)[0], dt)
