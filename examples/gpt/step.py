"""The training step: loss, gradients and an AdamW update, on one device or data-parallel.

Data parallelism is `jax.shard_map` over a one-axis mesh of devices: the batch is sharded,
parameters and optimiser state are replicated, and the loss is the mean over all devices
(`lax.pmean`). Differentiating that mean gives every replicated weight the sum over devices of
its local gradients: JAX's own ops transpose their implicit broadcast of a replicated weight
into a psum, and `jtile.ops` return the cotangent of a replicated input replicated (psum'd) in
their VJPs, so the same loss function serves one device and many.
"""

from __future__ import annotations

from typing import Callable, Optional

import jax
import jax.numpy as jnp
import optax
from jax import lax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"


def make_optimizer(lr: float, steps: int, warmup: int, weight_decay: float):
    """AdamW under a linear warm-up and cosine decay to lr / 10, after global-norm clipping
    at 1; weight decay applies to the matrices only (not to norm weights)."""
    warmup = max(1, min(warmup, steps - 1)) if steps > 1 else 1
    schedule = optax.warmup_cosine_decay_schedule(
        init_value=lr / warmup, peak_value=lr, warmup_steps=warmup,
        decay_steps=max(steps, warmup + 1), end_value=lr / 10)

    def decay_mask(params):
        return jax.tree.map(lambda x: x.ndim == 2, params)

    return optax.chain(optax.clip_by_global_norm(1.0),
                       optax.adamw(schedule, b1=0.9, b2=0.95, weight_decay=weight_decay,
                                   mask=decay_mask))


def data_mesh(devices=None) -> Mesh:
    """A one-axis mesh named "data" over `devices` (default: all local devices)."""
    import numpy as np

    devices = list(jax.local_devices() if devices is None else devices)
    return Mesh(np.array(devices), (DATA_AXIS,))


def make_step(loss: Callable, optimizer, mesh: Optional[Mesh] = None):
    """A jitted `step(params, opt_state, tokens, targets) -> (params, opt_state, loss)`.

    The parameters and optimiser state passed in are donated: the new ones take their
    buffers, as in any training loop that keeps only the latest state (the same addresses
    every step also spare XLA re-recording its command buffers for new ones).

    Args:
        loss: `loss(params, tokens, targets) -> scalar`, the mean over the batch it is given.
        optimizer: an optax GradientTransformation.
        mesh: None for one device; a mesh with the axis "data" to shard the batch over it
            (tokens and targets then go through `place_batch`, params through `replicate`).
    """

    def step(params, opt_state, tokens, targets, reduce):
        value, grads = jax.value_and_grad(
            lambda p: reduce(loss(p, tokens, targets)))(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    if mesh is None:
        return jax.jit(lambda *args: step(*args, reduce=lambda v: v), donate_argnums=(0, 1))

    def local_step(params, opt_state, tokens, targets):
        return step(params, opt_state, tokens, targets,
                    reduce=lambda v: lax.pmean(v, DATA_AXIS))

    sharded = jax.shard_map(local_step, mesh=mesh,
                            in_specs=(P(), P(), P(DATA_AXIS), P(DATA_AXIS)),
                            out_specs=(P(), P(), P()))
    return jax.jit(sharded, donate_argnums=(0, 1))


def replicate(tree, mesh: Optional[Mesh]):
    """A copy of `tree` on every device of `mesh` (on the default device when mesh is None):
    never `tree`'s own buffers, which a step donates."""
    placed = jax.device_put(tree, None if mesh is None else NamedSharding(mesh, P()))
    return jax.tree.map(jnp.copy, placed)  # device_put may hand back the same buffers


def place_batch(array, mesh: Optional[Mesh]):
    """A (batch, ...) array split along its batch axis over `mesh` (whole when mesh is None)."""
    if mesh is None:
        return jax.device_put(array)
    return jax.device_put(array, NamedSharding(mesh, P(DATA_AXIS)))
