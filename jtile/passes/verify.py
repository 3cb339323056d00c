"""Checks the rules a traced kernel must meet before anything is generated.

Each broken rule is a JtileError naming the kernel, the source line and the buffers.
"""

from __future__ import annotations

from jtile.errors import JtileError, JtileTargetError, JtileTraceError
from jtile.ir import nodes as ir
from jtile.ir.types import MemorySpace
from jtile.ir.walk import buffers_read, buffers_written, child_bodies, statements


def _fail(kernel: ir.Kernel, loc, message: str, cls=JtileTraceError) -> JtileError:
    where = f"{loc}: " if loc is not None else ""
    return cls(f"{kernel.name} ({kernel.loc}): {where}{message}")


def verify_outputs_written(kernel: ir.Kernel, aliased_outputs=()) -> None:
    """Every output is written somewhere (an aliased output may keep its input's values)."""
    written = set()
    for s in statements(kernel.body):
        written |= buffers_written(s)
    for index, out in enumerate(kernel.outputs):
        if out not in written and index not in aliased_outputs:
            raise _fail(kernel, None, f"output {out.describe()} is never written; every output "
                        "must be stored to, copied into or filled")


def verify_inputs_read_only(kernel: ir.Kernel, aliased_inputs=()) -> None:
    for s in statements(kernel.body):
        for buf in buffers_written(s):
            if buf in kernel.inputs and kernel.inputs.index(buf) not in aliased_inputs:
                raise _fail(kernel, s.loc, f"input {buf.describe()} is written; inputs are "
                            "read-only unless aliased to an output with input_output_aliases")


def verify_reducers(kernel: ir.Kernel) -> None:
    """A reducer is read only after `T.finalize_reducer` combined the threads' partials, and
    then element by element (it is a private copy per thread, not a fragment tile)."""
    pending: set = set()

    def visit(body, in_parallel: bool):
        for s in body:
            reads = buffers_read(s)
            updated = s.buffer if isinstance(s, ir.Store) and in_parallel else None
            for buf in reads:
                if buf.reducer_op is not None and buf in pending and buf is not updated:
                    raise _fail(kernel, s.loc, f"reducer {buf.describe()} is read before "
                                f"T.finalize_reducer({buf.name}); its partial results are only "
                                "combined there")
            if isinstance(s, ir.Reduce) and s.src.reducer_op is not None:
                raise _fail(kernel, s.loc, f"T.reduce_{s.op} takes fragment tiles; reducer "
                            f"{s.src.describe()} is read element by element after "
                            f"T.finalize_reducer({s.src.name})")
            if updated is not None and updated.reducer_op is not None:
                pending.add(updated)
            if isinstance(s, ir.FinalizeReducer):
                pending.discard(s.reducer)
            for child in child_bodies(s):
                visit(child, in_parallel or isinstance(s, ir.ParallelFor))

    visit(kernel.body, False)


def verify_target_features(kernel: ir.Kernel, target) -> None:
    """Refuses buffers and ops the target's hardware does not have."""
    for buf in kernel.allocations:
        if buf.space is MemorySpace.BARRIER and not target.has_mbarrier:
            raise _fail(kernel, buf.loc, f"T.alloc_barrier ({buf.name}) needs mbarriers, which "
                        f"arrived with sm_90; the target is {target.arch}", JtileTargetError)
        if buf.space is MemorySpace.TMEM and not target.has_tmem:
            raise _fail(kernel, buf.loc, f"T.alloc_tmem ({buf.name}) needs Blackwell tensor "
                        f"memory (sm_100a and later); the target is {target.arch}",
                        JtileTargetError)
        if buf.space is MemorySpace.DESCRIPTOR:
            need_wgmma = buf.descriptor_kind == "wgmma"
            ok = target.has_wgmma if need_wgmma else target.has_tcgen05
            if not ok:
                arch = "sm_90a" if need_wgmma else "sm_100a"
                raise _fail(kernel, buf.loc, f"{buf.descriptor_kind} descriptor {buf.name} needs "
                            f"{arch}; the target is {target.arch}", JtileTargetError)
    for s in statements(kernel.body):
        if isinstance(s, ir.BarrierOp) and not target.has_mbarrier:
            raise _fail(kernel, s.loc, f"T.mbarrier_{s.op} needs sm_90 or later; the target is "
                        f"{target.arch}", JtileTargetError)


_TILE_OPS = (ir.Copy, ir.Fill, ir.Gemm, ir.Reduce, ir.FinalizeReducer, ir.SyncThreads)


def verify_no_tile_ops_in_parallel(kernel: ir.Kernel) -> None:
    """T.Parallel spreads element iterations over threads; a tile op (which the whole block
    runs together, with barriers inside) cannot be one of those iterations."""
    for loop in statements(kernel.body):
        if not isinstance(loop, ir.ParallelFor):
            continue
        for s in statements(loop.body):
            tile_atomic = isinstance(s, ir.AtomicAdd) and isinstance(s.value, ir.Region)
            if isinstance(s, _TILE_OPS) or tile_atomic:
                name = {ir.Copy: "T.copy", ir.Fill: "T.fill", ir.Gemm: "T.gemm",
                        ir.Reduce: "T.reduce_*", ir.FinalizeReducer: "T.finalize_reducer",
                        ir.SyncThreads: "T.sync_threads"}.get(type(s), "T.atomic_add of a tile")
                raise _fail(kernel, s.loc, f"{name} inside T.Parallel (opened at {loop.loc}); "
                            "tile operations run once per block, so move it out of the loop")


def verify(kernel: ir.Kernel, aliases=None) -> ir.Kernel:
    aliases = dict(aliases or {})
    verify_inputs_read_only(kernel, tuple(aliases))
    verify_outputs_written(kernel, tuple(aliases.values()))
    verify_reducers(kernel)
    verify_no_tile_ops_in_parallel(kernel)
    return kernel
