"""TileLang's warp-level operations in per-thread code: shuffles (`T.shfl_xor`, `T.shfl_down`,
`T.shfl_up`, `T.shfl_sync`, TVM's `T.tvm_warp_shuffle*`), reductions across a warp
(`T.warp_reduce_sum/max/min/bitand/bitor`) and votes (`T.any_sync`, `T.all_sync`,
`T.ballot_sync`, `T.ballot`).

Each thread gives a value and gets one back from another lane of its warp (CUDA's
`__shfl_*_sync` over the full warp; lanes grouped by `width`, a power of 2 up to 32). They
belong to per-thread code, outside `T.Parallel` (whose iterations are elements, not threads),
in a kernel of whole warps (shuffles within groups of `width` lanes also in a block smaller
than a warp), and every lane of the warp must reach them. Interpret mode gathers
across its vector of threads with the same rules (a lane outside its group keeps its own
value), and a warp reduction combines lanes in the compiled butterfly's order, so both modes
agree bit for bit.
"""

from __future__ import annotations

from jtile.ir.nodes import Call, Const, Expr, as_expr
from jtile.ir.types import DType
from jtile.trace.builder import current
from jtile.trace.source import caller_location

FULL_MASK = 0xFFFFFFFF
WARP_SIZE = 32


def _checked(op: str, mask, width, whole_warp: bool = False):
    builder = current(op)
    loc = caller_location()
    if builder.parallel_depth:
        raise builder.error(f"{op} inside T.Parallel: a T.Parallel iteration is an element of a "
                            "tile, not a thread, so it has no lane to exchange with; call it in "
                            "per-thread code (outside T.Parallel)", loc, op=op)
    threads = builder.threads
    if threads is not None and threads % WARP_SIZE:
        # A block smaller than a warp is one partial warp: shuffles within groups of lanes
        # that all exist are defined; reductions and votes over 32 lanes are not.
        if whole_warp or threads & (threads - 1) or (isinstance(width, int) and width > threads):
            what = "whole warps" if whole_warp else f"groups (width={width}) of lanes that exist"
            raise builder.error(f"{op} needs {what}; the kernel has threads={threads}", loc,
                                op=op)
    if isinstance(mask, Expr) or mask != FULL_MASK:
        raise builder.error(f"mask={mask!r}: jtile's warp operations run over the full warp "
                            f"(mask 0xFFFFFFFF); every lane of the warp must reach them", loc,
                            op=op)
    if isinstance(width, bool) or not isinstance(width, int) or width < 1 or width > WARP_SIZE \
            or width & (width - 1):
        raise builder.error(f"width={width!r} must be a static power of 2 from 1 to 32", loc,
                            op=op)
    return builder, loc


def _value(op: str, value, builder, loc) -> Expr:
    expr = as_expr(value)
    if expr.dtype.bits > 64:
        raise builder.error(f"{op}: a {expr.dtype} value is wider than 64 bits", loc, op=op)
    return expr


def _lane_arg(arg) -> Expr:
    expr = as_expr(arg)
    return expr if expr.dtype is DType.int32 else expr.astype("int32")


def _shuffle(kind: str, op: str, value, arg, width, mask) -> Expr:
    builder, loc = _checked(op, mask, width)
    v = _value(op, value, builder, loc)
    # The lanes that take part: the whole warp, or every thread of a block smaller than one.
    threads = builder.threads or WARP_SIZE
    members = FULL_MASK if threads >= WARP_SIZE else (1 << threads) - 1
    return Call(f"shfl_{kind}", (v, _lane_arg(arg), Const(width, DType.int32),
                                 Const(members, DType.uint32)), v.dtype)


def shfl_xor(value, delta, width=WARP_SIZE, mask=FULL_MASK):
    """The value of lane `lane ^ delta` (in the thread's group of `width` lanes; a lane whose
    partner lies in a later group keeps its own value): `__shfl_xor_sync`."""
    return _shuffle("xor", "T.shfl_xor", value, delta, width, mask)


def shfl_down(value, delta, width=WARP_SIZE, mask=FULL_MASK):
    """The value of lane `lane + delta` of the thread's group (its own past the group's end):
    `__shfl_down_sync`."""
    return _shuffle("down", "T.shfl_down", value, delta, width, mask)


def shfl_up(value, delta, width=WARP_SIZE, mask=FULL_MASK):
    """The value of lane `lane - delta` of the thread's group (its own before the group's
    start): `__shfl_up_sync`."""
    return _shuffle("up", "T.shfl_up", value, delta, width, mask)


