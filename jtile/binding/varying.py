"""The shard_map mesh axes a value varies over, and marking a value varying, across jax
releases (jax 0.10 keeps the axes in `aval.manual_axis_type.varying` and has `lax.pcast`;
later releases keep `aval.vma` and have `lax.pvary`)."""

from __future__ import annotations

import jax
from jax import lax


def aval_varying_axes(aval) -> frozenset:
    """The shard_map manual axes an abstract value varies over (empty outside shard_map)."""
    mat = getattr(aval, "manual_axis_type", None)
    varying = getattr(mat, "varying", None) if mat is not None else getattr(aval, "vma", None)
    return frozenset(varying or ())


def varying_axes(x) -> frozenset:
    """The shard_map manual axes the value `x` varies over (empty outside shard_map)."""
    return aval_varying_axes(jax.typeof(x))


def pvary(x, axes: tuple):
    """`x` marked varying over `axes` (mesh axes it does not vary over yet)."""
    fn = getattr(lax, "pvary", None)
    if fn is not None:
        return fn(x, axes)
    return lax.pcast(x, axes, to="varying")
