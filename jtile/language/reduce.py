"""Tile reductions (`T.reduce`, `T.reduce_*`) and reducers (`T.finalize_reducer`)."""

from __future__ import annotations

from jtile.errors import JtileShapeError
from jtile.ir.nodes import Buffer, Copy, FinalizeReducer, Reduce, full_region
from jtile.ir.types import MemorySpace
from jtile.trace.builder import current
from jtile.trace.source import caller_location

# TileLang's reduce kinds; the bitwise ones need integer (or bool) buffers.
REDUCE_KINDS = ("sum", "abssum", "max", "absmax", "min", "bitand", "bitor", "bitxor")
BITWISE_KINDS = ("bitand", "bitor", "bitxor")


def _stage_in_fragment(builder, buf: Buffer, loc) -> Buffer:
    """A fresh fragment with `buf`'s shape and dtype (TileLang reduces shared tiles this way)."""
    frag = Buffer(builder.fresh_name(f"{buf.name}_frag"), tuple(buf.shape), buf.dtype,
                  MemorySpace.FRAGMENT, loc)
    return builder.add_allocation(frag)


def _reduce(op: str, src, dst, dim: int, clear: bool, batch=1, nan_propagate=False,
            annotations=None):
    builder = current(f"T.reduce_{op}")
    loc = caller_location()
    name = f"T.reduce_{op}"
    if op not in REDUCE_KINDS:
        raise builder.error(f"reduce_type {op!r} is not one of TileLang's {REDUCE_KINDS}", loc,
                            op="T.reduce")
    if batch != 1:
        raise builder.error(f"batch={batch!r} is not supported: jtile combines every output of "
                            "a reduction in one exchange already; use batch=1", loc, op=name)
    if nan_propagate:
        raise builder.error("nan_propagate=True is not supported: jtile's max/min follow fmaxf/"
                            "fminf, which return the non-NaN operand", loc, op=name)
    if annotations:
        raise builder.error(f"annotations={annotations!r} are not supported; drop them", loc,
                            op=name)
    if not isinstance(src, Buffer) or not isinstance(dst, Buffer):
        raise builder.error("src and dst must be whole fragment buffers (or whole shared tiles)",
                            loc, op=name)
    for buf, role in ((src, "src"), (dst, "dst")):
        if buf.space is not MemorySpace.FRAGMENT and not buf.space.is_shared:
            raise builder.error(f"{role} {buf.describe()} must be a fragment (T.alloc_fragment) "
                                "or a shared tile (T.alloc_shared)", loc, op=name)
    if op in BITWISE_KINDS and not (dst.dtype.is_int or dst.dtype.is_bool):
        raise builder.error(f"{name} needs integer or bool buffers; dst is {dst.describe()}",
                            loc, op=name)
    if not -src.ndim <= dim < src.ndim:
        raise builder.error(f"dim={dim} is out of range for {src.describe()}", loc, op=name)
    dim = dim % src.ndim
    expected = src.shape[:dim] + src.shape[dim + 1:]
    if tuple(dst.shape) != (expected or (1,)):
        raise builder.error(f"dst {dst.describe()} must have shape {expected or (1,)}: src "
                            f"{src.describe()} without dimension {dim}", loc, op=name,
                            cls=JtileShapeError)
    # Shared tiles go through fragments, as TileLang's reduce does.
    src_frag, dst_frag = src, dst
    if src.space.is_shared:
        src_frag = _stage_in_fragment(builder, src, loc)
        builder.emit(Copy(full_region(src), full_region(src_frag), loc))
    if dst.space.is_shared:
        dst_frag = _stage_in_fragment(builder, dst, loc)
        if not clear:
            builder.emit(Copy(full_region(dst), full_region(dst_frag), loc))
    builder.emit(Reduce(op, src_frag, dst_frag, dim, bool(clear), loc))
    if dst_frag is not dst:
        builder.emit(Copy(full_region(dst_frag), full_region(dst), loc))


