"""Waiting for each wgmma group only where its results are needed.

A ring body of several gemms with other work between them (attention's backward: S^T, dP^T,
dV, dK, dQ and the element-wise steps between) used to wait for every group right after
issuing it, so a gemm never ran beside the work that follows it. Here each group is left in
flight until the first statement that touches its accumulator or register A operand, or
writes shared memory (conservatively: the group may read any shared tile, and the barrier
plan_barriers places before that write must come after the wait); that statement is preceded
by a `WgmmaWait` for the oldest groups it needs, younger ones still running. Everything is
drained by the end of the body, so the stage release and the next iteration see the same
state as before. A gemm whose register A operand, or whose accumulator, another group in
flight writes waits for that group first.

On by default (JTILE_LATE_WGMMA_WAITS=0 turns it off). Attention's backward gains most with
dP^T issued right after S^T, so that it runs beside the exponentials (its `early_dp` option):
on an H200, fwd+bwd bfloat16 B4 S4096 H16 D128 4.43 -> 4.13 ms, D64 2.87 -> 2.83 ms
(benchmarks/results/h200_attention_bwd_variants.log).
"""

from __future__ import annotations

import dataclasses

from jtile.ir import lowered as low
from jtile.ir.walk import deep_buffers_read, deep_buffers_written, storage_of


def _held(gemm: low.WgmmaGemm) -> set:
    """The registers a group in flight owns: its accumulator, and A when A is in registers."""
    tile = gemm.tile
    return storage_of({tile.c.buffer} | ({tile.a.buffer} if gemm.a is None else set()))


def _wait(pending: int, finished) -> low.WgmmaWait:
    return low.WgmmaWait(pending, tuple(dict.fromkeys(g.tile.c.buffer for g in finished)))


def late_waits(body: tuple) -> tuple:
    """`body` (a ring's statements) with each wgmma committed unwaited and WgmmaWaits
    placed before the statements that need their groups."""
    out, in_flight = [], []

    def wait_through(last: int) -> None:
        nonlocal in_flight
        out.append(_wait(len(in_flight) - 1 - last, in_flight[:last + 1]))
        in_flight = in_flight[last + 1:]

    for s in body:
        if isinstance(s, low.WgmmaGemm):
            uses = _held(s)
            needed = [i for i, g in enumerate(in_flight) if _held(g) & uses]
            if needed:
                wait_through(max(needed))
            out.append(dataclasses.replace(s, commit=True, wait=None))
            in_flight.append(s)
            continue
        if in_flight:
            touched = storage_of(deep_buffers_read(s) | deep_buffers_written(s))
            writes_shared = any(b.space.is_shared for b in deep_buffers_written(s))
            needed = list(range(len(in_flight))) if writes_shared else \
                [i for i, g in enumerate(in_flight) if _held(g) & touched]
            if needed:
                wait_through(max(needed))
        out.append(s)
    if in_flight:
        wait_through(len(in_flight) - 1)
    return tuple(out)
