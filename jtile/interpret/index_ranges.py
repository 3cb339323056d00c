"""The values an integer index takes while the loops around it run, known at trace time.

The race check of T.ws regions (`region_races.py`) asks which elements of a shared buffer a
statement touches. Inside the statement, T.Parallel and serial loop variables and the thread
index run over ranges; variables of loops the scheduler unrolled hold Python ints (`static`,
as in `static_ints.py`). `span` bounds an index over all of those values by interval
arithmetic; `dense` says whether the index takes every value of that bound, so that a box
built from it is touched whole, not only bounded. Anything else (a block index, a load, an
operation not modelled here) has no bound.
"""

from __future__ import annotations

from typing import Optional

from jtile.ir.affine import affine_given
from jtile.ir.nodes import BinOp, Call, Cast, Select, UnOp, Var, VarKind
from jtile.interpret.static_ints import static_int

# The key of the thread index in `ranges`: the thread variable, or any Var of kind THREAD.
THREAD = "thread"


def _range_of(v: Var, ranges: dict) -> Optional[tuple]:
    found = ranges.get(id(v))
    if found is None and v.kind is VarKind.THREAD:
        found = ranges.get(THREAD)
    return found


def span(e, static: dict, ranges: dict) -> Optional[tuple]:
    """(lowest, highest) value of integer expression `e`, or None when not bounded here.
    `ranges` maps id(Var) (or THREAD) to the (first, last) value that variable takes."""
    value = static_int(e, static)
    if value is not None:
        return value, value
    if isinstance(e, Var):
        return _range_of(e, ranges)
    if isinstance(e, Cast):
        if not (e.dtype.is_int and e.value.dtype.is_int):
            return None
        inner = span(e.value, static, ranges)
        # A value the type cannot hold would wrap; such an index is not followed.
        if inner is None or not e.dtype.is_signed and inner[0] < 0 or \
                max(abs(inner[0]), abs(inner[1])) >= 1 << (e.dtype.bits - 1):
            return None
        return inner
    if isinstance(e, UnOp) and e.op == "neg":
        inner = span(e.a, static, ranges)
        return None if inner is None else (-inner[1], -inner[0])
    if isinstance(e, Select):
        a, b = span(e.a, static, ranges), span(e.b, static, ranges)
        return None if a is None or b is None else (min(a[0], b[0]), max(a[1], b[1]))
    if isinstance(e, Call) and e.fn in ("max", "min") and len(e.args) == 2:
        return _binary(e.fn, span(e.args[0], static, ranges), span(e.args[1], static, ranges))
    if isinstance(e, BinOp) and not (e.a.dtype.is_float or e.b.dtype.is_float):
        return _binary(e.op, span(e.a, static, ranges), span(e.b, static, ranges))
    return None


def _binary(op: str, a, b) -> Optional[tuple]:
    if a is None or b is None:
        return None
    if op == "add":
        return a[0] + b[0], a[1] + b[1]
    if op == "sub":
        return a[0] - b[1], a[1] - b[0]
    if op in ("mul", "min", "max"):
        fn = {"mul": lambda x, y: x * y, "min": min, "max": max}[op]
        if op != "mul":
            return fn(a[0], b[0]), fn(a[1], b[1])
        corners = [fn(x, y) for x in a for y in b]
        return min(corners), max(corners)
    if b[0] != b[1] or b[0] <= 0:
        return None   # only division by a known positive constant is followed
    c = b[0]
    if op == "shr" and c < 31:
        op, c = "floordiv", 1 << c   # arithmetic shift: floor division by a power of 2
    if op == "floordiv" or (op == "div" and a[0] >= 0):
        return a[0] // c, a[1] // c
    if op == "mod":
        if a[0] // c == a[1] // c:   # within one period: the values stay in order
            return a[0] % c, a[1] % c
        return 0, c - 1
    if op == "shl" and c < 31:
        return a[0] << c, a[1] << c
    if op == "bitand" and a[0] >= 0:
        return 0, min(a[1], c)
    return None


def dense(e, extent: int, static: dict) -> Optional[frozenset]:
    """The ids of the variables of `e` when [e, e + extent) over their ranges covers every
    value of its span (`e` is a constant, or one variable times a step of at most `extent`
    plus a constant), else None."""
    form = affine_given(e, lambda x: static_int(x, static))
    if form is None or len(form.terms) > 1:
        return None
    if any(abs(c) > extent for c in form.terms.values()):
        return None
    return frozenset(id(v) for v in form.terms)
