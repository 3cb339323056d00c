"""Input checks shared by the `jtile.ops` functions: each failure names the op and the rule."""

from __future__ import annotations

import numpy as np

import jax.numpy as jnp

from jtile.errors import JtileShapeError

FLOAT_DTYPES = ("float32", "bfloat16", "float16")


def describe(x) -> str:
    """`bfloat16[4, 128]`, the way the messages show an array."""
    return f"{np.dtype(x.dtype).name}{list(x.shape)}"


def fail(op: str, message: str) -> JtileShapeError:
    """The error an op raises for a bad input (returned, so the caller writes `raise`)."""
    return JtileShapeError(f"jtile.ops.{op}: {message}")


def require_array(op: str, name: str, x) -> None:
    """`x` must be an array (a jax.Array, a tracer, or a NumPy array)."""
    if not (hasattr(x, "shape") and hasattr(x, "dtype")):
        raise fail(op, f"{name} must be an array; got {type(x).__name__}")


def require_float(op: str, name: str, x) -> None:
    """`x` must be a float32, bfloat16 or float16 array."""
    require_array(op, name, x)
    if np.dtype(x.dtype).name not in FLOAT_DTYPES:
        raise fail(op, f"{name} is {describe(x)}; the op takes {', '.join(FLOAT_DTYPES)} "
                       "(the arithmetic is float32 inside, the result has the input's dtype)")


def require_integer(op: str, name: str, x) -> None:
    """`x` must be an integer array."""
    require_array(op, name, x)
    if not jnp.issubdtype(x.dtype, jnp.integer):
        raise fail(op, f"{name} is {describe(x)}; it must be an integer array")


def require_rank(op: str, name: str, x, minimum: int) -> None:
    """`x` must have at least `minimum` dimensions."""
    if x.ndim < minimum:
        raise fail(op, f"{name} is {describe(x)}; it needs at least {minimum} dimension"
                       f"{'s' if minimum > 1 else ''}")


def require_nonempty(op: str, name: str, x) -> None:
    """`x` must hold at least one element (a kernel over nothing has no grid)."""
    if x.size == 0:
        raise fail(op, f"{name} is {describe(x)}; it has no elements")


def require_shape(op: str, name: str, x, shape: tuple, rule: str) -> None:
    """`x.shape` must equal `shape`; `rule` says why, in the op's words."""
    if tuple(x.shape) != tuple(shape):
        raise fail(op, f"{name} is {describe(x)} but must have shape {list(shape)}: {rule}")


def require_same_dtype(op: str, names: tuple, arrays: tuple) -> None:
    """Every array in `arrays` must share one dtype."""
    dtypes = {np.dtype(a.dtype) for a in arrays}
    if len(dtypes) > 1:
        shown = ", ".join(f"{n} {describe(a)}" for n, a in zip(names, arrays))
        raise fail(op, f"{shown}: these must share one dtype")


def require_static_float(op: str, name: str, value) -> float:
    """A static Python number such as `eps`; returns it as a float."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise fail(op, f"{name}={value!r} must be a static Python number")
    return float(value)
