"""The runtime side of `break` and `continue` in rewritten `for` loops (see
`loop_exits_rewrite` for the rewritten form).

A loop Python runs (`range`, a list) whose exit is reached on static values exits as Python
does. An exit reached under a traced condition, or any exit of a loop recorded for the GPU
(`T.serial`, `T.unroll`, `T.Pipelined`: their body is traced once), sets a flag instead: a
`T.alloc_var` that starts at 0 where the loop starts (`break`) or where each iteration starts
(`continue`). The rest of the iteration runs under `live()` (no flag set) and every later
iteration under `enter()` (no `break` flag), so the statements after the exit do not run,
as TileLang's loop exits behave. A loop's `else:` runs when no `break` flag was set.
"""

from __future__ import annotations

from jtile.ir.nodes import BinOp, Const, Store, as_expr
from jtile.ir.types import DType
from jtile.trace.builder import active_builder, current
from jtile.trace.source import caller_location

# Generators of loops whose body is traced once and recorded for the GPU.
_RECORDED = {"_sequential": "traced", "Parallel": "parallel"}


def _recorded_kind(iterable):
    code = getattr(iterable, "gi_code", None)
    return _RECORDED.get(getattr(code, "co_name", None)) if code is not None and \
        code.co_filename.endswith("loops.py") else None


class loop_exits:
    """One rewritten `for` or `while` loop: `with loop_exits(has_break, has_continue) as X:`."""

    def __init__(self, has_break: bool, has_continue: bool):
        self._loc = caller_location()
        self._has = {"break": has_break, "continue": has_continue}
        self._flags = {}             # "break" / "continue" -> T.alloc_var
        self._recorded = False       # a loop recorded for the GPU (body traced once)
        self._loop_start = None      # (block, index): where the loop starts
        self._iteration_start = None
        self._depth = 0              # trace blocks open at the start of the iteration

    def __enter__(self):
        builder = active_builder()
        if builder is not None and builder.blocks:
            self._loop_start = (builder.blocks[-1], len(builder.blocks[-1]))
        return self

    def __exit__(self, exc_type, exc, tb):
        return False

    # ------------------------------------------------------------------ the loop
    def while_test(self, cond):
        """A `while` condition: on a traced condition the loop is recorded for the GPU, its
        exits set flags, and it also ends once the break flag is set."""
        from jtile.trace.python_control import traced_condition

        traced = traced_condition(cond, "`while`")
        if traced is None:
            return cond   # Python runs the loop (a traced exit makes the next test traced)
        if not self._recorded:
            self._record()
        running = self._not_broken()
        return traced if running is True else BinOp("and", traced, running, DType.bool)

    def over(self, iterable):
        kind = _recorded_kind(iterable)
        if kind == "parallel":
            raise current("`break`").error(
                "`break` / `continue` in a T.Parallel loop: its iterations run at once on "
                "different threads, so none can end the others; guard the work with `if` "
                "instead", self._loc)
        if kind == "traced":
            self._record()
        yield from iterable

    def enter(self):
        """Start of an iteration: whether (or on which condition) its body runs."""
        builder = active_builder()
        if builder is not None and builder.blocks:
            self._iteration_start = (builder.blocks[-1], len(builder.blocks[-1]))
            self._depth = len(builder.blocks)
        if "continue" in self._flags:
            self._flags["continue"][0] = 0
        return self._not_broken()

    def break_(self) -> bool:
        """`break`: True when Python should break (static path, loop run by Python)."""
        return self._exit("break")

    def continue_(self) -> bool:
        return self._exit("continue")

    def live(self):
        """Whether the statements after a possible exit run: True, or the traced condition
        that no exit flag is set."""
        conds = [as_expr(flag) == 0 for flag in self._flags.values()]
        if not conds:
            return True
        cond = conds[0]
        for other in conds[1:]:
            cond = BinOp("and", cond, other, DType.bool)
        return cond

    def orelse(self):
        return self._not_broken()

    # ------------------------------------------------------------------ flags
    def _record(self) -> None:
        """The loop is recorded for the GPU (its body traced once): a flag for every exit it
        has, reset before the loop."""
        self._recorded = True
        for word, present in self._has.items():
            if present:
                self._flag(word)

    def _not_broken(self):
        """True, or the traced condition that the break flag is not set."""
        broke = self._flags.get("break")
        return True if broke is None else as_expr(broke) == 0

    def _exit(self, word: str) -> bool:
        builder = active_builder()
        traced = builder is not None and len(builder.blocks) > self._depth
        if not self._recorded and not traced:
            return True
        flag = self._flag(word)
        flag[0] = 1
        return False

    def _flag(self, word: str):
        """The flag of `word`, created at first need with its reset placed where the loop
        (break) or this iteration (continue) starts."""
        flag = self._flags.get(word)
        if flag is not None:
            return flag
        from jtile.ir.nodes import Buffer
        from jtile.ir.types import MemorySpace

        builder = current(f"`{word}`")
        name = builder.fresh_name("loop_broke" if word == "break" else "loop_skips")
        flag = builder.add_allocation(Buffer(name, (1,), DType.int32, MemorySpace.VAR,
                                             self._loc))
        at = self._loop_start if word == "break" or self._recorded else self._iteration_start
        if word == "continue" and self._recorded:
            at = None   # enter() resets it at the start of the traced body
        if at is not None:
            block, index = at
            block.insert(index, Store(flag, (Const(0, DType.int32),), Const(0, DType.int32),
                                      self._loc))
            # A later insertion point of the same block moves with this statement.
            for name in ("_loop_start", "_iteration_start"):
                start = getattr(self, name)
                if start is not None and start[0] is block and start[1] >= index and \
                        start is not at:
                    setattr(self, name, (block, start[1] + 1))
        self._flags[word] = flag
        return flag
