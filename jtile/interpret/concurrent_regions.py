"""T.ws regions that loop side by side, in interpret mode.

On the GPU the regions of a warp-specialised kernel run at once: a producer region loops
loading tiles while a consumer region loops using them, each iteration handed over through
mbarriers. Interpret mode runs statements one after another, so running the producer's whole
loop and then the consumer's would hand the consumer only the last tile. Consecutive regions
that each hold one top-level loop of the same trip count therefore run as the GPU orders
them: each region's statements before its loop, then one loop whose iteration runs every
region's iteration (a region that writes shared memory another region's loop reads goes
first), then each region's statements after its loop. Regions holding mbarrier operations go
to `barrier_schedule.py` first, which follows their barriers; this is its fallback.
"""

from __future__ import annotations

from typing import Optional

from jax import lax

from jtile.interpret.expressions import Evaluator
from jtile.ir import nodes as ir
from jtile.ir.printer import expr_text
from jtile.ir.walk import deep_buffers_read, deep_buffers_written, is_region


def loop_of(region) -> Optional[int]:
    """The index of the region's one top-level loop, or None."""
    loops = [i for i, s in enumerate(region.then_body) if isinstance(s, ir.For)]
    return loops[0] if len(loops) == 1 else None


def group_at(body, index: int) -> Optional[list]:
    """The consecutive regions from `body[index]` that loop side by side (two or more, each
    with one top-level loop of one trip count), or None."""
    group = []
    for s in body[index:]:
        if not is_region(s) or loop_of(s) is None:
            break
        group.append(s)
    if len(group) < 2:
        return None
    loops = [g.then_body[loop_of(g)] for g in group]
    if len({expr_text(loop.extent) for loop in loops}) != 1:
        return None
    return group


def _order(group) -> list:
    """Regions in an order where one whose loop writes shared memory that another's loop
    reads comes before it (program order otherwise)."""
    loops = {id(g): g.then_body[loop_of(g)] for g in group}
    writes = {id(g): {b for b in deep_buffers_written(loops[id(g)]) if b.space.is_shared}
              for g in group}
    reads = {id(g): {b for b in deep_buffers_read(loops[id(g)]) if b.space.is_shared}
             for g in group}
    ordered, left = [], list(group)
    while left:
        ready = [g for g in left if not any(writes[id(o)] & reads[id(g)]
                                            for o in left if o is not g)]
        pick = ready[0] if ready else left[0]
        ordered.append(pick)
        left.remove(pick)
    return ordered


def run(memory, env, group, run_body) -> None:
    at = [loop_of(region) for region in group]
    for region, i in zip(group, at):
        run_body(memory, env.in_region(region.threads), region.then_body[:i])
    first = group[0].then_body[at[0]]
    bound = Evaluator(memory, env, first.loc).index(first.extent)
    ordered = _order(group)

    def iteration(k, carry):
        inner = memory.fork(carry)
        for region in ordered:
            loop = region.then_body[loop_of(region)]
            run_body(inner, env.in_region(region.threads).bind(loop.var, k), loop.body)
        return inner.carry()

    memory.arrays = list(lax.fori_loop(0, bound, iteration, memory.carry()))
    for region, i in zip(group, at):
        run_body(memory, env.in_region(region.threads), region.then_body[i + 1:])
