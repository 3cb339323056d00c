"""Which elements of shared memory a statement of a T.ws region reads and writes.

The race check (`region_races.py`) compares the accesses of two regions. Each access names
the buffer that owns the bytes (a view stands for its buffer) and a box, one (first, last)
per dimension, that bounds the elements touched: tile operations give their regions' starts
and extents, element loads and stores their indices, each evaluated over the ranges of the
loops around it inside the statement (`index_ranges.py`). A box is `exact` when the access
touches every element of it (every index covers its bound, no loop variable indexes two
dimensions), and an access is `certain` when it touches at least one element each time the
statement runs (no condition or while loop around it inside the statement). An index that
cannot be bounded (a block index, a loaded value) stands for its whole dimension, and its box
is not exact.
"""

from __future__ import annotations

from dataclasses import dataclass

from jtile.ir.nodes import (AtomicAdd, BinOp, Call, Cast, Copy, Fill, For, Gemm, IfThenElse,
                            Im2Col, Load, ParallelFor, Reduce, Region, Scan, Select, SourceLoc,
                            Store, ThreadCopy, UnOp, While)
from jtile.ir.walk import (buffers_read, buffers_written, child_bodies, statement_exprs,
                           storage_of)
from jtile.interpret.index_ranges import THREAD, dense, span
from jtile.interpret.static_ints import static_int


@dataclass(frozen=True)
class Access:
    buffer: object        # the Buffer that owns the bytes
    write: bool
    box: tuple            # ((first, last), ...) per dimension of `buffer`
    exact: bool           # touches every element of `box`
    certain: bool         # touches at least one element whenever the statement runs
    loc: SourceLoc
    atomic: bool = False  # a T.atomic_* update: two of them on one element commute


def accesses(kernel, stmt, static: dict, threads: tuple) -> list:
    """The shared-memory accesses of `stmt`, run by a region on `threads` (first, count)
    with the unrolled loop variables in `static` (id(Var) -> int)."""
    first, count = threads
    ranges = {THREAD: (first, first + count - 1)}
    if kernel.thread_var is not None:
        ranges[id(kernel.thread_var)] = ranges[THREAD]
    walk = _Walk(static)
    walk.statement(stmt, ranges, True)
    return walk.found


class _Walk:
    """Collects the accesses of the statements it is shown. `ranges` maps the variables of
    the loops around a statement (and the thread index) to their (first, last) values;
    `certain` says whether the statement runs whenever the outermost one does."""

    def __init__(self, static: dict):
        self.static, self.found = static, []

    def statement(self, s, ranges: dict, certain: bool) -> None:
        for e in statement_exprs(s):
            self.loads(e, ranges, certain, s.loc)
        if isinstance(s, For):
            extent = static_int(s.extent, self.static)
            runs = extent is not None and extent > 0
            inner = dict(ranges)
            if runs:   # the body's indices hold the trip counter
                inner[id(s.var)] = (0, extent - 1)
            self.body(s.body, inner, certain and runs)
        elif isinstance(s, ParallelFor):
            inner = dict(ranges)
            for var, extent in zip(s.vars, s.extents):
                inner[id(var)] = (0, extent - 1)
            self.body(s.body, inner, certain)
        elif isinstance(s, IfThenElse):
            cond = static_int(s.cond, self.static)
            if cond is None:
                self.body(s.then_body, ranges, False)
                self.body(s.else_body, ranges, False)
            else:
                self.body(s.then_body if cond else s.else_body, ranges, certain)
        elif isinstance(s, While):
            self.body(s.body, ranges, False)
        elif child_bodies(s):   # anything else that nests: bounded by whole buffers only
            for body in child_bodies(s):
                self.body(body, {}, False)
        else:
            self.tile_op(s, ranges, certain)

    def body(self, body, ranges: dict, certain: bool) -> None:
        for s in body:
            self.statement(s, ranges, certain)

    def loads(self, e, ranges: dict, certain: bool, loc) -> None:
        """The loads `e` evaluates; those in a select's branches may not run."""
        if isinstance(e, Load):
            self.add(e.buffer, e.indices, None, False, ranges, certain, loc)
            for index in e.indices:
                self.loads(index, ranges, certain, loc)
        elif isinstance(e, Select):
            self.loads(e.cond, ranges, certain, loc)
            self.loads(e.a, ranges, False, loc)
            self.loads(e.b, ranges, False, loc)
        else:
            for child in _children(e):
                self.loads(child, ranges, certain, loc)

    def tile_op(self, s, ranges: dict, certain: bool) -> None:
        def region(r, write, atomic=False):
            self.add(r.buffer, r.starts, r.extents, write, ranges, certain, s.loc, atomic)

        def whole(buffer, write):
            self.add(buffer, None, None, write, ranges, certain, s.loc)

        if isinstance(s, Store):
            self.add(s.buffer, s.indices, None, True, ranges, certain, s.loc)
        elif isinstance(s, (Copy, ThreadCopy, Scan)):
            region(s.src, False)
            region(s.dst, True)
        elif isinstance(s, Fill):
            region(s.dst, True)
        elif isinstance(s, Gemm):
            region(s.a, False)
            region(s.b, False)
            region(s.c, True)
        elif isinstance(s, Reduce):
            whole(s.src, False)
            whole(s.dst, True)
        elif isinstance(s, Im2Col):
            region(s.col, True)
        elif isinstance(s, AtomicAdd):
            if isinstance(s.dst, Region):
                region(s.dst, True, atomic=True)
            else:
                self.add(s.dst.buffer, s.dst.indices, None, True, ranges, certain, s.loc,
                         atomic=True)
            if isinstance(s.value, Region):
                region(s.value, False)
            if s.prev is not None:
                whole(s.prev, True)
        else:   # a statement this module does not know: whatever it touches, bounded only
            for buffer in buffers_read(s):
                self.add(buffer, None, None, False, ranges, False, s.loc)
            for buffer in buffers_written(s):
                self.add(buffer, None, None, True, ranges, False, s.loc)

    def add(self, buffer, starts, extents, write, ranges, certain, loc, atomic=False) -> None:
        """An access of `buffer` at `starts` (None: all of it) with `extents` (None: one
        element)."""
        (storage,) = storage_of({buffer})
        if not storage.space.is_shared:
            return
        full = tuple((0, n - 1) for n in storage.shape)
        if storage is not buffer or (starts is not None and len(starts) != len(full)):
            # A view's indices count in its own shape: bounded by the whole buffer only.
            self.found.append(Access(storage, write, full, False, certain, loc, atomic))
            return
        if starts is None:
            self.found.append(Access(storage, write, full, certain, certain, loc, atomic))
            return
        box, exact, used = [], certain, set()
        for k, (start, (_, last)) in enumerate(zip(starts, full)):
            extent = 1 if extents is None else extents[k]
            bound = span(start, self.static, ranges)
            variables = None if bound is None else dense(start, extent, self.static)
            box.append((0, last) if bound is None else
                       (max(bound[0], 0), min(bound[1] + extent - 1, last)))
            if variables is None or variables & used:
                exact = False
            else:
                used |= variables
        if all(lo <= hi for lo, hi in box):   # else out of bounds: none of this buffer
            self.found.append(Access(storage, write, tuple(box), exact, certain, loc, atomic))


def _children(e) -> tuple:
    if isinstance(e, BinOp):
        return e.a, e.b
    if isinstance(e, UnOp):
        return (e.a,)
    if isinstance(e, Cast):
        return (e.value,)
    return tuple(e.args) if isinstance(e, Call) else ()
