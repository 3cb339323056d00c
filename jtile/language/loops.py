"""Loops: `T.Parallel`, `T.Pipelined`, `T.serial`, `T.unroll`.

Each is an iterator that yields symbolic indices once; the statements the `for` body emits are
recorded as the loop's body.
"""

from __future__ import annotations

import numpy as np

from jtile.ir.nodes import Const, Expr, For, LoopKind, ParallelFor, as_expr
from jtile.ir.types import DType
from jtile.trace.builder import current
from jtile.trace.source import caller_location


def Parallel(*extents, coalesced_width=None):
    """Element-wise loop over a static tile, spread over the block's threads.

    `for i, j in T.Parallel(M, N):` visits every (i, j) once, in no defined order; each
    iteration must be independent of the others. One extent yields one index, not a tuple.
    """
    builder = current("T.Parallel")
    loc = caller_location()
    if not extents:
        raise builder.error("T.Parallel needs at least one extent", loc)
    for e in extents:
        if isinstance(e, Expr) or isinstance(e, bool) or not isinstance(e, (int, np.integer)) \
                or e <= 0:
            raise builder.error(f"T.Parallel extents {extents} must be positive static ints", loc)
    names = ("i", "j", "k", "l", "m", "n")
    vars_ = tuple(builder.new_var(names[d] if d < len(names) else f"i{d}")
                  for d in range(len(extents)))
    with builder.block() as body:
        yield from _body_once(vars_[0] if len(vars_) == 1 else vars_, builder, "T.Parallel", loc)
    builder.emit(ParallelFor(vars_, tuple(int(e) for e in extents), tuple(body), loc))


def _range_args(builder, args, what, loc):
    if len(args) == 1:
        start, stop, step = 0, args[0], 1
    elif len(args) == 2:
        start, stop, step = args[0], args[1], 1
    elif len(args) == 3:
        start, stop, step = args
    else:
        raise builder.error(f"{what} takes (extent), (start, stop) or (start, stop, step)", loc)
    if isinstance(step, Expr) or not isinstance(step, (int, np.integer)) or step <= 0:
        raise builder.error(f"{what}: step {step!r} must be a positive static int", loc)
    start_e, stop_e = as_expr(start), as_expr(stop)
    if not (start_e.dtype.is_int and stop_e.dtype.is_int):
        raise builder.error(f"{what}: bounds must be integers", loc)
    span = stop_e if isinstance(start_e, Const) and start_e.value == 0 else stop_e - start_e
    extent = (span + (step - 1)) // step if step != 1 else span
    if isinstance(start, int) and isinstance(stop, int):
        extent = Const(max(0, -(-(stop - start) // step)), DType.int32)
    return start_e, extent, int(step)


def _sequential(args, kind: LoopKind, what: str, num_stages: int = 0):
    builder = current(what)
    loc = caller_location()
    start, extent, step = _range_args(builder, args, what, loc)
    var = builder.new_var("k")
    index = var * step + start if (step != 1 or not _is_zero(start)) else var
    with builder.block() as body:
        yield from _body_once(index, builder, what, loc)
    builder.emit(For(var, start, extent, tuple(body), kind, num_stages, step, loc))


def _body_once(index, builder, what, loc):
    """Yields the loop index once. A `break` or `return` in the body closes the generator here
    instead of resuming it, which would silently drop the loop: record it as an error."""
    try:
        yield index
    except GeneratorExit:
        builder.abandoned_loops.append((what, loc))
        raise


def _is_zero(expr) -> bool:
    return isinstance(expr, Const) and expr.value == 0


def serial(*args):
    """A sequential loop run by every thread: `T.serial(n)`, `(start, stop)`, `(start, stop, step)`."""
    return _sequential(args, LoopKind.SERIAL, "T.serial")


def unroll(*args):
    """Like `T.serial`, fully unrolled by the compiler (bounds should be static)."""
    return _sequential(args, LoopKind.UNROLL, "T.unroll")


def Pipelined(*args, num_stages=0, order=None, stage=None, sync=None, group=None):
    """A loop over tiles whose copies are software-pipelined `num_stages` deep.

    On sm_80+ the global-to-shared `T.copy`s of iteration k + num_stages - 1 are issued as
    cp.async while iteration k computes; `num_stages` <= 1 runs it as a plain loop.
    """
    if isinstance(num_stages, bool) or not isinstance(num_stages, (int, np.integer)) \
            or num_stages < 0:
        builder = current("T.Pipelined")
        raise builder.error(f"T.Pipelined: num_stages {num_stages!r} must be a static int >= 0",
                            caller_location())
    return _sequential(args, LoopKind.PIPELINED, "T.Pipelined", int(num_stages))
