"""Launching a kernel whose global buffers carry `T.annotate_layout` index maps
(`jtile.trace.global_layout`): the kernel itself indexes every buffer logically, so each such
array is put into logical order before the launch and back into its layout's order after it.
XLA fuses the index computation into the gather and the scatter."""

from __future__ import annotations

import jax.numpy as jnp

from jtile.binding.primitive import jtile_call_p


def _layout(buffer):
    return getattr(buffer, "global_layout", None)


def bind_launch(args, call) -> list:
    """`jtile_call_p.bind(*args, call=call)`, with the arrays of laid-out buffers reordered."""
    kernel = call.kernel
    outputs = kernel.outputs
    # An input that seeds an aliased output holds that output's storage (and its layout).
    seeded = {i: outputs[o] for i, o in call.aliases}
    args = list(args)
    for index, buffer in enumerate(kernel.inputs[:len(args)]):
        layout = _layout(buffer) or _layout(seeded.get(index))
        if layout is not None:
            positions = layout.positions(buffer.shape, jnp)
            args[index] = args[index].reshape(-1)[positions]
    outs = list(jtile_call_p.bind(*args, call=call))
    for index, buffer in enumerate(outputs):
        layout = _layout(buffer)
        if layout is not None:
            positions = layout.positions(buffer.shape, jnp).reshape(-1)
            out = outs[index]
            outs[index] = jnp.zeros(out.size, out.dtype).at[positions].set(
                out.reshape(-1), unique_indices=True).reshape(out.shape)
    return outs
