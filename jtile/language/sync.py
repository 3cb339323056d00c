"""Synchronisation: block barriers, mbarriers (sm_90+) and the register-reallocation hint of
warp-specialised kernels."""

from __future__ import annotations

from jtile.ir.nodes import BarrierOp, Buffer, Const, FenceProxyAsync, Load, SyncThreads, as_expr
from jtile.ir.types import DType, MemorySpace
from jtile.trace.builder import current
from jtile.trace.source import caller_location


def sync_threads(barrier_id=None, arrive_count=None):
    """Waits until every thread of the block gets here (bar.sync 0 / __syncthreads).

    As in TileLang, `T.sync_threads(barrier_id, arrive_count)` is a named barrier over part of
    the block (bar.sync id, count): the first `arrive_count` threads to reach barrier
    `barrier_id` (1..15) go on together. It may sit under a condition on the thread index (the
    threads that run it must number `arrive_count`, whole warps; a wrong count hangs, as in
    TileLang). Interpret mode runs every thread in step, where any barrier is a no-op.
    """
    builder = current("T.sync_threads")
    loc = caller_location()
    if arrive_count is None and barrier_id in (None, 0):
        builder.emit(SyncThreads(loc))
        return
    threads = builder.threads
    call = f"T.sync_threads(barrier_id={barrier_id!r}, arrive_count={arrive_count!r})"
    if not isinstance(barrier_id, int) or isinstance(barrier_id, bool) or \
            not 0 <= barrier_id <= 15:
        raise builder.error(f"{call}: barrier_id must be a Python int in 1..15 (0 is the "
                            "block barrier)", loc, op="T.sync_threads")
    count = threads if arrive_count is None else arrive_count
    if not isinstance(count, int) or isinstance(count, bool) or count <= 0 or count % 32 \
            or (threads is not None and count > threads):
        raise builder.error(f"{call}: arrive_count must be a Python int, a multiple of 32 (whole "
                            f"warps) and at most the block's {threads} threads", loc,
                            op="T.sync_threads")
    if barrier_id == 0:
        if count != threads:
            raise builder.error(f"{call}: barrier 0 is the block barrier, over all {threads} "
                                "threads; name another barrier (1..15) for part of the block",
                                loc, op="T.sync_threads")
        builder.emit(SyncThreads(loc))
        return
    builder.emit(SyncThreads(loc, named=(barrier_id, count)))


def sync_grid():
    """Waits until every thread of every block of the launch gets here (TileLang's
    `T.sync_grid()`; cooperative groups' `this_grid().sync()`): what any block wrote to global
    memory before it, every block reads after it.

    The kernel is launched cooperatively, so all its blocks must be resident on the GPU at once
    (a grid of at most a few blocks per SM, e.g. one per SM as persistent kernels use); a larger
    grid is refused at launch with a message from the launcher that names T.sync_grid. It must
    be a statement of the kernel body, or of a T.Parallel loop in it (as in TileLang's own
    test; the loop splits there: every element's statements before the barrier run before any
    element's after it), not inside another loop or a branch (every thread must reach each
    grid barrier the same number of times). A name bound to a value read from global memory
    before the barrier is refused where it is used after it (jtile would read it again, seeing
    other blocks' writes). Interpret mode runs every block up to the barrier, then every block
    on from it, each keeping its shared memory, fragments and variables.
    """
    builder = current("T.sync_grid")
    loc = caller_location()
    if builder.grid is None:
        raise builder.error("T.sync_grid belongs inside `with T.Kernel(...)`", loc,
                            op="T.sync_grid")
    # The kernel's own body is the block `with T.Kernel` opened (the outermost one when
    # pallas_like was given grid= instead); a T.Parallel loop right in it may hold the barrier
    # too (T.Parallel splits there).
    top = 1 if builder.implicit_grid else 2
    if len(builder.blocks) != top + builder.parallel_depth or builder.parallel_depth > 1:
        raise builder.error("T.sync_grid must be a statement of the kernel body itself, or of "
                            "a T.Parallel loop in it, not inside another loop or a branch: every "
                            "thread of every block must reach each grid barrier, the same "
                            "number of times", loc, op="T.sync_grid")
    if builder.attrs.get("cluster_dims") is not None:
        raise builder.error(f"T.sync_grid in a kernel with cluster_dims="
                            f"{builder.attrs['cluster_dims']}: cooperative launches of clusters "
                            "are not supported; drop cluster_dims", loc, op="T.sync_grid")
    builder.emit(SyncThreads(loc, grid=True))


def _barrier(bar, what, builder, loc):
    if isinstance(bar, Load) and bar.buffer.space is MemorySpace.BARRIER:
        return bar.buffer, bar.indices[0]
    if isinstance(bar, Buffer) and bar.space is MemorySpace.BARRIER:
        if bar.shape[0] != 1:
            raise builder.error(f"{bar.describe()} holds {bar.shape[0]} barriers; pick one with "
                                f"{bar.name}[i]", loc, op=what)
        return bar, Const(0, DType.int32)
    raise builder.error(f"expected a barrier from T.alloc_barrier, got {bar!r}", loc, op=what)


