"""Loops: `T.Parallel`, `T.Pipelined`, `T.serial`, `T.unroll`, `T.vectorized`.

Each is an iterator that yields symbolic indices once; the statements the `for` body emits are
recorded as the loop's body.
"""

from __future__ import annotations

import numpy as np

from jtile.ir.nodes import Const, Copy, Expr, For, LoopKind, ParallelFor, SyncThreads, as_expr
from jtile.ir.types import DType, MemorySpace
from jtile.trace.builder import current
from jtile.trace.source import caller_location


def _refuse_options(builder, loc, what: str, options: dict, why: str) -> None:
    """Refuses TileLang loop options jtile does not implement, naming each."""
    given = {k: v for k, v in options.items() if v is not None and v is not False and v != {}}
    if given:
        names = ", ".join(f"{k}={v!r}" for k, v in given.items())
        raise builder.error(f"{names} not supported: {why}", loc, op=what)


def Parallel(*extents, coalesced_width=None, loop_layout=None, prefer_async=None,
             annotations=None):
    """Element-wise loop over a static tile, spread over the block's threads.

    `for i, j in T.Parallel(M, N):` visits every (i, j) once, in no defined order; each
    iteration must be independent of the others. One extent yields one index, not a tuple.
    TileLang's `coalesced_width`, `loop_layout`, `prefer_async` and `annotations` are refused
    by name: jtile derives the loop's thread layout and vector width from the fragments it
    touches, and makes copies asynchronous through T.copy.
    """
    builder = current("T.Parallel")
    loc = caller_location()
    _refuse_options(builder, loc, "T.Parallel",
                    {"coalesced_width": coalesced_width, "loop_layout": loop_layout},
                    "jtile derives the loop's thread layout and vector width from the "
                    "fragments it touches; drop them")
    _refuse_options(builder, loc, "T.Parallel", {"prefer_async": prefer_async},
                    "jtile does not turn element stores of a T.Parallel loop into cp.async; "
                    "move a global->shared tile with T.copy, which is asynchronous (cp.async or "
                    "TMA) and, inside T.Pipelined, overlapped with compute")
    _refuse_options(builder, loc, "T.Parallel", {"annotations": annotations},
                    "jtile takes no loop annotations; drop them")
    if not extents:
        raise builder.error("T.Parallel needs at least one extent", loc)
    for e in extents:
        if isinstance(e, Expr) or isinstance(e, bool) or not isinstance(e, (int, np.integer)) \
                or e <= 0:
            raise builder.error(f"T.Parallel extents {extents} must be positive static ints", loc)
    names = ("i", "j", "k", "l", "m", "n")
    vars_ = tuple(builder.new_var(names[d] if d < len(names) else f"i{d}")
                  for d in range(len(extents)))
    outer_draws = getattr(builder, "draws_in_parallel", False)
    builder.draws_in_parallel = False
    with builder.block() as body:
        builder.parallel_depth += 1
        try:
            yield from _body_once(vars_[0] if len(vars_) == 1 else vars_, builder, "T.Parallel",
                                  loc)
        finally:
            builder.parallel_depth -= 1
    draws, builder.draws_in_parallel = builder.draws_in_parallel, outer_draws or \
        builder.draws_in_parallel
    if draws:
        # Random draws in a kernel of one thread (T.rng_rand, `random.py`): that thread visits
        # the elements in the loop's order, one draw after the other, as TileLang runs it.
        nest = tuple(body)
        for var, extent in reversed(tuple(zip(vars_, extents))):
            nest = (For(var, Const(0, DType.int32), Const(int(extent), DType.int32), nest,
                        LoopKind.SERIAL, 0, 1, loc),)
        builder.emit(nest[0])
        return
    # A grid barrier inside the loop (TileLang allows one there) splits it: every element's
    # statements before the barrier run, in every block, before any element's after it.
    pieces = [[]]
    for s in body:
        if isinstance(s, SyncThreads) and s.grid:
            pieces.append(s)
            pieces.append([])
        else:
            pieces[-1].append(s)
    for piece in pieces:
        if isinstance(piece, SyncThreads):
            builder.emit(piece)
        elif piece:
            builder.emit(ParallelFor(vars_, tuple(int(e) for e in extents), tuple(piece), loc))