def shfl_sync(value, srcLane, width=WARP_SIZE, mask=FULL_MASK):  # noqa: N803 (TileLang's name)
    """The value of lane `srcLane % width` of the thread's group: `__shfl_sync`."""
    return _shuffle("idx", "T.shfl_sync", value, srcLane, width, mask)


def tvm_warp_shuffle(mask, value, lane, width, warp_size):
    """TVM's spelling of `T.shfl_sync(value, lane, width, mask)`. `warp_size` is the logical
    warp the kernel thinks in (a power of 2 up to 32); CUDA's shuffle takes only `width`, so
    it decides nothing, as in TileLang's CUDA code."""
    _warp_size(warp_size, "T.tvm_warp_shuffle")
    return _shuffle("idx", "T.tvm_warp_shuffle", value, lane, width, mask)


def tvm_warp_shuffle_down(mask, value, delta, width, warp_size):
    """TVM's spelling of `T.shfl_down(value, delta, width, mask)`."""
    _warp_size(warp_size, "T.tvm_warp_shuffle_down")
    return _shuffle("down", "T.tvm_warp_shuffle_down", value, delta, width, mask)


def tvm_warp_shuffle_up(mask, value, delta, width, warp_size):
    """TVM's spelling of `T.shfl_up(value, delta, width, mask)`."""
    _warp_size(warp_size, "T.tvm_warp_shuffle_up")
    return _shuffle("up", "T.tvm_warp_shuffle_up", value, delta, width, mask)


def _warp_size(warp_size, op: str) -> None:
    if isinstance(warp_size, bool) or not isinstance(warp_size, int) or warp_size < 1 \
            or warp_size > WARP_SIZE or warp_size & (warp_size - 1):
        builder = current(op)
        raise builder.error(f"warp_size={warp_size!r} must be a static power of 2 up to 32 "
                            "(NVIDIA warps have 32 lanes)", caller_location(), op=op)


def _warp_reduce(kind: str, value) -> Expr:
    op = f"T.warp_reduce_{kind}"
    builder, loc = _checked(op, FULL_MASK, WARP_SIZE, whole_warp=True)
    v = _value(op, value, builder, loc)
    if kind in ("bitand", "bitor") and not v.dtype.is_int:
        raise builder.error(f"{op} takes integers; here {v.dtype}", loc, op=op)
    return Call(f"warp_reduce_{kind}", (v,), v.dtype)


def warp_reduce_sum(value):
    """The sum of `value` over the thread's warp, in every lane (a butterfly: lanes 16 apart
    add first, then 8, 4, 2, 1)."""
    return _warp_reduce("sum", value)


def warp_reduce_max(value):
    """The largest `value` of the thread's warp, in every lane."""
    return _warp_reduce("max", value)


def warp_reduce_min(value):
    """The smallest `value` of the thread's warp, in every lane."""
    return _warp_reduce("min", value)


def warp_reduce_bitand(value):
    """The bitwise AND of `value` over the thread's warp (integers), in every lane."""
    return _warp_reduce("bitand", value)


def warp_reduce_bitor(value):
    """The bitwise OR of `value` over the thread's warp (integers), in every lane."""
    return _warp_reduce("bitor", value)


def _vote(kind: str, op: str, predicate, mask, dtype: DType) -> Expr:
    builder, loc = _checked(op, mask, WARP_SIZE, whole_warp=True)
    pred = as_expr(predicate)
    if pred.dtype.is_float:
        raise builder.error(f"{op} takes an integer or boolean predicate; here {pred.dtype}",
                            loc, op=op)
    return Call(f"warp_{kind}", (pred != 0,), dtype)


def any_sync(predicate, mask=FULL_MASK):
    """1 (int32) when the predicate holds in any lane of the thread's warp, else 0."""
    return _vote("any", "T.any_sync", predicate, mask, DType.int32)


def all_sync(predicate, mask=FULL_MASK):
    """1 (int32) when the predicate holds in every lane of the thread's warp, else 0."""
    return _vote("all", "T.all_sync", predicate, mask, DType.int32)


def ballot_sync(predicate, mask=FULL_MASK):
    """A uint64 whose bit n is set when the predicate holds in lane n of the thread's warp."""
    return _vote("ballot", "T.ballot_sync", predicate, mask, DType.uint64)


def ballot(predicate):
    """`T.ballot_sync(predicate)` over the full warp."""
    return _vote("ballot", "T.ballot", predicate, FULL_MASK, DType.uint64)
