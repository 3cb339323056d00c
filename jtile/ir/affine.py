"""Affine forms of index expressions: `sum(coef * var) + const` with integer coefficients.

Used to prove that a slice has a static extent (`X[k*64:(k+1)*64]`), to find which loop
variable an index moves with (vectorisation), and to fold constants.
"""

from __future__ import annotations

from typing import Optional

from jtile.ir.nodes import BinOp, Cast, Const, Expr, UnOp, Var


class Affine:
    """An immutable `terms . vars + const` form; `terms` maps Var (by identity) to coefficient."""

    __slots__ = ("terms", "const")

    def __init__(self, terms: dict, const: int):
        self.terms = {v: c for v, c in terms.items() if c != 0}
        self.const = const

    def __add__(self, other: "Affine") -> "Affine":
        terms = dict(self.terms)
        for v, c in other.terms.items():
            terms[v] = terms.get(v, 0) + c
        return Affine(terms, self.const + other.const)

    def scale(self, k: int) -> "Affine":
        return Affine({v: c * k for v, c in self.terms.items()}, self.const * k)

    @property
    def is_const(self) -> bool:
        return not self.terms

    def coefficient(self, var: Var) -> int:
        return self.terms.get(var, 0)


def _linear_form(expr: Expr, leaf) -> Optional[Affine]:
    """Sums, differences, negations, integer casts and products by constants of what `leaf`
    makes of the remaining subexpressions (None: not linear)."""
    if isinstance(expr, UnOp) and expr.op == "neg":
        inner = _linear_form(expr.a, leaf)
        return inner.scale(-1) if inner is not None else None
    if isinstance(expr, Cast) and expr.dtype.is_int and expr.value.dtype.is_int:
        return _linear_form(expr.value, leaf)
    if isinstance(expr, BinOp) and expr.op in ("add", "sub", "mul"):
        a, b = _linear_form(expr.a, leaf), _linear_form(expr.b, leaf)
        if a is not None and b is not None:
            if expr.op == "add":
                return a + b
            if expr.op == "sub":
                return a + b.scale(-1)
            if a.is_const:
                return b.scale(a.const)
            if b.is_const:
                return a.scale(b.const)
    return leaf(expr)


def _exact_leaf(expr: Expr) -> Optional[Affine]:
    if isinstance(expr, Const):
        if isinstance(expr.value, bool) or not isinstance(expr.value, int):
            return None
        return Affine({}, expr.value)
    if isinstance(expr, Var):
        return Affine({expr: 1}, 0)
    return None


def affine(expr: Expr) -> Optional[Affine]:
    """The affine form of an integer expression, or None when it is not affine."""
    return _linear_form(expr, _exact_leaf)


def affine_given(expr: Expr, value_of) -> Optional[Affine]:
    """The affine form of `expr` in which every subexpression `value_of` gives an int for is
    that constant (a loop variable bound to a value, `(k & 1)` with k bound), or None."""
    def leaf(e: Expr) -> Optional[Affine]:
        value = value_of(e)
        if value is not None:
            return Affine({}, value)
        return Affine({e: 1}, 0) if isinstance(e, Var) else None

    return _linear_form(expr, leaf)


def static_value(expr) -> Optional[int]:
    """The integer value of an expression that does not depend on any variable."""
    if isinstance(expr, int) and not isinstance(expr, bool):
        return expr
    if not isinstance(expr, Expr):
        return None
    form = affine(expr)
    if form is not None and form.is_const:
        return form.const
    return None


def _structure(expr) -> Optional[tuple]:
    """A key equal for expressions that compute the same value at the same point (Vars and
    Buffers by identity), or None for a node kind it does not know."""
    if isinstance(expr, Const):
        return ("const", expr.value, expr.dtype)
    if isinstance(expr, Var):
        return ("var", id(expr))
    from jtile.ir.nodes import Call, Load, Select

    parts = {BinOp: lambda e: (e.op, e.a, e.b), UnOp: lambda e: (e.op, e.a),
             Cast: lambda e: (e.value,), Call: lambda e: (e.fn,) + tuple(e.args),
             Select: lambda e: (e.cond, e.a, e.b),
             Load: lambda e: (id(e.buffer),) + tuple(e.indices)}.get(type(expr))
    if parts is None:
        return None
    key = [type(expr).__name__, expr.dtype]
    for part in parts(expr):
        if isinstance(part, Expr):
            part = _structure(part)
            if part is None:
                return None
        key.append(part)
    return tuple(key)


def _opaque_leaf(expr: Expr) -> Optional[Affine]:
    """A variable or constant as itself; any other integer subexpression (a load `off[b]`,
    `k // 2`) as an opaque term equal to every structurally equal one."""
    form = _exact_leaf(expr)
    if form is not None:
        return Affine({_structure(v): c for v, c in form.terms.items()}, form.const)
    key = _structure(expr) if expr.dtype.is_int else None
    return Affine({key: 1}, 0) if key is not None else None


def _affine_over_atoms(expr: Expr) -> Optional[Affine]:
    """Like `affine`, but non-affine integer subexpressions are opaque terms."""
    return _linear_form(expr, _opaque_leaf)


def static_difference(stop: Expr, start: Expr) -> Optional[int]:
    """`stop - start` when it is the same integer for every value of the variables and of
    the loaded values (`X[off[b] : off[b] + 64]` has length 64)."""
    a, b = _affine_over_atoms(stop), _affine_over_atoms(start)
    if a is None or b is None:
        return None
    diff = a + b.scale(-1)
    return diff.const if diff.is_const else None


def aligned(expr, multiple: int) -> bool:
    """True when `expr` is a multiple of `multiple` for every value of its variables (and of
    its non-affine integer parts: `start // 8 * 8` is a multiple of 8)."""
    if multiple == 1:
        return True
    form = _affine_over_atoms(expr)
    if form is None:
        return False
    return form.const % multiple == 0 and all(c % multiple == 0 for c in form.terms.values())


def aligned_vector_width(region, width: int) -> int:
    """The widest of `width`, `width / 2`, ..., 1 elements at which `region` (of a global or
    shared buffer) moves in aligned vectors: its buffer's rows hold whole vectors and its
    start along the last dimension is a multiple of the width for every value of the
    variables."""
    while width > 1 and not (region.buffer.shape[-1] % width == 0 and
                             aligned(region.starts[-1], width)):
        width //= 2
    return max(width, 1)


def is_whole(region) -> bool:
    """Whether `region` is its whole buffer: full extents, every start statically 0."""
    return tuple(region.extents) == tuple(region.buffer.shape) and \
        all(static_value(s) == 0 for s in region.starts)


def never_equal(a: Expr, b: Expr) -> bool:
    """Whether two integer expressions differ for every value of their variables: their
    affine forms differ by a nonzero constant, or one is the other XOR a nonzero constant."""
    from jtile.ir.printer import expr_text

    fa, fb = affine(a), affine(b)
    if fa is not None and fb is not None:
        diff = fa + fb.scale(-1)
        return diff.is_const and diff.const != 0
    for x, y in ((a, b), (b, a)):
        if isinstance(y, BinOp) and y.op == "xor":
            for operand, other in ((y.a, y.b), (y.b, y.a)):
                value = static_value(other)
                if value and expr_text(operand) == expr_text(x):
                    return True
    return False
