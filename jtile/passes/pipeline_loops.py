"""T.Pipelined loops become stage rings: mbarrier rings over TMA loads, or cp.async groups.

A `T.Pipelined(n, num_stages=S)` loop whose body holds TmaLoads (chosen by `lower_tile_ops`)
becomes an `MbarrierPipeline`: S copies of each loaded tile, a full barrier per stage that the
TMA's transaction bytes complete, and an empty barrier per stage that every consumer warp
arrives on once it is done with the stage. Otherwise, on a target with cp.async (sm_80+), the
global->shared copies that can be issued ahead make it a `CpAsyncPipeline`. A loop that gets
neither runs as written (plan_shared_memory says so with a JtilePerformanceWarning).
"""

from __future__ import annotations

import dataclasses

from jtile.ir import lowered as low
from jtile.ir import nodes as ir
from jtile.ir.types import MemorySpace
from jtile.ir.walk import deep_buffers_written, is_region, regions, statements
from jtile.passes.issue_ahead import issuable_ahead


def pipelinable(copy: ir.Copy, body: tuple, read_only: frozenset) -> bool:
    """A global->shared copy that can be issued ahead: same dtype on both sides, addresses
    that do not depend on values the body computes (see `issuable_ahead`), and no other
    statement of the loop writes its destination."""
    if copy.src.buffer.space is not MemorySpace.GLOBAL or not copy.dst.buffer.space.is_shared:
        return False
    if copy.src.dtype is not copy.dst.dtype:
        return False
    if not all(issuable_ahead(start, read_only)
               for start in tuple(copy.src.starts) + tuple(copy.dst.starts)):
        return False
    writers = [s for s in statements(body) if copy.dst.buffer in deep_buffers_written(s)]
    return writers == [copy]


def _lower(body, threads, target, staged: set, read_only: frozenset):
    out = []
    for s in body:
        if isinstance(s, ir.For):
            inner = tuple(_lower(s.body, threads, target, staged, read_only))
            loads = tuple(x for x in inner if isinstance(x, low.TmaLoad))
            pipelined = s.kind is ir.LoopKind.PIPELINED and s.num_stages >= 2 \
                and not regions(s.body)   # T.ws: the kernel pipelines it
            if pipelined and loads:
                rest = tuple(x for x in inner if not isinstance(x, low.TmaLoad))
                out.append(low.MbarrierPipeline(tile=s, loads=loads, body=rest,
                                                stages=s.num_stages, consumer_threads=threads,
                                                loc=s.loc))
                continue
            copies = ()
            if pipelined and target.has_cp_async:
                # A buffer pipelined by two loops would need two stage counts; keep the first.
                copies = tuple(c for c in inner if isinstance(c, ir.Copy)
                               and pipelinable(c, inner, read_only) and c.dst.buffer not in staged)
            if copies:
                staged.update(c.dst.buffer for c in copies)
                rest = tuple(x for x in inner if not any(x is c for c in copies))
                out.append(low.CpAsyncPipeline(tile=s, copies=copies, body=rest,
                                               stages=s.num_stages, loc=s.loc))
            else:
                out.append(dataclasses.replace(s, body=inner))
        elif is_region(s):
            # A T.ws region pipelines its loops itself (its own mbarriers): they run as written.
            out.append(dataclasses.replace(s, then_body=tuple(_strip_loads(s.then_body))))
        elif isinstance(s, ir.IfThenElse):
            out.append(dataclasses.replace(
                s, then_body=tuple(_lower(s.then_body, threads, target, staged, read_only)),
                else_body=tuple(_lower(s.else_body, threads, target, staged, read_only))))
        elif isinstance(s, ir.While):
            out.append(dataclasses.replace(s, body=tuple(_lower(s.body, threads, target, staged,
                                                                read_only))))
        else:
            out.append(s)
    return out


def _strip_loads(body):
    """TmaLoads left outside any pipeline go back to plain copies (cooperative, in order)."""
    out = []
    for s in body:
        if isinstance(s, low.TmaLoad):
            out.append(s.tile)
        elif isinstance(s, (ir.For, ir.While)):
            out.append(dataclasses.replace(s, body=tuple(_strip_loads(s.body))))
        elif isinstance(s, ir.IfThenElse):
            out.append(dataclasses.replace(s, then_body=tuple(_strip_loads(s.then_body)),
                                           else_body=tuple(_strip_loads(s.else_body))))
        else:
            out.append(s)
    return out


def pipeline_loops(kernel: ir.Kernel, target) -> ir.Kernel:
    read_only = kernel.attrs.get("read_only_inputs", frozenset())
    body = tuple(_strip_loads(_lower(kernel.body, kernel.threads, target, set(), read_only)))
    return kernel.replace(body=body)
