"""Element-wise math on scalars and buffer elements, casts, floor division and dtype limits.

Functions of 16-bit floats compute in float32 and round back (as CUDA's half intrinsics do).
The module defines TileLang's `abs`, `max`, `min`, `round` and `pow`, so Python's own are
reached through `builtins` here.
"""

from __future__ import annotations

import builtins
import math

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


def _library_unary(fn, doc):
    """A function of CUDA's math library on floats (TileLang's, from TVM's `tir` ops).

    Integer and bool arguments compute in float32, as do float8 ones (the library has no
    8-bit forms); 16-bit floats compute in float32 and round back.
    """
    def op(x):
        operand = _library_operand(x)
        return IrCall(fn, (operand,), operand.dtype)

    op.__name__ = op.__qualname__ = fn
    op.__doc__ = f"{doc} (element-wise; CUDA: {fn}f / {fn}, full accuracy; any arch)."
    return op


def _library_operand(x):
    expr = as_expr(x)
    if expr.dtype.is_float and expr.dtype.bits >= 16:
        return expr
    return IrCast(expr, DType.float32)


sin = _library_unary("sin", "Sine of x in radians")
cos = _library_unary("cos", "Cosine of x in radians")
tan = _library_unary("tan", "Tangent of x in radians")
asin = _library_unary("asin", "Arc sine, in [-pi/2, pi/2]")
acos = _library_unary("acos", "Arc cosine, in [0, pi]")
atan = _library_unary("atan", "Arc tangent, in [-pi/2, pi/2]")
sinh = _library_unary("sinh", "Hyperbolic sine")
cosh = _library_unary("cosh", "Hyperbolic cosine")
asinh = _library_unary("asinh", "Inverse hyperbolic sine")
acosh = _library_unary("acosh", "Inverse hyperbolic cosine")
atanh = _library_unary("atanh", "Inverse hyperbolic tangent")
erf = _library_unary("erf", "The error function")
log10 = _library_unary("log10", "Base-10 logarithm")
log1p = _library_unary("log1p", "log(1 + x), accurate for small x")
exp10 = _library_unary("exp10", "10 ** x")


def _rounding(fn, doc):
    """Rounding to an integral value in the argument's float type; integers are already
    integral and come back unchanged."""
    library = _library_unary(fn, doc)

    def op(x):
        expr = as_expr(x)
        return expr if expr.dtype.is_int or expr.dtype.is_bool else library(expr)

    op.__name__ = op.__qualname__ = fn
    op.__doc__ = library.__doc__ + " Integers come back unchanged."
    return op


floor = _rounding("floor", "The largest integral value <= x")
ceil = _rounding("ceil", "The smallest integral value >= x")
trunc = _rounding("trunc", "x rounded toward zero")
round = _rounding("round", "x rounded to the nearest integral value, halfway cases away from "  # noqa: A001
                  "zero (C's round)")
nearbyint = _rounding("nearbyint", "x rounded to the nearest integral value, halfway cases to "
                      "even")


def _library_binary(fn, doc):
    def op(a, b):
        expr = call(fn, a, b)
        if expr.dtype.is_float and expr.dtype.bits >= 16:
            return expr
        return IrCall(fn, tuple(IrCast(x, DType.float32) if x.dtype is not DType.float32 else x
                                for x in expr.args), DType.float32)

    op.__name__ = op.__qualname__ = fn
    op.__doc__ = (f"{doc} (element-wise; CUDA: {fn}f / {fn}, full accuracy; any arch). Integer "
                  "arguments compute in float32.")
    return op


pow = _library_binary("pow", "a raised to the power b")  # noqa: A001 (TileLang's name)
atan2 = _library_binary("atan2", "The angle of the point (b, a), in [-pi, pi]")
hypot = _library_binary("hypot", "sqrt(a * a + b * b) without overflow")
copysign = _library_binary("copysign", "The magnitude of a with the sign of b")


def fmod(a, b):
    """The remainder of a / b rounded toward zero, whose sign follows the dividend (C's fmod;
    TileLang's T.fmod). On integers it is `T.truncmod`. Any arch."""
    if _static_number(a) and _static_number(b):
        return math.fmod(a, b) if isinstance(a, float) or isinstance(b, float) \
            else truncmod(a, b)
    r = binary("mod", a, b)
    return r if r.dtype.is_float else truncmod(a, b)


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
    if dtype == "handle":   # TVM's opaque handle: only T.attr's "reduce_scope" takes one
        from jtile.language.thread_allreduce import Handle

        return Handle()
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
