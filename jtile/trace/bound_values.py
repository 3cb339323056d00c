"""Names bound to traced values that read buffers, and the writes that make them stale.

In TileLang `v = X[i]` captures the value at that point; in jtile a name holds the expression
and every use reads `X[i]` again. The two agree unless the buffer is written between the
binding and a use, so that case is refused while tracing, with both lines, instead of giving a
different answer.

Names bound in the kernel body and in T.macro bodies are tracked by name (the body's source is
rewritten to report them). A read kept in a Python variable anywhere else (a plain helper
function the kernel calls, a list) is caught by the read itself: every load records how many
writes its buffer had seen when it was made, and a statement that uses it after more writes
is refused. The condition of a branch or loop is evaluated before its body runs, so writes in
that body do not count against it.
"""

from __future__ import annotations

from jtile.ir import nodes as ir
from jtile.ir.types import MemorySpace
from jtile.ir.walk import (buffers_written, child_bodies, statement_exprs, statements,
                           storage_of, sub_expressions)


def _constant_index(indices):
    """`indices` as Python ints when every one is a constant, else None."""
    if all(isinstance(i, ir.Const) for i in indices):
        return tuple(i.value for i in indices)
    return None


def _constant_element(stmt):
    """The element a store writes when its buffer is no view and its indices are constants
    (a per-thread state's `state[2] = ...`), else None."""
    if isinstance(stmt, ir.Store) and stmt.buffer.view_of is None:
        return _constant_index(stmt.indices)
    return None


def _may_overlap(element, load) -> bool:
    """Whether a write of `element` (None: unknown) may change what `load` reads."""
    if element is None or load.buffer.view_of is not None:
        return True
    read = _constant_index(load.indices)
    return read is None or read == element


def _storage(buffer):
    """The buffer that owns `buffer`'s bytes (a view stands for what it views)."""
    return next(iter(storage_of({buffer})))


