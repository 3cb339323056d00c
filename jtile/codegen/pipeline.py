"""T.Pipelined loops: multi-stage cp.async buffering of their global->shared copies.

With S stages, the copies of iterations 0..S-2 are issued before the loop; iteration k waits
until its own group has landed (cp.async.wait_group S - 2) and passes one block barrier, then
issues the copies of iteration k + S - 1 into stage (k + S - 1) % S (the stage iteration k - 1
read, which that barrier freed) and computes on stage k % S while later tiles are in flight.
"""

from __future__ import annotations

from jtile.codegen.tile_copy import emit_cooperative_copy
from jtile.ir.affine import static_value


def enter_ring(em, pipe) -> tuple:
    """The ring loop's counter name and trip count, with the counter's range known to the
    bounds prover when the trip count is static."""
    em.comment_loc(pipe.loc)
    extent = static_value(pipe.extent)
    if extent is not None:
        em.var_ranges[pipe.var] = (0, max(0, extent - 1))
    return em.name(pipe.var), em.expr(pipe.extent)


def leave_ring(em, buffers: list) -> None:
    """After a ring its tiles are addressed without a stage again."""
    for b in buffers:
        em.stage_expr.pop(b, None)


def emit_pipelined(em, pipe) -> None:
    """A lowered CpAsyncPipeline."""
    loop, copies, stages = pipe.tile, list(pipe.copies), pipe.stages
    buffers = [c.dst.buffer for c in copies]
    counter, n = enter_ring(em, pipe)
    if pipe.entry_barrier is not None:
        em.emit_barrier(pipe.entry_barrier)
    if em.async_pending:
        em.line("jt::cp_async_wait_all();")
        em.async_pending = False

    def issue(iteration: str, stage: str) -> None:
        em.var_override[loop.var] = f"({iteration})"
        for c in copies:
            em.stage_expr[c.dst.buffer] = stage
        for c in copies:
            emit_cooperative_copy(em, c.src, c.dst)
        del em.var_override[loop.var]
        em.async_pending = False

    rest = list(pipe.body)
    with em.block(""):
        em.line(f"// prologue: tiles 0..{stages - 2} in flight")
        for s in range(stages - 1):
            with em.block(f"if ({s} < {n})"):
                issue(str(s), str(s))
            em.line("jt::cp_async_commit();")
        with em.block(f"for (int {counter} = 0; {counter} < {n}; ++{counter})"):
            # Tile `counter` has landed once at most S - 2 later groups are pending; the
            # barrier also tells every thread that iteration counter - 1 is done with stage
            # (counter - 1) % S, which the copies issued next refill. One barrier per tile.
            em.line(f"jt::cp_async_wait<{stages - 2}>();")
            if em.async_proxy:
                # wgmma reads the tile through the async proxy.
                em.line("jt::fence_proxy_async_shared();")
            em.line("__syncthreads();")
            ahead = f"{counter} + {stages - 1}"
            with em.block(f"if ({ahead} < {n})"):
                issue(ahead, f"({ahead}) % {stages}")
            em.line("jt::cp_async_commit();")
            for b in buffers:
                em.stage_expr[b] = f"{counter} % {stages}"
            em.body(rest)
        em.line("jt::cp_async_wait_all();")
    leave_ring(em, buffers)
