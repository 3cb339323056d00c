"""Names bound to traced values that read buffers, and the writes that make them stale.

In TileLang `v = X[i]` captures the value at that point; in jtile a name holds the expression
and every use reads `X[i]` again. The two agree unless the buffer is written between the
binding and a use, so that case is refused while tracing, with both lines, instead of giving a
different answer.
"""

from __future__ import annotations

from jtile.ir import nodes as ir
from jtile.ir.walk import buffers_written, statement_exprs, sub_expressions


class BoundValues:
    """The builder's record of `name = <expression reading buffers>` bindings."""

    def __init__(self):
        self._live: dict = {}   # id(expr) -> (expr, name, loc, buffers it reads)
        self._stale: dict = {}  # id(expr) -> (written buffer, loc of the write)

    def bind(self, name: str, value, loc) -> None:
        if not isinstance(value, ir.Expr):
            return
        reads = {x.buffer for x in sub_expressions(value) if isinstance(x, ir.Load)}
        if reads:
            self._live[id(value)] = (value, name, loc, reads)
            self._stale.pop(id(value), None)

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
        written = buffers_written(stmt)
        if written:
            for key, (_, _, _, reads) in self._live.items():
                hit = reads & written
                if hit and key not in self._stale:
                    self._stale[key] = (next(iter(hit)), stmt.loc)
