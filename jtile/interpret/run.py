"""`interpret`: runs a kernel's IR with jax.numpy, the semantic reference of the compiled path.

Blocks run one after another in a `lax.fori_loop` over the flattened grid (x fastest) with the
global buffers as the carry; each block gets fresh, poisoned on-chip allocations. Everything is
traceable, so `interpret` works under `jax.jit` and `jax.vmap`.

A kernel with grid barriers (`T.sync_grid`, statements of the kernel body itself) runs in
phases: every block runs the statements up to the first barrier, then every block the ones up
to the next, and so on. Each block's on-chip memory lives on between its phases, stacked over
the blocks in the loop's carry.
"""

from __future__ import annotations

import math
from typing import Mapping, Optional, Sequence

import jax
import jax.numpy as jnp
from jax import lax

from jtile.binding.varying import varying_axes
from jtile.ir.nodes import Kernel, SyncThreads
from jtile.interpret.checks import check_arguments, check_kernel
from jtile.interpret.expressions import Env, Evaluator
from jtile.interpret.memory import Context, Memory, block_memory, global_memory
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

    phases = grid_phases(kernel.body)
    if len(phases) > 1:
        final = _run_phases(kernel, globals_, phases)
        return tuple(final[globals_.slots[id(buffer)]] for buffer in kernel.outputs)

    def run_block(flat, carry):
        env = _block_env(kernel, flat)
        outer = globals_.fork(carry)
        memory = block_memory(outer, lambda buffer: _initial_value(outer, env, buffer))
        run_body(memory, env, kernel.body)
        return tuple(memory.arrays[:num_globals])

    final = lax.fori_loop(0, math.prod(kernel.grid), run_block, globals_.carry())
    return tuple(final[globals_.slots[id(buffer)]] for buffer in kernel.outputs)


def grid_phases(body) -> list:
    """`body` split at its grid barriers (T.sync_grid): the statements between them."""
    phases = [[]]
    for s in body:
        if isinstance(s, SyncThreads) and s.grid:
            phases.append([])
        else:
            phases[-1].append(s)
    return phases


def _run_phases(kernel: Kernel, globals_: Memory, phases) -> tuple:
    """Every block through each phase in turn; returns the global arrays at the end."""
    num_globals = len(globals_.arrays)
    blocks = math.prod(kernel.grid)
    slots = None

    def fresh_block(flat, globals_arrays):
        """Block `flat`'s on-chip memory as it starts (alloc_var initial values included)."""
        nonlocal slots
        env = _block_env(kernel, flat)
        outer = globals_.fork(globals_arrays)
        memory = block_memory(outer, lambda buffer: _initial_value(outer, env, buffer))
        slots = memory.slots
        return tuple(memory.arrays[num_globals:])

    # Every block starts before any block passes the first barrier: the initial values see
    # global memory as the launch found it.
    shapes = jax.eval_shape(lambda: fresh_block(0, globals_.carry()))
    stacked = tuple(jnp.zeros((blocks,) + a.shape, a.dtype) for a in shapes)

    def start(flat, stacked):
        return tuple(s.at[flat].set(a) for s, a in
                     zip(stacked, fresh_block(flat, globals_.carry())))

    stacked = lax.fori_loop(0, blocks, start, stacked)
    carry = (globals_.carry(), stacked)
    for phase in phases:
        def run_block(flat, carry, phase=phase):
            globals_arrays, stacked = carry
            arrays = list(globals_arrays) + [s[flat] for s in stacked]
            memory = Memory(globals_.ctx, slots, arrays)
            run_body(memory, _block_env(kernel, flat), phase)
            stacked = tuple(s.at[flat].set(a)
                            for s, a in zip(stacked, memory.arrays[num_globals:]))
            return tuple(memory.arrays[:num_globals]), stacked

        carry = lax.fori_loop(0, blocks, run_block, carry)
    return carry[0]
