"""Launching a `KernelSequence`: one `jtile_call_p` per `with T.Kernel(...)` block, in order.

Each launch is an ordinary `jtile_call_p` equation, so its rules (interpret mode, the CUDA
lowering, vmap folded into the grid, shard_map) apply unchanged, and a function of several
kernels works under `jax.jit`, `jax.vmap` and `jax.custom_vjp` because each of its launches
does. The arrays are threaded functionally: every storage of the call (input, output,
workspace) has a current value, a launch takes the values of what it uses and replaces those
of what it writes; an array a launch both keeps and writes is an aliased input
(input_output_aliases), so the compiled launch updates it in place.
"""

from __future__ import annotations

from typing import Callable

import jax.numpy as jnp

from jtile.binding.global_layouts import bind_launch
from jtile.binding.primitive import KernelCall
from jtile.trace.kernel_sequence import KernelSequence

__all__ = ["check_sequence", "call_sequence"]


def check_sequence(sequence: KernelSequence) -> KernelSequence:
    """Runs the target-independent passes on every launch (as for a single kernel), so a
    mistake in any block is reported at the call."""
    from jtile.passes import run_passes

    return sequence.replace_kernels(
        run_passes(launch.kernel, None, aliases=launch.alias_map)
        for launch in sequence.launches)


def _uninitialised(buffer):
    """The value of a storage read before anything wrote it: poisoned, as the interpreter's
    fresh outputs are (NaN, or -1 for integers), so the read shows in the results."""
    from jtile.interpret.memory import jnp_dtype, poison_value

    return jnp.full(buffer.shape, poison_value(buffer.dtype), jnp_dtype(buffer.dtype))


def call_sequence(sequence: KernelSequence, operands, call_params: Callable) -> list:
    """Binds each launch on the current values of its storages; returns the outputs.

    Args:
        sequence: the checked sequence.
        operands: the call's input arrays.
        call_params: kernel -> the `KernelCall` of its launch (interpret, target, ...).
    """
    values = [None if s.source is None else operands[s.source] for s in sequence.storages]
    for launch in sequence.launches:
        kernel = launch.kernel
        args = [values[s] if values[s] is not None else _uninitialised(buffer)
                for s, buffer in zip(launch.reads, kernel.inputs)]
        call = call_params(kernel)
        call = KernelCall(kernel=kernel, aliases=launch.aliases, interpret=call.interpret,
                          debug=call.debug, name=kernel.name, target=call.target,
                          options=call.options)
        outs = bind_launch(args, call)
        for s, out in zip(launch.writes, outs):
            values[s] = out
    return [values[s] for s in sequence.results]
