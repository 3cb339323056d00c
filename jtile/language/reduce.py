"""Tile reductions (`T.reduce_*`) and reducers (`T.finalize_reducer`)."""

from __future__ import annotations

from jtile.errors import JtileShapeError
from jtile.ir.nodes import Buffer, FinalizeReducer, Reduce
from jtile.ir.types import MemorySpace
from jtile.trace.builder import current
from jtile.trace.source import caller_location


def _reduce(op: str, src, dst, dim: int, clear: bool):
    builder = current(f"T.reduce_{op}")
    loc = caller_location()
    name = f"T.reduce_{op}"
    if not isinstance(src, Buffer) or not isinstance(dst, Buffer):
        raise builder.error("src and dst must be whole fragment buffers", loc, op=name)
    for buf, role in ((src, "src"), (dst, "dst")):
        if buf.space is not MemorySpace.FRAGMENT:
            raise builder.error(f"{role} {buf.describe()} must be a fragment "
                                "(T.alloc_fragment)", loc, op=name)
    if not -src.ndim <= dim < src.ndim:
        raise builder.error(f"dim={dim} is out of range for {src.describe()}", loc, op=name)
    dim = dim % src.ndim
    expected = src.shape[:dim] + src.shape[dim + 1:]
    if tuple(dst.shape) != (expected or (1,)):
        raise builder.error(f"dst {dst.describe()} must have shape {expected or (1,)}: src "
                            f"{src.describe()} without dimension {dim}", loc, op=name,
                            cls=JtileShapeError)
    builder.emit(Reduce(op, src, dst, dim, bool(clear), loc))


def reduce_max(buffer, out, dim=-1, clear=True):
    """out = max of `buffer` along `dim` (`clear=False` also folds in out's old values)."""
    _reduce("max", buffer, out, dim, clear)


def reduce_min(buffer, out, dim=-1, clear=True):
    """out = min of `buffer` along `dim`."""
    _reduce("min", buffer, out, dim, clear)


def reduce_sum(buffer, out, dim=-1, clear=True):
    """out = sum of `buffer` along `dim` (`clear=False` adds to out)."""
    _reduce("sum", buffer, out, dim, clear)


def reduce_abssum(buffer, out, dim=-1, clear=True):
    """out = sum of |buffer| along `dim`."""
    _reduce("abssum", buffer, out, dim, clear)


def reduce_absmax(buffer, out, dim=-1, clear=True):
    """out = max of |buffer| along `dim`."""
    _reduce("absmax", buffer, out, dim, clear)


def finalize_reducer(reducer):
    """Combines every thread's partial results of a reducer; read it only after this."""
    builder = current("T.finalize_reducer")
    loc = caller_location()
    if not isinstance(reducer, Buffer) or reducer.reducer_op is None:
        raise builder.error(f"{reducer!r} is not a reducer (T.alloc_reducer)", loc,
                            op="T.finalize_reducer")
    builder.emit(FinalizeReducer(reducer, loc))
