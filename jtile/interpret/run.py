"""`interpret`: runs a kernel's IR with jax.numpy, the semantic reference of the compiled path.

Blocks run one after another in a `lax.fori_loop` over the flattened grid (x fastest) with the
global buffers as the carry; each block gets fresh, poisoned on-chip allocations. Everything is
traceable, so `interpret` works under `jax.jit` and `jax.vmap`.
"""

from __future__ import annotations

import math
from typing import Mapping, Optional, Sequence

import jax
import jax.numpy as jnp
from jax import lax

from jtile.binding.varying import varying_axes
from jtile.ir.nodes import Kernel
from jtile.interpret.checks import check_arguments, check_kernel
from jtile.interpret.expressions import Env, Evaluator
from jtile.interpret.memory import Context, block_memory, global_memory
from jtile.interpret.statements import run_body
from jtile.interpret.threads import per_thread_buffers, thread_space


def _block_env(kernel: Kernel, flat) -> Env:
    """Block indices of flattened block number `flat` (x fastest, then y, then z)."""
    grid = tuple(kernel.grid) + (1,) * (3 - len(kernel.grid))
    coords = (flat % grid[0], (flat // grid[0]) % grid[1], flat // (grid[0] * grid[1]))
    env = Env()
    for var in kernel.block_vars:
        env = env.bind(var, coords[var.axis])
    return env


def _initial_value(memory, env: Env, buffer):
    """An alloc_var's initial value; a per-thread one is evaluated over the block's threads."""
    if memory.per_thread(buffer):
        env = thread_space(memory.ctx.kernel, env)
    return Evaluator(memory, env, buffer.loc)(buffer.init)


def interpret(kernel: Kernel, inputs: Sequence[jax.Array], *,
              aliases: Optional[Mapping[int, int]] = None) -> tuple:
    """Runs `kernel` on `inputs` with JAX operations on any backend.

    Args:
        kernel: a traced kernel (`jtile.trace.trace_kernel.trace`).
        inputs: one array per input buffer, with its shape and dtype.
        aliases: input index -> output index (input_output_aliases; a mapping or (input,
            output) pairs): that output starts as the input's value and shares its storage
            while the kernel runs, so the kernel may also write the input.

    Returns:
        One array per output buffer of the kernel. Outputs start poisoned (NaN, or -1 for
        integers), so elements the kernel never writes show.

    Raises:
        JtileError: the arrays do not match the kernel's inputs, the kernel writes an input
            that is not aliased, reads the thread index or a per-thread buffer inside
            T.Parallel or a block-wide tile operation, or uses TMEM.
    """
    inputs = [jnp.asarray(x) for x in inputs]
    ctx = Context(kernel, frozenset().union(*(varying_axes(x) for x in inputs)),
                  per_thread_buffers(kernel))
    aliases = {int(i): int(o) for i, o in dict(aliases or {}).items()}
    check_arguments(ctx, inputs, aliases)
    check_kernel(ctx, aliases)
    globals_ = global_memory(ctx, inputs, aliases)
    num_globals = len(globals_.arrays)

    def run_block(flat, carry):
        env = _block_env(kernel, flat)
        outer = globals_.fork(carry)
        memory = block_memory(outer, lambda buffer: _initial_value(outer, env, buffer))
        run_body(memory, env, kernel.body)
        return tuple(memory.arrays[:num_globals])

    final = lax.fori_loop(0, math.prod(kernel.grid), run_block, globals_.carry())
    return tuple(final[globals_.slots[id(buffer)]] for buffer in kernel.outputs)