def reduce(buffer, out, reduce_type, dim, clear, batch=1, nan_propagate=False,
           annotations=None):
    """out = reduce_type of `buffer` along `dim` (`clear=False` also folds in out's values).

    Args:
        buffer: a fragment or shared tile; shared tiles are staged through a fragment.
        out: the fragment or shared tile that receives the result: `buffer`'s shape without
            `dim`.
        reduce_type: "sum", "abssum", "max", "absmax", "min", or (integer/bool tiles)
            "bitand", "bitor", "bitxor".
        dim: the dimension reduced (negative counts from the end).
        clear: start from the identity (True) or from out's current values (False).

    Fragments reduce in registers, then across lanes with shuffles, then across warps through
    shared memory (any arch, sm_80+). 16-bit floats accumulate in float32.
    """
    _reduce(str(reduce_type), buffer, out, dim, clear, batch, nan_propagate, annotations)


def reduce_max(buffer, out, dim=-1, clear=True, batch=1, nan_propagate=False, annotations=None):
    """out = max of `buffer` along `dim` (`clear=False` also folds in out's old values)."""
    _reduce("max", buffer, out, dim, clear, batch, nan_propagate, annotations)


def reduce_min(buffer, out, dim=-1, clear=True, batch=1, nan_propagate=False, annotations=None):
    """out = min of `buffer` along `dim`."""
    _reduce("min", buffer, out, dim, clear, batch, nan_propagate, annotations)


def reduce_sum(buffer, out, dim=-1, clear=True, batch=1, annotations=None):
    """out = sum of `buffer` along `dim` (`clear=False` adds to out)."""
    _reduce("sum", buffer, out, dim, clear, batch, False, annotations)


def reduce_abssum(buffer, out, dim=-1, clear=True, batch=1, annotations=None):
    """out = sum of |buffer| along `dim`."""
    _reduce("abssum", buffer, out, dim, clear, batch, False, annotations)


def reduce_absmax(buffer, out, dim=-1, clear=True, batch=1, nan_propagate=False,
                  annotations=None):
    """out = max of |buffer| along `dim`."""
    _reduce("absmax", buffer, out, dim, clear, batch, nan_propagate, annotations)


def reduce_bitand(buffer, out, dim=-1, clear=True, batch=1, annotations=None):
    """out = bitwise AND of integer `buffer` along `dim` (identity: all ones)."""
    _reduce("bitand", buffer, out, dim, clear, batch, False, annotations)


def reduce_bitor(buffer, out, dim=-1, clear=True, batch=1, annotations=None):
    """out = bitwise OR of integer `buffer` along `dim` (identity: 0)."""
    _reduce("bitor", buffer, out, dim, clear, batch, False, annotations)


def reduce_bitxor(buffer, out, dim=-1, clear=True, batch=1, annotations=None):
    """out = bitwise XOR of integer `buffer` along `dim` (identity: 0)."""
    _reduce("bitxor", buffer, out, dim, clear, batch, False, annotations)


def reduce_prod(buffer, out, dim=-1, clear=True):
    """Not a TileLang operation; refused with what to use instead."""
    raise current("T.reduce_prod").error(
        "T.reduce_prod does not exist in TileLang, so jtile has none either; reduce "
        "T.log(|x|) with T.reduce_sum and exponentiate, or multiply in a T.serial loop",
        caller_location(), op="T.reduce_prod")


def finalize_reducer(reducer):
    """Combines every thread's partial results of a reducer; read it only after this."""
    builder = current("T.finalize_reducer")
    loc = caller_location()
    if not isinstance(reducer, Buffer) or reducer.reducer_op is None:
        raise builder.error(f"{reducer!r} is not a reducer (T.alloc_reducer)", loc,
                            op="T.finalize_reducer")
    builder.emit(FinalizeReducer(reducer, loc))
