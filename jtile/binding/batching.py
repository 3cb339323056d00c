"""vmap of `jtile_call_p`: the batch folds into the launch grid, one launch for the whole batch.

The code generator puts the batch in gridDim.z while it fits under CUDA's limit of 65,535 and
spills the rest into y and then x (`jtile.codegen.cuda.fold_batch`); only a batch that would
exceed every axis's limit together is refused, with an error naming the batch and the grid.

The batching rule moves every batched operand's batch dimension to axis 0 and re-binds the
primitive with `batch = B` and one flag per input saying whether it is batched. Unbatched inputs
stay unbatched: the generated kernel indexes them without a batch offset, so a weight shared by
the whole batch is read in place, never broadcast. Outputs always carry the batch at axis 0.

Nested vmap folds too: a call already batched by B1 and vmapped again by B2 becomes one launch
of B2 * B1 instances. Operands batched at one level only are broadcast over the other (the one
case where the fold materialises a copy); the outputs are reshaped back to (B2, B1, ...).

In interpret mode the batch is evaluated with `jax.vmap` over `jtile.interpret.interpret`
(unbatched inputs broadcast through `in_axes=None`).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from jax.interpreters import batching as jax_batching


def interpret_call(*args, call):
    """Evaluates a `jtile_call_p` equation with jax.numpy: the interpret-mode lowering."""
    from jtile.interpret import interpret

    def run(*inputs):
        return tuple(interpret(call.kernel, inputs, aliases=call.alias_map))

    if call.batch == 1:
        return list(run(*args))
    in_axes = tuple(0 if call.input_batched(i) else None for i in range(len(args)))
    return list(jax.vmap(run, in_axes=in_axes, axis_size=call.batch)(*args))


def _batch(prim, args, dims, call):
    """Re-binds `prim` once with the vmap batch folded into the call; outputs batched at 0."""
    size = next(x.shape[d] for x, d in zip(args, dims) if d is not None)
    inner = call.batch  # 1 unless an inner vmap already folded a batch in
    if size * inner == 1:
        # A batch of one is the unbatched call (a folded batch of 1 means "unbatched").
        operands = [x if d is None else jnp.squeeze(x, d) for x, d in zip(args, dims)]
        return [o[None] for o in prim.bind(*operands, call=call)], [0] * len(call.kernel.outputs)
    aliased = {i for i, _ in call.aliases}
    operands, flags = [], []
    for index, (x, d) in enumerate(zip(args, dims)):
        inner_batched = call.input_batched(index)
        # An aliased input becomes an output's buffer, and outputs are batched.
        if d is None and not inner_batched and index not in aliased:
            operands.append(x)
            flags.append(False)
            continue
        core = tuple(call.kernel.inputs[index].shape)
        x = jnp.broadcast_to(x, (size,) + x.shape) if d is None else jnp.moveaxis(x, d, 0)
        if inner > 1:
            if not inner_batched:
                x = jnp.broadcast_to(jnp.expand_dims(x, 1), (size, inner) + core)
            x = x.reshape((size * inner,) + core)
        operands.append(x)
        flags.append(True)
    folded = dataclasses.replace(call, batch=size * inner, batched=tuple(flags))
    outs = prim.bind(*operands, call=folded)
    if inner > 1:
        outs = [o.reshape((size, inner) + tuple(o.shape[1:])) for o in outs]
    return list(outs), [0] * len(outs)


def register(prim) -> None:
    """Installs the batching rule of `prim` (jax 0.10 and 0.11 keep it in different tables)."""
    fancy = getattr(jax_batching, "fancy_primitive_batchers", None)
    if fancy is not None:
        def rule(axis_data, args, dims, *, call):
            del axis_data
            if all(d is None for d in dims):
                outs = prim.bind(*args, call=call)
                return outs, [None] * len(outs)
            return _batch(prim, args, dims, call)

        fancy[prim] = rule
    else:  # pragma: no cover - the older table, (args, dims, **params)
        jax_batching.primitive_batchers[prim] = (
            lambda args, dims, *, call: _batch(prim, args, dims, call))
