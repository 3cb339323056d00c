"""Traced control flow: `T.If` / `T.Then` / `T.Else` blocks, `T.While` loops and
`T.if_then_else` values.

Python's own `if` / `while` / `and` / `or` / `not` / `a if c else b` on traced values become
the same IR through the rewrite of the kernel body (`jtile.trace.ast_rewrite`).
"""

from __future__ import annotations

import dataclasses

from jtile.ir.nodes import IfThenElse, Select, While as WhileStmt, as_expr
from jtile.ir.types import promote
from jtile.trace.builder import current
from jtile.trace.source import caller_location


def _condition(cond, what, builder, loc):
    expr = as_expr(cond)
    if not expr.dtype.is_bool:
        expr = expr != 0
    return expr


class If:
    """`with T.If(cond):` runs its statements only where `cond` holds (a traced condition)."""

    def __init__(self, cond):
        self._loc = caller_location()
        self._builder = current("T.If")
        self._cond = _condition(cond, "T.If", self._builder, self._loc)

    def __enter__(self):
        self._block = self._builder.block()
        self._body = self._block.__enter__()
        self.else_body = ()
        self.uses_then = False
        self._builder.open_ifs.append(self)
        return self

    def __exit__(self, exc_type, exc, tb):
        self._builder.open_ifs.pop()
        self._block.__exit__(exc_type, exc, tb)
        if exc_type is None:
            self._builder.emit(IfThenElse(self._cond, tuple(self._body), tuple(self.else_body),
                                          self._loc))
        return False

    def directly_encloses(self, builder) -> bool:
        return builder.blocks[-1] is self._body


class Then:
    """TileLang's optional `with T.Then():` inside `T.If`: its statements are the then-branch."""

    def __init__(self):
        self._loc = caller_location()
        self._builder = current("T.Then")

    def __enter__(self):
        open_ifs = self._builder.open_ifs
        if not open_ifs or not open_ifs[-1].directly_encloses(self._builder):
            raise self._builder.error("T.Then belongs directly inside `with T.If(...)`",
                                      self._loc)
        open_ifs[-1].uses_then = True
        return self

    def __exit__(self, exc_type, exc, tb):
        return False


class Else:
    """`with T.Else():` right after a `with T.If(...)` block (or inside it, after `T.Then`):
    the other branch."""

    def __init__(self):
        self._loc = caller_location()
        self._builder = current("T.Else")

    def __enter__(self):
        open_ifs = self._builder.open_ifs
        enclosing = open_ifs[-1] if open_ifs and open_ifs[-1].directly_encloses(
            self._builder) else None
        last = self._builder.last_statement()
        follows_if = isinstance(last, IfThenElse) and not last.else_body
        # Inside `with T.If` an Else pairs with that If in TileLang's Then/Else form, but with
        # an If it directly follows otherwise (`with T.If(a): with T.If(b): ... with T.Else():`).
        self._enclosing = enclosing if enclosing is not None and (
            enclosing.uses_then or not follows_if) else None
        if self._enclosing is not None:
            if self._enclosing.else_body:
                raise self._builder.error("this `with T.If(...)` already has a T.Else", self._loc)
            self._block = self._builder.block()
            self._body = self._block.__enter__()
            return self
        if not follows_if:
            raise self._builder.error("T.Else must directly follow a `with T.If(...)` block",
                                      self._loc)
        self._if = last
        self._block = self._builder.block()
        self._body = self._block.__enter__()
        return self

    def __exit__(self, exc_type, exc, tb):
        self._block.__exit__(exc_type, exc, tb)
        if exc_type is None and self._enclosing is not None:
            self._enclosing.else_body = tuple(self._body)
        elif exc_type is None:
            self._builder.replace_last_statement(
                dataclasses.replace(self._if, else_body=tuple(self._body)))
        return False


class While:
    """`with T.While(cond):` repeats its statements while `cond` holds (any arch).

    Every thread runs the loop; `cond` is evaluated before each iteration, so it must read a
    value the body changes (a `T.alloc_var`, or memory). Python's `while cond:` on a traced
    condition records the same loop.
    """

    def __init__(self, cond):
        self._loc = caller_location()
        self._builder = current("T.While")
        self._cond = _condition(cond, "T.While", self._builder, self._loc)

    def __enter__(self):
        self._block = self._builder.block()
        self._body = self._block.__enter__()
        return self

    def __exit__(self, exc_type, exc, tb):
        self._block.__exit__(exc_type, exc, tb)
        if exc_type is None:
            self._builder.emit(WhileStmt(self._cond, tuple(self._body), self._loc))
        return False


def if_then_else(cond, a, b):
    """`a` where `cond` holds, else `b` (both evaluated; a value, not a branch)."""
    builder = current("T.if_then_else")
    loc = caller_location()
    cond_e = _condition(cond, "T.if_then_else", builder, loc)
    weak_a = isinstance(a, (int, float)) and not isinstance(a, bool)
    weak_b = isinstance(b, (int, float)) and not isinstance(b, bool)
    if weak_a and not weak_b:
        b_e = as_expr(b)
        a_e = as_expr(a, like=b_e.dtype)
    elif weak_b and not weak_a:
        a_e = as_expr(a)
        b_e = as_expr(b, like=a_e.dtype)
    else:
        a_e, b_e = as_expr(a), as_expr(b)
    dtype = promote(a_e.dtype, b_e.dtype)
    return Select(cond_e, a_e, b_e, dtype)
