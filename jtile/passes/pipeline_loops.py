"""T.Pipelined loops over TMA loads become mbarrier stage rings.

A `T.Pipelined(n, num_stages=S)` loop whose body holds TmaLoads (chosen by `lower_tile_ops`)
becomes an `MbarrierPipeline`: S copies of each loaded tile, a full barrier per stage that the
TMA's transaction bytes complete, and an empty barrier per stage that every consumer thread
arrives on once it is done with the stage. Loops pipelined with cp.async (sm_80, and tiles the
TMA cannot move) are planned by `plan_shared_memory` and printed by codegen/pipeline.py.
"""

from __future__ import annotations

import dataclasses

from jtile.ir import lowered as low
from jtile.ir import nodes as ir


def _lower(body, threads):
    out = []
    for s in body:
        if isinstance(s, ir.For):
            inner = tuple(_lower(s.body, threads))
            loads = tuple(x for x in inner if isinstance(x, low.TmaLoad))
            if s.kind is ir.LoopKind.PIPELINED and s.num_stages >= 2 and loads:
                rest = tuple(x for x in inner if not isinstance(x, low.TmaLoad))
                out.append(low.MbarrierPipeline(tile=s, loads=loads, body=rest,
                                                stages=s.num_stages, consumer_threads=threads,
                                                loc=s.loc))
            else:
                out.append(dataclasses.replace(s, body=inner))
        elif isinstance(s, ir.IfThenElse):
            out.append(dataclasses.replace(s, then_body=tuple(_lower(s.then_body, threads)),
                                           else_body=tuple(_lower(s.else_body, threads))))
        else:
            out.append(s)
    return out


def _strip_loads(body):
    """TmaLoads left outside any pipeline go back to plain copies (cooperative, in order)."""
    out = []
    for s in body:
        if isinstance(s, low.TmaLoad):
            out.append(s.tile)
        elif isinstance(s, ir.For):
            out.append(dataclasses.replace(s, body=tuple(_strip_loads(s.body))))
        elif isinstance(s, ir.IfThenElse):
            out.append(dataclasses.replace(s, then_body=tuple(_strip_loads(s.then_body)),
                                           else_body=tuple(_strip_loads(s.else_body))))
        else:
            out.append(s)
    return out


def pipeline_loops(kernel: ir.Kernel, target) -> ir.Kernel:
    if not kernel.attrs.get("tma_maps"):
        return kernel
    body = tuple(_strip_loads(_lower(kernel.body, kernel.threads)))
    return kernel.replace(body=body)
