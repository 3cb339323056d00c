"""Integer expressions whose value is known while the kernel is traced.

Interpret mode evaluates expressions with jax.numpy inside jax.jit, where every value is a
tracer, even a constant. The mbarrier model (`barriers.py`) needs barrier indices, parities and
loop bounds as Python ints, so this evaluates the integer subset of the IR in Python, with the
semantics of `expressions.py`: integer `/` truncates toward zero, `//` and `%` round toward
-inf (TileLang's floordiv and floormod), results wrap to their type's width, `>>` is arithmetic
on signed types. Anything else (a float, a load from memory, a variable not bound to an int,
a division by zero, an out-of-range shift) gives None: not static.
"""

from __future__ import annotations

from typing import Optional

from jtile.ir.nodes import BinOp, Call, Cast, Const, Select, UnOp, Var
from jtile.ir.types import DType, promote


def _wrap(value: int, dtype: DType) -> Optional[int]:
    """`value` as `dtype` holds it: 0/1 for bool, two's complement of the type's width."""
    if dtype.is_bool:
        return int(bool(value))
    if not dtype.is_int:
        return None
    bits = dtype.bits
    value &= (1 << bits) - 1
    if dtype.is_signed and value >= 1 << (bits - 1):
        value -= 1 << bits
    return value


def _truncdiv(a: int, b: int) -> int:
    q = abs(a) // abs(b)
    return q if (a < 0) == (b < 0) else -q


_COMPARE = {"lt": int.__lt__, "le": int.__le__, "gt": int.__gt__, "ge": int.__ge__,
            "eq": int.__eq__, "ne": int.__ne__}


def static_int(e, values: dict) -> Optional[int]:
    """The value of integer (or bool, as 0/1) expression `e` with variables bound by `values`
    (id(Var) -> int), or None when it is not known at trace time."""
    if isinstance(e, Const):   # bool is an int too
        return _wrap(int(e.value), e.dtype) if isinstance(e.value, int) else None
    if isinstance(e, Var):
        return values.get(id(e))
    if isinstance(e, BinOp):
        return _binary(e, values)
    if isinstance(e, UnOp):
        a = static_int(e.a, values)
        if a is None:
            return None
        if e.op == "not":
            return int(not a)
        return _wrap(-a, e.dtype) if e.op == "neg" else None
    if isinstance(e, Cast):
        if e.value.dtype.is_float:
            return None
        a = static_int(e.value, values)
        return None if a is None else _wrap(a, e.dtype)
    if isinstance(e, Select):
        cond = static_int(e.cond, values)
        if cond is None:
            return None
        chosen = static_int(e.a if cond else e.b, values)
        return None if chosen is None else _wrap(chosen, e.dtype)
    if isinstance(e, Call) and e.fn in ("max", "min", "abs") and not e.dtype.is_float:
        args = [static_int(a, values) for a in e.args]
        if any(a is None for a in args):
            return None
        if e.fn == "abs":
            return _wrap(abs(args[0]), e.dtype) if len(args) == 1 else None
        return _wrap((max if e.fn == "max" else min)(args), e.dtype) if len(args) == 2 \
            else None
    return None


def _binary(e: BinOp, values: dict) -> Optional[int]:
    if e.a.dtype.is_float or e.b.dtype.is_float:
        return None
    a, b = static_int(e.a, values), static_int(e.b, values)
    if a is None or b is None:
        return None
    op = e.op
    if op in _COMPARE:
        common = promote(e.a.dtype, e.b.dtype)
        a, b = _wrap(a, common), _wrap(b, common)
        return None if a is None or b is None else int(_COMPARE[op](a, b))
    if op == "and":
        return int(bool(a) and bool(b))
    if op == "or":
        return int(bool(a) or bool(b))
    dtype = e.dtype
    a, b = _wrap(a, dtype), _wrap(b, dtype)   # computed in the result's type, as compiled
    if a is None or b is None:
        return None
    if op in ("div", "floordiv", "mod") and b == 0:
        return None   # undefined in C; the GPU's result is not modelled
    if op in ("shl", "shr") and not 0 <= b < dtype.bits:
        return None
    result = {
        "add": lambda: a + b, "sub": lambda: a - b, "mul": lambda: a * b,
        "div": lambda: _truncdiv(a, b), "floordiv": lambda: a // b, "mod": lambda: a % b,
        "max": lambda: max(a, b), "min": lambda: min(a, b),
        "xor": lambda: a ^ b, "bitand": lambda: a & b, "bitor": lambda: a | b,
        "shl": lambda: a << b,
        # Operands are already wrapped to the type, so `>>` on an unsigned one (never negative)
        # is logical and on a signed one arithmetic, as in C.
        "shr": lambda: a >> b,
    }.get(op)
    return None if result is None else _wrap(result(), dtype)
