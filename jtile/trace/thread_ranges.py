"""Python `if` branches on the thread index that select whole warpgroups, as T.ws regions.

TileLang's hand-written warp-specialised kernels branch on the thread index instead of
writing `with T.ws(...)`: `if tx < 128: ... elif tx >= 128 and tx < 256: ... else: ...`, with
tile operations (copies, gemms, fills) and `T.set_max_nreg` inside, each branch run by its
warpgroups as a block of their own. jtile gives such a branch the meaning of a T.ws region
when its threads are a range of whole warpgroups and it holds a tile operation (or
T.set_max_nreg): the statement becomes an `IfThenElse` with `threads=(first, count)`, as
`T.ws` emits. A branch of per-thread code only stays a plain branch.

While a branch is traced its range is open on the builder (`builder.open_regions`), so
T.set_max_nreg finds its region and a nested condition is read within the range: in an
`elif tx >= 256:` reached only by threads 256..383, the condition always holds and the
branch is its body. A chain of such branches gives one region per branch, side by side.
"""

from __future__ import annotations

from typing import Optional

from jtile.ir import nodes as ir
from jtile.ir.types import DType

WARPGROUP = 128


class RangeScope:
    """A branch being traced whose threads are [first, first + count)."""

    def __init__(self, first: int, count: int, body: list):
        self._first, self._count, self._body = first, count, body


def _bounds(cond, tx) -> Optional[tuple]:
    """[lo, hi) of the thread indices for which `cond` holds, when it is a comparison of the
    thread index with an int or a conjunction of such; else None."""
    if not isinstance(cond, ir.BinOp):
        return None
    if cond.op == "and":
        a, b = _bounds(cond.a, tx), _bounds(cond.b, tx)
        return None if a is None or b is None else (max(a[0], b[0]), min(a[1], b[1]))
    op, a, b = cond.op, cond.a, cond.b
    if b is tx and isinstance(a, ir.Const):   # C > tx is tx < C, ...
        op, a, b = {"gt": "lt", "ge": "le", "lt": "gt", "le": "ge"}.get(op), b, a
    if a is not tx or not isinstance(b, ir.Const) or isinstance(b.value, bool) \
            or not isinstance(b.value, int):
        return None
    c, big = b.value, 1 << 30
    return {"lt": (-big, c), "le": (-big, c + 1), "ge": (c, big), "gt": (c + 1, big)}.get(op)


def _scope(builder) -> tuple:
    for r in reversed(builder.open_regions):
        if isinstance(r, RangeScope):
            return r._first, r._first + r._count
    return 0, builder.threads


def split(builder, cond) -> Optional[tuple]:
    """(then range, else range or None, enclosing range) of a condition that splits the threads
    reaching it at warpgroup boundaries, ranges as (lo, hi); else None."""
    threads = builder.threads
    if builder.thread_var is None or builder.thread_extents or not threads \
            or threads % WARPGROUP or any(not isinstance(r, RangeScope)
                                          for r in builder.open_regions):
        return None
    bounds = _bounds(cond, builder.thread_var)
    if bounds is None:
        return None
    scope = _scope(builder)
    lo, hi = max(bounds[0], scope[0]), min(bounds[1], scope[1])
    if lo >= hi or lo % WARPGROUP or hi % WARPGROUP:
        return None
    if (lo, hi) == scope:
        other = None
    elif lo == scope[0]:
        other = (hi, scope[1])
    elif hi == scope[1]:
        other = (scope[0], lo)
    else:
        other = None   # the else branch is two ranges: it stays a plain branch
    return (lo, hi), other, scope


def enter(builder, ranges, which: int, body: list):
    """Opens the range of branch `which` (0 then, 1 else) while it is traced."""
    if ranges is None or ranges[which] is None:
        return None
    lo, hi = ranges[which]
    scope = RangeScope(lo, hi - lo, body)
    builder.open_regions.append(scope)
    return scope


def leave(builder, scope) -> None:
    if scope is not None and builder.open_regions and builder.open_regions[-1] is scope:
        builder.open_regions.pop()


def _needs_region(body) -> bool:
    from jtile.ir.walk import is_region, statements
    from jtile.passes.verify import cooperative_name

    return any(cooperative_name(s) is not None or isinstance(s, ir.SetMaxNreg)
               or is_region(s) for s in statements(body))


def _region(builder, bounds: tuple, body, loc) -> list:
    """`body` as the region of threads [lo, hi); a body that is already regions side by side
    (an `elif` chain) stays as they are."""
    from jtile.ir.walk import is_region

    if body and all(is_region(s) for s in body):
        return list(body)
    lo, hi = bounds
    tx = builder.thread_var
    cond = ir.BinOp("and", tx >= lo, tx < hi, DType.bool)
    return [ir.IfThenElse(cond, tuple(body), (), loc, threads=(lo, hi - lo))]


def statements(builder, cond, ranges, then_body, else_body, loc) -> list:
    """What a traced `if` emits: a plain IfThenElse, its body (a condition that always holds
    within the enclosing range), or regions of warpgroups."""
    plain = [ir.IfThenElse(cond, then_body, else_body, loc)]
    if ranges is None:
        return plain
    then_range, else_range, scope = ranges
    if then_range == scope:
        return list(then_body)   # every thread reaching it takes the branch
    if not (_needs_region(then_body) or _needs_region(else_body)):
        return plain
    if else_body and else_range is None:
        return plain   # verify names the tile operation under the condition
    out = _region(builder, then_range, then_body, loc) if then_body else []
    if else_body:
        out += _region(builder, else_range, else_body, loc)
    return out
