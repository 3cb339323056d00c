"""The shard_map manual axes an abstract value varies over, across jax releases."""

from __future__ import annotations


def varying_axes(aval) -> frozenset:
    """The shard_map manual axes `aval` varies over (jax 0.10: `manual_axis_type.varying`;
    later releases: `vma`)."""
    mat = getattr(aval, "manual_axis_type", None)
    varying = getattr(mat, "varying", None) if mat is not None else getattr(aval, "vma", None)
    return frozenset(varying or ())
