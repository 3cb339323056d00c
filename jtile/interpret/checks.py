"""What interpret mode refuses before running anything.

- TMEM buffers: tcgen05 tensor memory has no model here.
- Reads of the thread index, or of a buffer holding per-thread values, inside T.Parallel or by
  a block-wide tile operation (which thread runs an iteration, or does a share of a tile, is
  the compiler's layout choice). Elsewhere a statement that reads them runs over a vector of
  the block's threads (`threads.py`).
- Stores to an input that is not aliased to an output: inputs are read-only.
- 64-bit integers while jax_enable_x64 is off: jax computes them in 32 bits, so a value past
  32 bits would wrap where the compiled kernel keeps it.
"""

from __future__ import annotations

import jax

from jtile.ir.nodes import BinOp, Const, Kernel, UnOp, Var, VarKind
from jtile.ir.types import MemorySpace
from jtile.ir.walk import buffers_read, buffers_written, statement_exprs, statements, \
    sub_expressions
from jtile.interpret.memory import STATELESS_SPACES, Context, jnp_dtype
from jtile.interpret.threads import Mode, cooperative_name, statement_modes


def _is_thread(kernel: Kernel, e) -> bool:
    return isinstance(e, Var) and (e is kernel.thread_var or e.kind is VarKind.THREAD)


def check_kernel(ctx: Context, aliases: dict) -> None:
    """Raises a JtileError for anything interpret mode cannot run faithfully."""
    kernel: Kernel = ctx.kernel
    for buffer in kernel.allocations:
        if buffer.space is MemorySpace.TMEM:
            raise ctx.error(f"{buffer.describe()} is tensor memory: TMEM/tcgen05 have no "
                            "interpret-mode semantics; run this kernel compiled on an sm_100a "
                            "GPU", buffer.loc)
    _check_thread_reads(ctx)
    _check_wide_integers(ctx)
    inputs = {id(b): i for i, b in enumerate(kernel.inputs)}
    for stmt in statements(kernel.body):
        for buffer in buffers_written(stmt):
            index = inputs.get(id(buffer))
            if index is not None and index not in aliases:
                raise ctx.error(
                    f"this statement writes input {buffer.describe()}; inputs are "
                    "read-only unless aliased to an output (input_output_aliases="
                    f"{{{index}: <output index>}})", stmt.loc)


def _is_wide_integer(dtype) -> bool:
    return dtype is not None and not dtype.is_float and not dtype.is_bool and dtype.bytes == 8


def _may_pass_32_bits(x) -> bool:
    """A 64-bit integer expression whose value can leave the 32-bit range: arithmetic, or a
    constant outside it (a warp vote's uint64 mask, or a cast, only carries 32-bit values)."""
    if not _is_wide_integer(getattr(x, "dtype", None)):
        return False
    if isinstance(x, (BinOp, UnOp)):
        return True
    return isinstance(x, Const) and not -2**31 <= x.value < 2**32


def _check_wide_integers(ctx: Context) -> None:
    """64-bit integer buffers or arithmetic, with jax computing 64-bit types in 32 bits."""
    if jax.config.jax_enable_x64:
        return
    kernel = ctx.kernel
    for buffer in (*kernel.inputs, *kernel.outputs, *kernel.allocations):
        if buffer.space not in STATELESS_SPACES and _is_wide_integer(buffer.dtype):
            raise ctx.error(_wide_message(buffer.describe()), buffer.loc)
    for stmt in statements(kernel.body):
        for e in statement_exprs(stmt):
            for x in sub_expressions(e):
                if _may_pass_32_bits(x):
                    raise ctx.error(_wide_message(f"{x.dtype} arithmetic"), stmt.loc)


def _wide_message(what: str) -> str:
    return (f"{what}: interpret mode computes 64-bit integers in 32 bits while jax's "
            "jax_enable_x64 is off, so a value past 32 bits would wrap where the compiled "
            "kernel keeps it; enable it (jax.config.update('jax_enable_x64', True)) or use "
            "32-bit integers")


def _check_thread_reads(ctx: Context) -> None:
    """T.Parallel iterations and block-wide tile operations must not read the thread index or
    a per-thread buffer: which thread runs an iteration (or does a tile's share) is the
    compiler's layout choice, so such a read has no meaning to model."""
    kernel = ctx.kernel
    per_thread = ctx.per_thread
    for stmt, mode in statement_modes(kernel, per_thread):
        if mode is Mode.THREAD:
            continue
        if mode is Mode.PARALLEL:
            if any(_is_thread(kernel, x) for e in statement_exprs(stmt)
                   for x in sub_expressions(e)):
                raise ctx.error(
                    "this statement inside T.Parallel reads the thread index "
                    "(T.get_thread_binding); which thread runs an iteration is the compiler's "
                    "layout choice, so interpret mode has no meaning for it; use the loop's own "
                    "indices", stmt.loc)
            where = "this statement inside T.Parallel"
        elif cooperative_name(stmt) is not None:
            where = cooperative_name(stmt)
        else:
            continue
        for buffer in sorted(buffers_read(stmt), key=lambda b: b.name):
            if id(buffer) in per_thread:
                raise ctx.error(
                    f"{where} reads {buffer.describe()}, which holds a different value in each "
                    f"thread (per-thread code writes it, or it starts from the thread index); "
                    "which thread's copy a block-wide operation reads is the compiler's layout "
                    "choice, so interpret mode has no meaning for it; read it in per-thread code "
                    "(statements outside T.Parallel) and pass the values on through shared "
                    "memory", stmt.loc)


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
