"""Names bound to traced values that read buffers, and the writes that make them stale.

In TileLang `v = X[i]` captures the value at that point; in jtile a name holds the expression
and every use reads `X[i]` again. The two agree unless the buffer is written between the
binding and a use, so that case is refused while tracing, with both lines, instead of giving a
different answer.
"""

from __future__ import annotations

from jtile.ir import nodes as ir
from jtile.ir.types import MemorySpace
from jtile.ir.walk import buffers_written, statement_exprs, statements, sub_expressions


class BoundValues:
    """The builder's record of `name = <expression reading buffers>` bindings."""

    def __init__(self):
        self._live: dict = {}   # id(expr) -> (expr, name, loc, buffers it reads)
        self._stale: dict = {}  # id(expr) -> (written buffer, loc of the write)
        self._scopes: dict = {}  # id(expr) -> ids of the statement blocks open at binding
        self._block_of: dict = {}  # id(stmt) -> id of the block it was traced into

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
        """Refuses `stmt` when it uses a stale binding; then marks the bindings it makes stale."""
        if self._stale:
            for e in statement_exprs(stmt):
                for x in sub_expressions(e):
                    stale = self._stale.get(id(x))
                    if stale is not None and self._live[id(x)][0] is x:
                        _, name, bound_at, _ = self._live[id(x)]
                        buffer, written_at = stale
                        raise builder.error(
                            f"`{name}` was bound at {bound_at} to a value read from "
                            f"{buffer.describe()}, which {written_at} has written since; jtile "
                            f"reads `{name}` again where it is used, so it would not be the "
                            "value TileLang captures. Keep the value in a T.alloc_var (or a "
                            "fragment / local buffer) before writing the buffer", stmt.loc)
        self._block_of[id(stmt)] = id(builder.blocks[-1])
        if self._live and isinstance(stmt, (ir.For, ir.While, ir.ParallelFor)):
            self._check_loop(builder, stmt)
        if isinstance(stmt, ir.SyncThreads) and stmt.grid:
            # Past a grid barrier other blocks' writes to global memory show: a value read
            # from one before it is not what a read after it gives.
            for key, (_, _, _, reads) in self._live.items():
                hit = [b for b in reads if b.space is MemorySpace.GLOBAL]
                if hit and key not in self._stale:
                    self._stale[key] = (hit[0], f"T.sync_grid at {stmt.loc} (any block)")
        written = buffers_written(stmt)
        if written:
            for key, (_, _, _, reads) in self._live.items():
                hit = reads & written
                if hit and key not in self._stale:
                    self._stale[key] = (next(iter(hit)), stmt.loc)
