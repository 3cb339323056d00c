"""Buffer views (T.view, T.Tensor(..., buf.data)) in interpret mode.

A view has no array of its own: reading it reinterprets the bytes of the buffer it views
(row-major, little-endian, as on the GPU), and writing it writes those bytes back.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from jtile.ir.nodes import Buffer
from jtile.interpret.memory import jnp_dtype


def _check_exact(memory, buffer: Buffer, loc) -> None:
    for b in (buffer, buffer.view_of):
        if jnp.dtype(jnp_dtype(b.dtype)).itemsize != b.dtype.bytes:
            raise memory.ctx.error(f"view {buffer.describe()} of {buffer.view_of.describe()}: "
                                   f"{b.dtype} is computed in a narrower type here (enable "
                                   "jax_enable_x64 for 64-bit views)", loc)


def _reinterpret(array: jax.Array, dtype) -> jax.Array:
    """The bytes of `array` (any shape) as a flat array of `dtype`."""
    dtype = jnp.dtype(dtype)
    if array.dtype == dtype:
        return array.reshape(-1)
    raw = lax.bitcast_convert_type(array.reshape(-1), jnp.uint8).reshape(-1)
    if dtype.itemsize == 1:
        return lax.bitcast_convert_type(raw, dtype)
    return lax.bitcast_convert_type(raw.reshape(-1, dtype.itemsize), dtype)


def _threads(memory, buffer: Buffer) -> tuple:
    """The leading axis of a per-thread buffer's array (each thread's bytes lie together)."""
    return (memory.ctx.kernel.threads,) if memory.per_thread(buffer) else ()


def read_view(memory, buffer: Buffer, loc=None) -> jax.Array:
    """The current contents of view `buffer`, shaped and typed as the view."""
    _check_exact(memory, buffer, loc)
    base = memory.read(buffer.view_of, loc)
    lead = _threads(memory, buffer)
    return _reinterpret(base, jnp_dtype(buffer.dtype)).reshape(lead + tuple(buffer.shape))


def write_view(memory, buffer: Buffer, array: jax.Array, loc=None) -> None:
    """Replaces the whole view `buffer` (so the whole viewed buffer) with `array`."""
    _check_exact(memory, buffer, loc)
    lead = _threads(memory, buffer)
    array = jnp.asarray(array, jnp_dtype(buffer.dtype)).reshape(lead + tuple(buffer.shape))
    base = buffer.view_of
    memory.write(base, _reinterpret(array, jnp_dtype(base.dtype)).reshape(
        lead + tuple(base.shape)), loc)
