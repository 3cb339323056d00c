"""Static bounds checks: is a tile region inside its buffer for every value of the indices?

Where it provably is, copies run without per-element guards.
"""

from __future__ import annotations

from typing import Optional

from jtile.ir import nodes as ir
from jtile.ir.affine import affine


def var_range(em, var: ir.Var) -> Optional[tuple]:
    if var.kind is ir.VarKind.BLOCK:
        return (0, em.kernel.grid[var.axis] - 1)
    if var.kind is ir.VarKind.THREAD:
        return (0, em.kernel.threads - 1)
    if em.parallel is not None:
        for v, extent in zip(em.parallel.loop.vars, em.parallel.loop.extents):
            if v is var:
                return (0, extent - 1)
    return em.var_ranges.get(var)


def expr_range(em, expr) -> Optional[tuple]:
    """(lowest, highest) value of an integer expression over its variables' ranges, or None
    when unknown. Affine forms, and min / max / % / // by constants of them."""
    form = affine(expr)
    if form is None:
        return _structured_range(em, expr) or _combined_range(em, expr)
    lo = hi = form.const
    for var, coef in form.terms.items():
        rng = var_range(em, var)
        if rng is None:
            return None
        a, b = coef * rng[0], coef * rng[1]
        lo += min(a, b)
        hi += max(a, b)
    return lo, hi


def bounds_condition(buf: ir.Buffer, idx: list, dims=None) -> str:
    """In-bounds test of idx (C expressions), over `dims` (default: every dimension); the
    unsigned compare also rejects negative indices."""
    dims = range(len(buf.shape)) if dims is None else dims
    return " && ".join(f"(unsigned)({idx[d]}) < {buf.shape[d]}u" for d in dims)


def unproven_bounds_condition(em, buf: ir.Buffer, indices) -> Optional[str]:
    """The in-bounds test of an element access to global memory over the dimensions whose
    index is not provably inside the buffer; None when every one is (or not global)."""
    from jtile.ir.types import MemorySpace

    if buf.space is not MemorySpace.GLOBAL:
        return None
    dims = []
    for d, (index, size) in enumerate(zip(indices, buf.shape)):
        rng = expr_range(em, ir.as_expr(index))
        if rng is None or rng[0] < 0 or rng[1] >= size:
            dims.append(d)
    if not dims:
        return None
    return bounds_condition(buf, [em.expr(i) for i in indices], dims)


def region_in_bounds(em, region: ir.Region) -> bool:
    for start, extent, size in zip(region.starts, region.extents, region.buffer.shape):
        rng = expr_range(em, start)
        if rng is None or rng[0] < 0 or rng[1] + extent > size:
            return False
    return True


def _combined_range(em, expr) -> Optional[tuple]:
    """The range of a sum, difference or constant multiple of ranged parts (`k // 2 + 1`)."""
    if not (isinstance(expr, ir.BinOp) and expr.op in ("add", "sub", "mul")):
        return None
    a, b = expr_range(em, expr.a), expr_range(em, expr.b)
    if a is None or b is None:
        return None
    if expr.op == "add":
        return a[0] + b[0], a[1] + b[1]
    if expr.op == "sub":
        return a[0] - b[1], a[1] - b[0]
    corners = [x * y for x in a for y in b]
    return min(corners), max(corners)


def _structured_range(em, expr) -> Optional[tuple]:
    if isinstance(expr, ir.Call) and expr.fn in ("min", "max") and len(expr.args) == 2:
        a, b = (expr_range(em, x) for x in expr.args)
        if a is None or b is None:
            return None
        pick = min if expr.fn == "min" else max
        return pick(a[0], b[0]), pick(a[1], b[1])
    if isinstance(expr, ir.BinOp) and expr.op in ("mod", "floordiv") and \
            isinstance(expr.b, ir.Const) and isinstance(expr.b.value, int) and expr.b.value > 0:
        a = expr_range(em, expr.a)
        if a is None or a[0] < 0:
            return None
        if expr.op == "mod":
            return 0, min(a[1], expr.b.value - 1)
        return a[0] // expr.b.value, a[1] // expr.b.value
    return None
