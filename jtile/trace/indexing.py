"""`buffer[...]` while tracing: element loads, stores, and slices that become tile regions."""

from __future__ import annotations

from jtile.ir.affine import static_difference, static_value
from jtile.ir.nodes import Buffer, Cast, Const, Expr, Load, Region, Store, as_expr
from jtile.ir.types import DType, MemorySpace
from jtile.trace.builder import active_builder, current
from jtile.trace.source import caller_location


def _key_tuple(buffer: Buffer, key) -> tuple:
    key = key if isinstance(key, tuple) else (key,)
    if len(key) == 0 and buffer.space is MemorySpace.VAR:
        return (0,)
    if buffer.space is MemorySpace.VAR and len(key) == 1:
        return key
    ellipses = [i for i, k in enumerate(key) if k is Ellipsis]
    if ellipses:
        at = ellipses[0]
        fill = buffer.ndim - (len(key) - 1)
        key = key[:at] + (slice(None),) * fill + key[at + 1:]
    return key


def _index_expr(buffer: Buffer, value, dim: int) -> Expr:
    expr = as_expr(value)
    if not expr.dtype.is_int:
        builder = current()
        raise builder.error(f"index {dim} of {buffer.describe()} has dtype {expr.dtype}; "
                            "indices must be integers", caller_location())
    static = static_value(expr)
    if static is not None and not 0 <= static < buffer.shape[dim]:
        builder = current()
        raise builder.error(f"index {static} is out of bounds for dimension {dim} of "
                            f"{buffer.describe()}", caller_location())
    return expr


def _check_rank(buffer: Buffer, key: tuple) -> None:
    if len(key) != buffer.ndim:
        builder = current()
        raise builder.error(f"{buffer.describe()} was indexed with {len(key)} indices; it has "
                            f"{buffer.ndim} dimensions", caller_location())


def index_buffer(buffer: Buffer, key):
    """`X[i, j]` is a Load; any slice makes the whole key a Region (a tile of X)."""
    key = _key_tuple(buffer, key)
    _check_rank(buffer, key)
    if not any(isinstance(k, slice) for k in key):
        indices = tuple(_index_expr(buffer, k, d) for d, k in enumerate(key))
        load = Load(buffer, indices, buffer.dtype)
        builder = active_builder()
        if builder is not None:
            builder.bound_values.note_load(load, builder.blocks)
        return load
    starts, extents = [], []
    for dim, k in enumerate(key):
        if not isinstance(k, slice):
            starts.append(_index_expr(buffer, k, dim))
            extents.append(1)
            continue
        if k.step not in (None, 1):
            raise current().error(f"slice {dim} of {buffer.describe()} has step {k.step}; "
                                  "tile regions need step 1", caller_location())
        start = as_expr(0 if k.start is None else k.start)
        stop = as_expr(buffer.shape[dim] if k.stop is None else k.stop)
        extent = static_difference(stop, start)
        if extent is None:
            raise current().error(
                f"slice {dim} of {buffer.describe()} does not have a static length; write it as "
                "X[s : s + n] with a Python int n", caller_location())
        # A global tile may reach past the array's end, as in TileLang: its copies are
        # bounds-checked (reads past the end give zeros, writes there are dropped).
        longest = None if buffer.space is MemorySpace.GLOBAL else buffer.shape[dim]
        if extent <= 0 or (longest is not None and extent > longest):
            raise current().error(f"slice {dim} of {buffer.describe()} has length {extent}, "
                                  f"outside 1..{buffer.shape[dim]}", caller_location())
        starts.append(start)
        extents.append(extent)
    return Region(buffer, tuple(starts), tuple(extents))


def coerce(value, dtype: DType) -> Expr:
    """`value` as an expression of `dtype`, casting when the types differ."""
    expr = as_expr(value, like=dtype)
    return expr if expr.dtype is dtype else Cast(expr, dtype)


def store_buffer(buffer: Buffer, key, value) -> None:
    builder = current("a buffer store")
    loc = caller_location()
    key = _key_tuple(buffer, key)
    _check_rank(buffer, key)
    if any(isinstance(k, slice) for k in key):
        raise builder.error(f"a slice assignment to {buffer.describe()}; use T.fill or T.copy "
                            "for tiles, or a T.Parallel loop for element-wise stores", loc)
    if buffer.space in (MemorySpace.BARRIER, MemorySpace.TMEM, MemorySpace.DESCRIPTOR):
        raise builder.error(f"{buffer.describe()} cannot be stored to element-wise", loc)
    if isinstance(value, Buffer) and value.space is not MemorySpace.VAR:
        raise builder.error(f"cannot store the whole buffer {value.describe()} into one element "
                            f"of {buffer.describe()}", loc)
    indices = tuple(_index_expr(buffer, k, d) for d, k in enumerate(key))
    builder.emit(Store(buffer, indices, coerce(value, buffer.dtype), loc))


def as_region(value, what: str, loc) -> Region:
    """Buffer, Region or head address (a Load) as a Region; a Load gets extents later."""
    if isinstance(value, Region):
        return value
    if isinstance(value, Buffer):
        zero = Const(0, DType.int32)
        return Region(value, tuple(zero for _ in value.shape), tuple(value.shape))
    raise current().error(f"{what} must be a buffer, a slice of one, or a head address X[i, j]; "
                          f"got {type(value).__name__}", loc)
