"""Cotangents with the varying-axes type of their primal inputs, for custom VJPs in shard_map.

Inside `jax.shard_map` every value has a set of mesh axes it varies over. A backward kernel
that computes the gradient of a replicated weight from the local shard of a batch-sharded
input returns a value that varies over the batch axis, and JAX refuses a custom VJP whose
cotangent's type differs from its input's. JAX's own ops transpose the implicit broadcast of
the replicated weight into a `psum`; `match_varying` does the same for jtile's ops: it sums the
cotangent over the axes along which it varies but its primal input does not, and marks it
varying (`pvary`) along axes the primal varies over but it does not. Outside shard_map both
sets are empty and nothing happens.
"""

from __future__ import annotations

import jax
from jax import lax

from jtile.binding.varying import pvary, varying_axes


def witness(x) -> jax.Array:
    """A zero-size slice of `x` that carries its varying-axes type into a VJP's residuals
    (keeping a type, not the data, alive until the backward pass)."""
    return x.reshape(-1)[:0]


def match_varying(cotangent, primal):
    """`cotangent` with exactly the varying axes of `primal` (an input or its `witness`).

    Args:
        cotangent: the gradient a backward kernel computed for `primal`, or None.
        primal: the primal input, or a `witness` of it.

    Returns:
        The cotangent, summed over the mesh axes it varies over and `primal` does not, and
        marked varying over the axes `primal` varies over and it does not.
    """
    if cotangent is None:
        return None
    want = varying_axes(primal)
    have = varying_axes(cotangent)
    extra = tuple(sorted(have - want))
    if extra:
        cotangent = lax.psum(cotangent, extra)
    missing = tuple(sorted(want - have))
    if missing:
        cotangent = pvary(cotangent, missing)
    return cotangent
