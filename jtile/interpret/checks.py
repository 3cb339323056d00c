"""What interpret mode refuses before running anything.

- TMEM buffers: tcgen05 tensor memory has no model here.
- Reads of the thread index inside T.Parallel (which thread runs an iteration is the
  compiler's layout choice) and in an alloc_var initial value (per-thread state). Elsewhere a
  statement that reads it runs over a vector of the block's threads (`threads.py`).
- Stores to an input that is not aliased to an output: inputs are read-only.
"""

from __future__ import annotations

from jtile.ir.nodes import Kernel, ParallelFor, Var, VarKind
from jtile.ir.types import MemorySpace
from jtile.ir.walk import buffers_written, statement_exprs, statements, sub_expressions
from jtile.interpret.memory import Context, jnp_dtype


def check_kernel(ctx: Context, aliases: dict) -> None:
    """Raises a JtileError for anything interpret mode cannot run faithfully."""
    kernel: Kernel = ctx.kernel
    for buffer in kernel.allocations:
        if buffer.space is MemorySpace.TMEM:
            raise ctx.error(f"{buffer.describe()} is tensor memory: TMEM/tcgen05 have no "
                            "interpret-mode semantics; run this kernel compiled on an sm_100a "
                            "GPU", buffer.loc)
    thread = kernel.thread_var

    def reads_thread(expr) -> bool:
        return any(isinstance(e, Var) and (e is thread or e.kind is VarKind.THREAD)
                   for e in sub_expressions(expr))

    for buffer in kernel.allocations:
        if buffer.init is not None and reads_thread(buffer.init):
            raise ctx.error(
                f"T.alloc_var {buffer.name} starts from the thread index; interpret mode keeps "
                "one copy of a variable per block, so per-thread values have no model there: "
                "keep them in shared memory indexed by the thread index", buffer.loc)
    inside_parallel = set()
    for stmt in statements(kernel.body):
        if isinstance(stmt, ParallelFor):
            inside_parallel |= {id(s) for s in statements(stmt.body)}
    inputs = {id(b): i for i, b in enumerate(kernel.inputs)}
    for stmt in statements(kernel.body):
        if id(stmt) in inside_parallel and any(reads_thread(e) for e in statement_exprs(stmt)):
            raise ctx.error(
                "this statement inside T.Parallel reads the thread index "
                "(T.get_thread_binding); which thread runs an iteration is the compiler's "
                "layout choice, so interpret mode has no meaning for it; use the loop's own "
                "indices", stmt.loc)
        for buffer in buffers_written(stmt):
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
