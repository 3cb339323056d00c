"""TileLang's function spellings of operators jtile's expressions already have: bitwise ops,
shifts, `T.Select`, and the float classification tests."""

from __future__ import annotations

from jtile.ir.nodes import as_expr
from jtile.language.control import if_then_else
from jtile.language.math import abs as _abs
from jtile.language.math import infinity


def bitwise_and(a, b):
    """`a & b` on integers."""
    return as_expr(a) & b


def bitwise_or(a, b):
    """`a | b` on integers."""
    return as_expr(a) | b


def bitwise_xor(a, b):
    """`a ^ b` on integers."""
    return as_expr(a) ^ b


def bitwise_not(a):
    """`~a` on integers."""
    return ~as_expr(a)


def shift_left(a, b):
    """`a << b`."""
    return as_expr(a) << b


def shift_right(a, b):
    """`a >> b` (arithmetic on signed integers, as in C)."""
    return as_expr(a) >> b


def Select(cond, a, b):  # noqa: N802 - TileLang's (TVM's) spelling
    """TVM's `Select`: `T.if_then_else(cond, a, b)`."""
    return if_then_else(cond, a, b)


def isnan(x):
    """Whether a float is NaN (the one value unequal to itself)."""
    x = as_expr(x)
    return x != x


def isinf(x):
    """Whether a float is +inf or -inf (always false for integers, as in TVM)."""
    x = as_expr(x)
    if not x.dtype.is_float:
        return x != x
    return _abs(x) == infinity(x.dtype)
