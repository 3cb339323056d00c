"""What interpret mode refuses before running anything.

- TMEM buffers: tcgen05 tensor memory has no model here.
- Reads of the thread index: statements outside T.Parallel run once per block, so there is no
  individual thread whose index could be read.
- Stores to an input that is not aliased to an output: inputs are read-only.
"""

from __future__ import annotations

from typing import Iterator

from jtile.ir.nodes import (AtomicAdd, BarrierOp, BinOp, Call, Cast, Copy, Expr, Fill, For, Gemm,
                            IfThenElse, Kernel, Load, ParallelFor, Reduce, Region, Select, Store,
                            UnOp, Var, VarKind)
from jtile.ir.types import MemorySpace
from jtile.interpret.memory import Context, jnp_dtype


def statements(body: tuple) -> Iterator:
    """Every statement of a body, nested ones included, in program order."""
    for stmt in body:
        yield stmt
        if isinstance(stmt, (For, ParallelFor)):
            yield from statements(stmt.body)
        elif isinstance(stmt, IfThenElse):
            yield from statements(stmt.then_body)
            yield from statements(stmt.else_body)


def _region_exprs(target) -> list:
    if isinstance(target, Region):
        return list(target.starts)
    return [target]


def statement_exprs(stmt) -> list:
    """The expressions a statement itself evaluates (not those of nested statements)."""
    if isinstance(stmt, Store):
        return list(stmt.indices) + [stmt.value]
    if isinstance(stmt, For):
        return [stmt.start, stmt.extent]
    if isinstance(stmt, IfThenElse):
        return [stmt.cond]
    if isinstance(stmt, Copy):
        return _region_exprs(stmt.src) + _region_exprs(stmt.dst)
    if isinstance(stmt, Fill):
        return _region_exprs(stmt.dst) + [stmt.value]
    if isinstance(stmt, Gemm):
        return _region_exprs(stmt.a) + _region_exprs(stmt.b) + _region_exprs(stmt.c)
    if isinstance(stmt, AtomicAdd):
        return _region_exprs(stmt.dst) + _region_exprs(stmt.value)
    if isinstance(stmt, BarrierOp):
        return [stmt.index] + ([stmt.arg] if stmt.arg is not None else [])
    return []


def sub_exprs(expr) -> Iterator[Expr]:
    """The expression and every expression inside it (shared nodes visited once)."""
    seen, stack = set(), [expr]
    while stack:
        e = stack.pop()
        if id(e) in seen or not isinstance(e, Expr):
            continue
        seen.add(id(e))
        yield e
        if isinstance(e, BinOp):
            stack += [e.a, e.b]
        elif isinstance(e, UnOp):
            stack.append(e.a)
        elif isinstance(e, Call):
            stack += list(e.args)
        elif isinstance(e, Cast):
            stack.append(e.value)
        elif isinstance(e, Select):
            stack += [e.cond, e.a, e.b]
        elif isinstance(e, Load):
            stack += list(e.indices)


def written_buffers(stmt) -> list:
    if isinstance(stmt, Store):
        return [stmt.buffer]
    if isinstance(stmt, (Copy, Fill)):
        return [stmt.dst.buffer]
    if isinstance(stmt, Gemm):
        return [stmt.c.buffer]
    if isinstance(stmt, Reduce):
        return [stmt.dst]
    if isinstance(stmt, AtomicAdd):
        return [stmt.dst.buffer]
    return []


def check_kernel(ctx: Context, aliases: dict) -> None:
    """Raises a JtileError for anything interpret mode cannot run faithfully."""
    kernel: Kernel = ctx.kernel
    for buffer in kernel.allocations:
        if buffer.space is MemorySpace.TMEM:
            raise ctx.error(f"{buffer.describe()} is tensor memory: TMEM/tcgen05 have no "
                            "interpret-mode semantics; run this kernel compiled on an sm_100a "
                            "GPU", buffer.loc)
    thread = kernel.thread_var
    inputs = {id(b): i for i, b in enumerate(kernel.inputs)}
    for stmt in statements(kernel.body):
        for expr in statement_exprs(stmt):
            for e in sub_exprs(expr):
                if isinstance(e, Var) and (e is thread or e.kind is VarKind.THREAD):
                    raise ctx.error(
                        f"this statement reads the thread index {e.name} "
                        "(T.get_thread_binding); interpret mode runs each block's statements "
                        "once and does not model individual threads; write the per-thread work "
                        "as a T.Parallel loop", stmt.loc)
        for buffer in written_buffers(stmt):
            index = inputs.get(id(buffer))
            if index is not None and index not in aliases:
                raise ctx.error(
                    f"this statement writes input {buffer.describe()}; inputs are "
                    "read-only unless aliased to an output (input_output_aliases="
                    f"{{{index}: <output index>}})", stmt.loc)


def check_arguments(ctx: Context, inputs, aliases: dict) -> None:
    """The arrays must match the kernel's input buffers; aliases must pair equal buffers."""
    kernel = ctx.kernel
    if len(inputs) != kernel.num_inputs:
        raise ctx.error(f"interpret() got {len(inputs)} input arrays; the kernel takes "
                        f"{kernel.num_inputs} ({', '.join(b.name for b in kernel.inputs)})")
    for buffer, array in zip(kernel.inputs, inputs):
        shape, dtype = tuple(array.shape), array.dtype
        if shape != tuple(buffer.shape) or dtype != jnp_dtype(buffer.dtype):
            raise ctx.error(f"input {buffer.name} was traced as {buffer.dtype}"
                            f"{tuple(buffer.shape)} but the array is {dtype}{shape}")
    outputs_taken = set()
    for inp, out in aliases.items():
        if not 0 <= inp < kernel.num_inputs or not 0 <= out < len(kernel.outputs):
            raise ctx.error(f"alias {{{inp}: {out}}} is out of range: the kernel has "
                            f"{kernel.num_inputs} inputs and {len(kernel.outputs)} outputs")
        a, b = kernel.inputs[inp], kernel.outputs[out]
        if tuple(a.shape) != tuple(b.shape) or a.dtype is not b.dtype:
            raise ctx.error(f"alias {{{inp}: {out}}} pairs input {a.describe()} with output "
                            f"{b.describe()}; aliased buffers need equal shape and dtype")
        if out in outputs_taken:
            raise ctx.error(f"output {b.name} is aliased to more than one input")
        outputs_taken.add(out)