def _range_args(builder, args, what, loc):
    if len(args) == 1:
        start, stop, step = 0, args[0], 1
    elif len(args) == 2:
        start, stop, step = args[0], args[1], 1
    elif len(args) == 3:
        start, stop, step = args
    else:
        raise builder.error(f"{what} takes (extent), (start, stop) or (start, stop, step)", loc)
    if isinstance(step, Expr) or isinstance(step, bool) \
            or not isinstance(step, (int, np.integer)) or step == 0:
        raise builder.error(f"{what}: step {step!r} must be a nonzero static int", loc)
    if step < 0 and what == "T.Pipelined":
        raise builder.error(f"{what}: step {step} must be positive (the pipeline issues the "
                            "copies of later iterations ahead); count the index down in the "
                            "body instead", loc)
    start_e, stop_e = as_expr(start), as_expr(stop)
    if not (start_e.dtype.is_int and stop_e.dtype.is_int):
        raise builder.error(f"{what}: bounds must be integers", loc)
    # A negative step counts down from start (Python's `range(n - 1, -1, -1)`): the loop
    # runs `extent` times with index start + var * step either way.
    if step > 0:
        span = stop_e if isinstance(start_e, Const) and start_e.value == 0 else stop_e - start_e
    else:
        span = start_e - stop_e
    size = abs(int(step))
    extent = (span + (size - 1)) // size if size != 1 else span
    if isinstance(start, (int, np.integer)) and isinstance(stop, (int, np.integer)):
        extent = Const(max(0, -(-(int(stop) - int(start)) // int(step))), DType.int32)
    return start_e, extent, int(step)


def _sequential(args, kind: LoopKind, what: str, num_stages: int = 0, schedule=None):
    builder = current(what)
    loc = caller_location()
    start, extent, step = _range_args(builder, args, what, loc)
    var = builder.new_var("k")
    index = var * step + start if (step != 1 or not _is_zero(start)) else var
    with builder.block() as body:
        yield from _body_once(index, builder, what, loc)
    if schedule is not None:
        check_manual_schedule(builder, loc, tuple(body), num_stages, **schedule)
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


def _bind(what: str, usage: str, args: tuple, named: dict) -> dict:
    """TileLang's positional-or-keyword loop parameters (`named`, in order, None when not
    passed as keywords) bound from the call, with `(n)` meaning `(0, n)`."""
    builder = current(what)
    params = tuple(named)
    if len(args) > len(params):
        raise builder.error(f"{what} takes {usage}; got {len(args)} positional arguments",
                            caller_location())
    bound = dict(zip(params, args))
    for name, value in named.items():
        if value is not None:
            if name in bound:
                raise builder.error(f"{what} got {name} both by position and by keyword",
                                    caller_location())
            bound[name] = value
    if bound.get("start") is None:
        raise builder.error(f"{what} takes {usage}; got no extent", caller_location())
    if bound.get("stop") is None:
        bound["start"], bound["stop"] = 0, bound["start"]
    return bound


def _range(bound: dict) -> tuple:
    step = bound.get("step")
    return (bound["start"], bound["stop"]) + (() if step is None else (step,))


def serial(*args, start=None, stop=None, step=None, annotations=None):
    """A sequential loop run by every thread: `T.serial(n)`, `(start, stop)`, `(start, stop, step)`."""
    if annotations:
        _refuse_options(current("T.serial"), caller_location(), "T.serial",
                        {"annotations": annotations}, "drop them")
    bound = _bind("T.serial", "(extent), (start, stop) or (start, stop, step)", args,
                  {"start": start, "stop": stop, "step": step})
    return _sequential(_range(bound), LoopKind.SERIAL, "T.serial")


def unroll(*args, start=None, stop=None, step=None, explicit=False, unroll_factor=None,
           annotations=None):
    """Like `T.serial`, fully unrolled by the compiler (bounds should be static).

    `explicit=True` (unroll in the IR rather than by pragma) gives the same code here and is
    accepted; a partial `unroll_factor` and `annotations` are refused.
    """
    if unroll_factor is not None or annotations:
        _refuse_options(current("T.unroll"), caller_location(), "T.unroll",
                        {"unroll_factor": unroll_factor, "annotations": annotations},
                        "jtile unrolls T.unroll loops fully; use T.serial for a rolled loop")
    bound = _bind("T.unroll", "(extent), (start, stop) or (start, stop, step)", args,
                  {"start": start, "stop": stop, "step": step})
    return _sequential(_range(bound), LoopKind.UNROLL, "T.unroll")


def vectorized(*args, start=None, stop=None, annotations=None):
    """TileLang's per-thread vectorised loop: `T.vectorized(n)` or `(start, stop)`.

    Every thread runs every iteration in order, as in `T.serial`; the loop is emitted fully
    unrolled (`#pragma unroll`), so the compiler can merge its contiguous accesses into vector
    loads and stores, as TileLang's vectorised loop does. `annotations` are refused.
    """
    if annotations:
        _refuse_options(current("T.vectorized"), caller_location(), "T.vectorized",
                        {"annotations": annotations}, "drop them")
    bound = _bind("T.vectorized", "(extent) or (start, stop); use T.serial or T.unroll for a "
                  "step", args, {"start": start, "stop": stop})
    return _sequential(_range(bound), LoopKind.UNROLL, "T.vectorized")


def Pipelined(*args, start=None, stop=None, num_stages=None, order=None, stage=None, sync=None,
              group=None, annotations=None):
    """A loop over tiles whose copies are software-pipelined `num_stages` deep:
    `T.Pipelined(n, num_stages=s)` or `(start, stop, num_stages)`, as TileLang's (its third
    positional argument is the stage count, not a step).

    On sm_80+ the global-to-shared `T.copy`s of iteration k + num_stages - 1 are issued as
    cp.async while iteration k computes; `num_stages` <= 1 runs it as a plain loop.

    TileLang's manual schedule (`order`, `stage`, `group`, `sync`) is accepted only when it
    states what jtile does anyway (see `check_manual_schedule`); any other schedule is refused.
    """
    bound = _bind("T.Pipelined", "(extent) or (start, stop[, num_stages])", args,
                  {"start": start, "stop": stop, "num_stages": num_stages})
    num_stages = bound.get("num_stages", 0)
    if isinstance(num_stages, bool) or not isinstance(num_stages, (int, np.integer)) \
            or num_stages < 0:
        builder = current("T.Pipelined")
        raise builder.error(f"T.Pipelined: num_stages {num_stages!r} must be a static int >= 0",
                            caller_location())
    if annotations:
        _refuse_options(current("T.Pipelined"), caller_location(), "T.Pipelined",
                        {"annotations": annotations}, "drop them")
    schedule = {"order": order, "stage": stage, "sync": sync, "group": group}
    schedule = schedule if any(v is not None for v in schedule.values()) else None
    return _sequential(_range(bound), LoopKind.PIPELINED, "T.Pipelined", int(num_stages),
                       schedule)


def jtile_stages(body: tuple, num_stages: int) -> list:
    """The stage jtile gives each top-level statement of a pipelined body: its global->shared
    copies are issued num_stages - 1 iterations ahead (stage 0), the rest run in the last."""
    last = max(num_stages - 1, 0)
    return [0 if isinstance(s, Copy) and s.src.buffer.space is MemorySpace.GLOBAL
            and s.dst.buffer.space.is_shared else last for s in body]


def check_manual_schedule(builder, loc, body: tuple, num_stages: int, *, order, stage, sync,
                          group) -> None:
    """TileLang's manual pipeline schedule, accepted only when it equals jtile's own:
    `order` the statements in program order, `stage` as `jtile_stages`, `group` one statement
    per group in order, and no `sync` list."""
    n = len(body)
    expected_stage = jtile_stages(body, num_stages)
    what = "T.Pipelined"
    why = ("jtile schedules the loop itself: global->shared copies issued num_stages - 1 "
           "iterations ahead, everything else in program order. Drop order=/stage=/group=/"
           "sync= (they are accepted only when they state exactly that: "
           f"order={list(range(n))}, stage={expected_stage}, "
           f"group={[[i] for i in range(n)]})")
    if order is not None and [int(x) for x in order] != list(range(n)):
        raise builder.error(f"order={list(order)} differs from program order; {why}", loc,
                            op=what)
    if stage is not None and [int(x) for x in stage] != expected_stage:
        raise builder.error(f"stage={list(stage)} differs from jtile's stages; {why}", loc,
                            op=what)
    if group is not None and [[int(x) for x in g] for g in group] != [[i] for i in range(n)]:
        raise builder.error(f"group={[list(g) for g in group]} differs from one statement per "
                            f"group; {why}", loc, op=what)
    if sync is not None:
        raise builder.error(f"sync={list(sync)}: manual barrier placement is not supported; "
                            f"{why}", loc, op=what)