def mbarrier_arrive(mbarrier, cta_id=None):
    """Arrives on an mbarrier (mbarrier.arrive.shared::cta.b64; sm_90+).

    TileLang's `cta_id` (arrive on the barrier of another CTA of the cluster) is refused by
    name: jtile's clusters exchange data only through the TMA multicast it plans itself.
    """
    builder = current("T.mbarrier_arrive")
    loc = caller_location()
    if cta_id is not None:
        raise builder.error("T.mbarrier_arrive(cta_id=...) arrives on another CTA's barrier; "
                            "jtile does not support remote arrivals (cluster kernels share "
                            "tiles through the TMA multicast the compiler plans)", loc,
                            op="T.mbarrier_arrive")
    bar, index = _barrier(mbarrier, "T.mbarrier_arrive", builder, loc)
    builder.emit(BarrierOp("arrive", bar, index, None, loc))


def mbarrier_wait_parity(mbarrier, parity):
    """Waits until the barrier's phase with `parity` completes (mbarrier.try_wait.parity; sm_90+)."""
    builder = current("T.mbarrier_wait_parity")
    loc = caller_location()
    bar, index = _barrier(mbarrier, "T.mbarrier_wait_parity", builder, loc)
    builder.emit(BarrierOp("wait", bar, index, as_expr(parity), loc))


def mbarrier_expect_tx(mbarrier, tx_bytes):
    """Adds `tx_bytes` of expected asynchronous transactions to the barrier's phase
    (mbarrier.expect_tx; sm_90+)."""
    builder = current("T.mbarrier_expect_tx")
    loc = caller_location()
    bar, index = _barrier(mbarrier, "T.mbarrier_expect_tx", builder, loc)
    builder.emit(BarrierOp("expect_tx", bar, index, as_expr(tx_bytes), loc))


def barrier_wait(mbarrier, parity):
    """TileLang's alias of `T.mbarrier_wait_parity(mbarrier, parity)` (sm_90+)."""
    builder = current("T.barrier_wait")
    loc = caller_location()
    bar, index = _barrier(mbarrier, "T.barrier_wait", builder, loc)
    builder.emit(BarrierOp("wait", bar, index, as_expr(parity), loc))


def barrier_arrive(mbarrier):
    """TileLang's alias of `T.mbarrier_arrive(mbarrier)` (sm_90+)."""
    builder = current("T.barrier_arrive")
    loc = caller_location()
    bar, index = _barrier(mbarrier, "T.barrier_arrive", builder, loc)
    builder.emit(BarrierOp("arrive", bar, index, None, loc))


def fence_proxy_async():
    """Orders this thread's generic-proxy shared-memory accesses with its async-proxy ones
    (fence.proxy.async.shared::cta; sm_90+), as TileLang's: shared memory written by plain
    stores and next read by a TMA store or wgmma (or written by TMA and next read by plain
    loads) needs it, together with a barrier between the threads involved. jtile places these
    fences itself around the copies and gemms it plans; this is for hand-written
    synchronisation. A no-op in interpret mode, where every access is in program order."""
    builder = current("T.fence_proxy_async")
    builder.emit(FenceProxyAsync(caller_location()))


def wait_wgmma(id):  # noqa: A002 (TileLang's parameter name)
    """TileLang's wait for the wgmma groups a `T.gemm(..., wg_wait=)` left in flight: at most
    `id` groups stay pending. jtile has nothing to wait for here: it waits for each gemm
    itself before any statement reads or writes its accumulator (see T.gemm's `wg_wait`), so
    the values after this call are what TileLang's are. Emits no code."""
    builder = current("T.wait_wgmma")
    loc = caller_location()
    if isinstance(id, bool) or not isinstance(id, int) or id < 0:
        raise builder.error(f"T.wait_wgmma({id!r}): the number of wgmma groups that may stay in "
                            "flight is a non-negative Python int", loc, op="T.wait_wgmma")


def no_set_max_nreg():
    """Turns off register reallocation in this kernel (TileLang's hint; changes no values).

    On sm_90a jtile's warp specialisation lets the producer warpgroup give its registers to the
    consumer warpgroups with `setmaxnreg` (PTX setmaxnreg.dec/inc.sync.aligned.u32); after this
    call the kernel keeps the even split ptxas chooses. Call it anywhere inside the kernel.
    """
    builder = current("T.no_set_max_nreg")
    loc = caller_location()
    if builder.grid is None:
        raise builder.error("T.no_set_max_nreg belongs inside `with T.Kernel(...)`", loc,
                            op="T.no_set_max_nreg")
    builder.attrs["no_set_max_nreg"] = True


def disable_warp_group_reg_alloc():
    """TileLang's alias of `T.no_set_max_nreg()`."""
    no_set_max_nreg()
