"""The trace builder: the state of one kernel being traced.

Every `T.*` call finds the active builder through `current()` and appends statements to the
innermost open block. Nothing is global beyond the stack of active builders: a kernel traced
inside another trace (a nested jtile call while tracing) gets its own builder.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Optional, Type

from jtile.errors import JtileTraceError
from jtile.ir.nodes import Buffer, Kernel, SourceLoc, Stmt, Var, VarKind
from jtile.ir.types import DType, MemorySpace
from jtile.trace.bound_values import BoundValues
from jtile.trace.source import caller_location

_local = threading.local()


def _stack() -> list:
    if not hasattr(_local, "stack"):
        _local.stack = []
    return _local.stack


class Builder:
    """Collects the IR of one kernel while its body runs."""

    def __init__(self, name: str, loc: SourceLoc):
        self.name = name
        self.loc = loc
        self.inputs: list[Buffer] = []
        self.outputs: list[Buffer] = []
        # T.empty outputs whose sizes a later annotation binds: (buffer, dims, loc).
        self.unsettled_outputs: list = []
        self.allocations: list[Buffer] = []
        self.blocks: list[list[Stmt]] = [[]]
        self.grid: Optional[tuple] = None
        self.threads: Optional[int] = None
        self.parallel_depth = 0   # T.Parallel loops open around the statement being traced
        self.block_vars: tuple = ()
        self.thread_var: Optional[Var] = None
        self.thread_extents: tuple = ()   # (x, y[, z]) of a multi-dimensional thread block
        self.kernel_body: Optional[tuple] = None
        self._names: dict[str, int] = {}
        self.implicit_grid = False
        self.declared_out_shape = False
        self.open_ifs: list = []
        self.open_regions: list = []   # T.ws regions being traced
        self.open_reducers: list = []  # T.attr(T.comm_reducer(...), "reduce_scope") scopes
        self.abandoned_loops: list = []   # (what, loc) of loops left by break/return
        self.const_sources: dict = {}     # T.const name -> (parameter buffer, dimension)
        self.symbol_values: dict = {}     # T.dynamic symbol -> its value from the arguments
        self.attrs: dict = {}             # kernel-level settings (cluster_dims, views), -> Kernel.attrs
        self.bound_values = BoundValues()  # `v = X[i]` bindings, refused once X is written
        # Functions of several kernels (jtile.trace.kernel_sequence): the blocks traced so far
        # with the line of their `with T.Kernel`, and the T.alloc_global workspaces.
        self.traced_kernels: list = []
        self.kernel_loc: Optional[SourceLoc] = None
        self.rng_state = None   # T.rng_init's generator (jtile.language.random), per kernel
        self.workspaces: list[Buffer] = []

    # ------------------------------------------------------------------ naming and errors
    def fresh_name(self, base: str) -> str:
        count = self._names.get(base, 0)
        self._names[base] = count + 1
        return base if count == 0 else f"{base}_{count}"

    def error(self, message: str, loc: Optional[SourceLoc] = None, op: str = "",
              cls: Type[JtileTraceError] = JtileTraceError) -> JtileTraceError:
        """Formats `kernel (def file:line): T.op at file:line: message`."""
        where = f" at {loc}" if loc is not None else ""
        prefix = f"{op}{where}: " if op else (f"{loc}: " if loc is not None else "")
        return cls(f"{self.name} ({self.loc}): {prefix}{message}")

    # ------------------------------------------------------------------ statements
    def emit(self, stmt: Stmt) -> None:
        if self.kernel_body is not None:
            raise self.error("a T.* statement came after the `with T.Kernel(...)` block ended; "
                             "put every statement inside it", stmt.loc)
        if self.grid is None:
            raise self.error("a T.* statement came before `with T.Kernel(...)`; open the kernel "
                             "first (or pass grid= to jtile.pallas_like)", stmt.loc)
        self.bound_values.check_and_record(self, stmt)
        self.blocks[-1].append(stmt)

    @contextlib.contextmanager
    def block(self):
        """Collects the statements emitted inside the `with` into a fresh list."""
        body: list[Stmt] = []
        self.blocks.append(body)
        try:
            yield body
        finally:
            popped = self.blocks.pop()
            assert popped is body, "jtile internal: unbalanced trace blocks"

    def last_statement(self) -> Optional[Stmt]:
        return self.blocks[-1][-1] if self.blocks[-1] else None

    def replace_last_statement(self, stmt: Stmt) -> None:
        self.blocks[-1][-1] = stmt

    # ------------------------------------------------------------------ buffers
    def add_allocation(self, buffer: Buffer) -> Buffer:
        if self.grid is None or self.kernel_body is not None:
            raise self.error(f"{buffer.name}: allocations belong inside `with T.Kernel(...)`",
                             buffer.loc)
        self.allocations.append(buffer)
        return buffer

    def new_var(self, base: str, kind: VarKind = VarKind.LOOP, axis: int = 0) -> Var:
        return Var(self.fresh_name(base), DType.int32, kind, axis)

    # ------------------------------------------------------------------ result
    def finish(self) -> Kernel:
        if self.abandoned_loops:
            what, loc = self.abandoned_loops[0]
            raise self.error("the loop was left early by a Python `break` or `return`; a traced "
                             "loop runs its body once to record it, so its statements would be "
                             "lost. Use `with T.If(cond):` to skip work instead", loc, op=what)
        if self.grid is None:
            raise self.error("the kernel body never opened `with T.Kernel(...)` (and no grid= "
                             "was given to jtile.pallas_like)")
        return Kernel(
            name=self.name, params=tuple(self.inputs + self.outputs),
            num_inputs=len(self.inputs), grid=self.grid, threads=self.threads,
            allocations=tuple(self.allocations), body=tuple(self.kernel_body or ()),
            loc=self.loc, block_vars=self.block_vars, thread_var=self.thread_var,
            attrs=dict(self.attrs))


def current(what: str = "this T.* call") -> Builder:
    """The builder of the kernel being traced, or a clear error outside any trace."""
    stack = _stack()
    if not stack:
        raise JtileTraceError(
            f"{what} at {caller_location()} ran outside a jtile kernel trace; T.* functions "
            "only work inside a kernel body called by jtile.pallas_like")
    return stack[-1]


def active_builder() -> Optional[Builder]:
    """The builder of the kernel being traced, or None outside any trace."""
    stack = _stack()
    return stack[-1] if stack else None


@contextlib.contextmanager
def tracing(builder: Builder):
    stack = _stack()
    stack.append(builder)
    try:
        yield builder
    finally:
        stack.pop()


def new_global(builder: Builder, name: str, shape, dtype: DType, loc: SourceLoc) -> Buffer:
    return Buffer(builder.fresh_name(name), tuple(int(d) for d in shape), dtype,
                  MemorySpace.GLOBAL, loc)