class BoundValues:
    """The builder's record of `name = <expression reading buffers>` bindings."""

    def __init__(self):
        self._live: dict = {}   # id(expr) -> (expr, name, loc, buffers it reads)
        self._stale: dict = {}  # id(expr) -> (written buffer, loc of the write)
        self._scopes: dict = {}  # id(expr) -> ids of the statement blocks open at binding
        self._block_of: dict = {}  # id(stmt) -> id of the block it was traced into
        # id(buffer) -> [(id(stmt), loc, element)] of its writes in trace order; `element` is a
        # store's constant index (None: any element may change).
        self._writes: dict = {}
        self._loads: dict = {}   # id(load) -> (load, writes seen, ids of the blocks open)

    def note_load(self, load: ir.Load, blocks) -> None:
        """Records a read as it is made: how many writes its buffer has had so far."""
        seen = len(self._writes.get(id(_storage(load.buffer)), ()))
        self._loads[id(load)] = (load, seen, {id(b) for b in blocks})

    def _made_before(self, x) -> tuple:
        """(writes seen, open blocks) of a recorded read `x`, or None."""
        record = self._loads.get(id(x))
        return None if record is None or record[0] is not x else record[1:]

    def bind(self, name: str, value, loc, blocks) -> None:
        if not isinstance(value, ir.Expr):
            return
        reads = {x.buffer for x in sub_expressions(value) if isinstance(x, ir.Load)}
        if reads:
            self._live[id(value)] = (value, name, loc, reads)
            self._scopes[id(value)] = {id(b) for b in blocks}
            self._stale.pop(id(value), None)

    def _check_loop(self, builder, loop) -> None:
        """A value bound before a loop, read inside it, from a buffer the loop writes: the
        second iteration would read the written value where TileLang reuses the captured one."""
        if not loop.body or id(loop.body[0]) not in self._block_of:
            return
        body_block = self._block_of[id(loop.body[0])]
        inner = list(statements(loop.body))
        written = set()
        for s in inner:
            written |= buffers_written(s)
        for s in inner:
            for e in statement_exprs(s):
                for x in sub_expressions(e):
                    made = self._made_before(x) if isinstance(x, ir.Load) else None
                    if made is not None and body_block not in made[1] and \
                            _storage(x.buffer) in written and id(x) not in self._live:
                        raise builder.error(
                            f"a value read from {x.buffer.describe()} before this loop is used "
                            f"inside it at {s.loc}, and the loop writes {x.buffer.name}; jtile "
                            "reads it again in every iteration (a Python variable holds the "
                            "read, not its value), so it would not stay the value TileLang "
                            "captures. Keep the value in a T.alloc_var before the loop",
                            loop.loc)
                    live = self._live.get(id(x))
                    if live is None or live[0] is not x or body_block in self._scopes[id(x)]:
                        continue  # not a binding, or one made inside this loop
                    hit = live[3] & written
                    if hit:
                        raise builder.error(
                            f"`{live[1]}` was bound at {live[2]}, before this loop, to a value "
                            f"read from {next(iter(hit)).describe()}, which the loop writes; "
                            f"jtile reads `{live[1]}` again in every iteration, so it would "
                            "not stay the value TileLang captures. Keep the value in a "
                            "T.alloc_var before the loop", loop.loc)

    def check_and_record(self, builder, stmt) -> None:
        """Refuses `stmt` when it uses a stale binding or read; then marks the bindings it
        makes stale."""
        # A branch's or loop's header is evaluated before its body: the body's writes (traced
        # before the statement itself is emitted) do not make it stale. A while loop's
        # condition is evaluated again after each iteration: an expression written in it is
        # re-read there in TileLang too, but a name bound before the loop keeps its value.
        own = {id(s) for child in child_bodies(stmt) for s in statements(child)} \
            if isinstance(stmt, (ir.IfThenElse, ir.For, ir.While, ir.ParallelFor)) else set()
        own_named = set() if isinstance(stmt, ir.While) else own
        if self._stale:
            for e in statement_exprs(stmt):
                for x in sub_expressions(e):
                    stale = self._stale.get(id(x))
                    if stale is not None and self._live[id(x)][0] is x and \
                            stale[2] not in own_named:
                        _, name, bound_at, _ = self._live[id(x)]
                        buffer, written_at, _ = stale
                        raise builder.error(
                            f"`{name}` was bound at {bound_at} to a value read from "
                            f"{buffer.describe()}, which {written_at} has written since; jtile "
                            f"reads `{name}` again where it is used, so it would not be the "
                            "value TileLang captures. Keep the value in a T.alloc_var (or a "
                            "fragment / local buffer) before writing the buffer", stmt.loc)
        for e in statement_exprs(stmt):
            for x in sub_expressions(e):
                made = self._made_before(x) if isinstance(x, ir.Load) else None
                if made is None:
                    continue
                later = [w for w in self._writes.get(id(_storage(x.buffer)), [])[made[0]:]
                         if w[0] not in own and _may_overlap(w[2], x)]
                if later:
                    raise builder.error(
                        f"a value read from {x.buffer.describe()} is used here after "
                        f"{later[0][1]} wrote {x.buffer.name}; jtile reads it again where it "
                        "is used (a Python variable, in a helper function or elsewhere, holds "
                        "the read, not its value), so it would not be the value TileLang "
                        "captures. Keep the value in a T.alloc_var (or a fragment / local "
                        "buffer) before writing the buffer", stmt.loc)
        self._block_of[id(stmt)] = id(builder.blocks[-1])
        if (self._live or self._loads) and isinstance(stmt, (ir.For, ir.While, ir.ParallelFor)):
            self._check_loop(builder, stmt)
        if isinstance(stmt, ir.SyncThreads) and stmt.grid:
            # Past a grid barrier other blocks' writes to global memory show: a value read
            # from one before it is not what a read after it gives.
            for key, (_, _, _, reads) in self._live.items():
                hit = [b for b in reads if b.space is MemorySpace.GLOBAL]
                if hit and key not in self._stale:
                    self._stale[key] = (hit[0], f"T.sync_grid at {stmt.loc} (any block)",
                                        id(stmt))
        written = buffers_written(stmt)
        if written:
            for key, (_, _, _, reads) in self._live.items():
                hit = reads & written
                if hit and key not in self._stale:
                    self._stale[key] = (next(iter(hit)), stmt.loc, id(stmt))
            element = _constant_element(stmt)
            for buffer in written:
                self._writes.setdefault(id(buffer), []).append((id(stmt), stmt.loc, element))
