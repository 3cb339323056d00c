"""Barrier planning: where the threads that run the kernel body must meet.

Threads of a block exchange data through shared memory only. A statement that reads bytes
another thread wrote, or overwrites bytes another thread may still read, has to wait at a
barrier placed after the statement it conflicts with. This pass walks the planned kernel in
program order, keeping the shared buffers written and read since the last barrier (two buffers
that `plan_shared_memory` placed on common bytes count as one), and places a `Barrier`:
- before a statement that conflicts with those sets (a loop or branch conflicts through
  anything inside it);
- at the end of a loop body whose next iteration would conflict with this one, and at the end
  of a `while` body whose condition reads what the body wrote;
- on entry to a stage ring whose tiles (or whose body's reads) were touched since the last
  barrier, and around a store staged through shared memory (`StagedStore`).
A user's `T.sync_threads` becomes a `Barrier` too. Each barrier says whether ordinary stores
before it may next be read by wgmma or TMA (the async proxy), so the printer fences them.

A `TmaReduce` reads its shared tile asynchronously, after the barrier before it: the tile stays
unwritable until a barrier whose issuing thread first waits for the engine's reads
(`drain_bulk_reads`). A reduce of one loop iteration is drained by the first block barrier of
the next (late enough that the engine is done; a barrier right after the reduce would make the
threads wait for it), a write to the tile with no drain in between gets a drained barrier, and
the kernel ends with a drain.

Barriers a lowered instruction needs by construction stay with it: the cp.async ring's barrier
per iteration, the cross-warp combines of a reduction. Inside `T.Parallel` nothing is placed:
its body is one unit, and a barrier there would deadlock threads that run different iteration
counts. In a warp-specialised kernel the barriers cover the consumer warps only (the printer
makes them named barriers).

Under a condition (or loop bound) that differs between threads a block barrier would wait for
threads that never arrive, so none is placed there. Hazards with what came before or comes
after are settled by barriers around the branch. Inside a branch on `tx < C` or `tx >= C` (C a
multiple of 32) and its else branch the threads that run it are known: they meet at a named
barrier over just them (bar.sync id, count). Inside any other such branch or loop, a
statement that reads or overwrites an element another thread of it wrote or read is refused,
unless every access to that buffer there uses one and the same index expression (each thread
then touches only the elements it computes itself).
"""

from __future__ import annotations

import dataclasses

from jtile.ir import lowered as low
from jtile.ir import nodes as ir
from jtile.ir.affine import never_equal
from jtile.ir.printer import expr_text
from jtile.ir.walk import (buffers_read, buffers_written, deep_buffers_read,
                           deep_buffers_written, is_region, loads, regions, statement_exprs,
                           statements, sub_expressions)
from jtile.errors import JtileTraceError
from jtile.passes.verify import (depends_on_thread, split_threads,
                                 thread_dependent_buffers)

# Named barrier ids: 0 is the block barrier; jtile's warp-specialised kernels use 1 and up for
# their consumers and their turns; branches on the thread index take the two highest ids the
# kernel's own T.sync_threads(barrier_id, ...) calls leave free.
MAX_BARRIER_ID = 15
WARPGROUP = 128


def region_barrier_id(first_thread: int) -> int:
    """The named barrier the threads of the T.ws region starting at `first_thread` meet at:
    one per warpgroup, counted down from the top id (regions on different warpgroups run side
    by side, so they must not share one)."""
    return MAX_BARRIER_ID - first_thread // WARPGROUP


def region_barrier_ids(kernel: ir.Kernel) -> set:
    return {region_barrier_id(s.threads[0]) for s in regions(kernel.body)}


class _Planner:
    def __init__(self, kernel: ir.Kernel):
        self.kernel = kernel
        self.plan = kernel.attrs["shared"]
        self.async_proxy = bool(kernel.attrs.get("panel_buffers"))   # wgmma / TMA tiles
        self.written: set = set()
        self.read: set = set()
        # What T.ws regions wrote and read since the last barrier: ordered against the code
        # around the regions, never against another region (the kernel's mbarriers order
        # those, as in TileLang).
        self.region_written: set = set()
        self.region_read: set = set()
        # Of those written since the last barrier, the buffers written only by T.ptx_cp_async:
        # one such copy after another needs no barrier (each thread writes its own run, and
        # nothing was read in between), as in TileLang.
        self.copied_only: set = set()
        # Buffers T.ptx_cp_async wrote since the last barrier: their copies may still be in
        # flight, so a barrier for a hazard on them waits for the copies first.
        self.copies_in_flight: set = set()
        self.any_copies = _has_thread_copies(kernel.body)
        self.store_maps: list = []   # (parameter index, StagedStore) of each TMA store
        # Shared tiles TmaReduces may still be reading: `bulk_fresh`, issued since the last
        # drain in this pass over the code, and `bulk_carried`, issued by an earlier loop
        # iteration (or before a loop) and drained at the next block barrier. A write to
        # either waits for a drained barrier.
        self.bulk_fresh: set = set()
        self.bulk_carried: set = set()
        self.any_bulk_reads = False
        self.tainted = thread_dependent_buffers(kernel) if kernel.thread_var is not None \
            else set()
        # (what, loc) of the thread-dependent branch or loop being planned, its statements
        # planned so far, and the (id, count) of a named barrier over its threads, if known.
        self.divergent = None
        self.divergent_stmts: list = []
        self.divergent_loop_vars: set = set()   # loops entered inside the branch
        self.partial = self.partial_of_region = None
        used = {s.named[0] for s in statements(kernel.body)
                if isinstance(s, ir.SyncThreads) and s.named is not None}
        used |= region_barrier_ids(kernel)
        free = [i for i in range(MAX_BARRIER_ID, 0, -1) if i not in used]
        self.branch_ids = (free[0], free[1])

    # ------------------------------------------------------------------ byte-level sets
    def _bytes(self, buf) -> tuple:
        start = self.plan.offsets[buf]
        return start, start + buf.nbytes * self.plan.stages.get(buf, 1)

    def overlap(self, a, b) -> bool:
        """Whether two sets of shared buffers share bytes (buffers whose lives do not meet
        may share memory, so distinct buffers can alias)."""
        for x in a:
            for y in b:
                if x is y:
                    return True
                (x0, x1), (y0, y1) = self._bytes(x), self._bytes(y)
                if x0 < y1 and y0 < x1:
                    return True
        return False

    @staticmethod
    def shared_sets(s) -> tuple:
        reads = {b for b in deep_buffers_read(s) if b.space.is_shared}
        writes = {b for b in deep_buffers_written(s) if b.space.is_shared}
        return reads, writes

    def copy_writes(self, stmts) -> tuple:
        """(the shared buffers `stmts` write through T.ptx_cp_async, those they write only
        so); empty in a kernel without such copies."""
        if not self.any_copies:
            return set(), set()
        by_copy, other = set(), set()
        for x in statements(stmts):
            written = {b for b in buffers_written(x) if b.space.is_shared}
            (by_copy if isinstance(x, ir.ThreadCopy) else other).update(written)
        return by_copy, by_copy - other

    def writes_conflict(self, writes, written, exempt) -> bool:
        """Whether `writes` overwrite bytes of `written`, where a buffer of `exempt` meeting
        itself does not count (per-thread copies after per-thread copies)."""
        return self.overlap(writes - exempt, written) or \
            self.overlap(writes & exempt, written - exempt)

    @staticmethod
    def threads_reads(s, reads) -> set:
        """What the threads themselves read of `reads` (a TmaReduce's tile is read by the TMA
        engine, after the barrier before it: `bulk_reads` tracks it)."""
        return reads - {s.smem_buffer} if isinstance(s, low.TmaReduce) else reads

    def seed_bulk_reads(self, stmts) -> None:
        """A loop body's TMA reduces of one iteration may still read at the next one: the
        first block barrier of the body drains them (late enough that the engine is done)."""
        self.bulk_carried |= self.bulk_fresh | {x.smem_buffer for x in statements(stmts)
                                                if isinstance(x, low.TmaReduce)}
        self.bulk_fresh = set()

    def leave_bulk_loop(self) -> None:
        """After a loop, its last iteration's reduces are carried to what follows."""
        self.bulk_carried |= self.bulk_fresh
        self.bulk_fresh = set()

    def conflicts(self, reads, writes) -> set:
        """The buffers of `reads` / `writes` that meet what was written / touched since the
        last barrier, with the buffers they meet."""
        out = set()
        for mine, theirs in ((reads, self.written), (writes, self.read | self.written)):
            for x in mine:
                for y in theirs:
                    if self.overlap({x}, {y}):
                        out |= {x, y}
        return out

    def sets_conflict(self, before, after, exempt=frozenset()) -> bool:
        """Whether accesses `after` (reads, writes) must wait for accesses `before` (`exempt`:
        see `writes_conflict`)."""
        return self.overlap(after[1], before[0]) or \
            self.writes_conflict(after[1], before[1], exempt) or self.overlap(after[0], before[1])

    def divergent_barrier(self, s, buffers) -> list:
        """Inside a thread-dependent branch: no barrier when each conflicting buffer is only
        ever accessed at one index expression there (every thread keeps to its own elements);
        otherwise the kernel is refused."""
        region = self.divergent_stmts + [s]
        if all(_single_index(region, b, self.divergent_loop_vars) for b in buffers):
            return []
        what, where = self.divergent
        names = ", ".join(sorted(b.describe() for b in buffers))
        k = self.kernel
        raise JtileTraceError(
            f"{k.name} ({k.loc}): {getattr(s, 'loc', None)}: threads under {what} at {where}, "
            f"which differs between the threads of a block, exchange data through shared "
            f"memory ({names}): one thread reads or overwrites an element another thread of "
            "the branch wrote or read, which needs a barrier, and a block barrier inside the "
            "branch would wait for the threads that skip it. End the branch, call "
            "T.sync_threads(), and continue under a new one, or meet at a named barrier over "
            "the branch's threads: T.sync_threads(barrier_id, arrive_count)")

    def hazard_barrier(self, s, reads, writes, copies=frozenset()) -> list:
        """The barrier a hazard before statement `s` needs: the block's, the named barrier of
        the branch on the thread index being planned, or (other branches) none or a refusal.
        `copies`: buffers of `writes` written only by T.ptx_cp_async (those need not wait for
        earlier copies to land)."""
        landing = self.overlap(reads | (writes - copies), self.copies_in_flight)
        if self.divergent is None:
            return [self.barrier(wait_copies=landing)]
        if self.partial is not None:
            return [self.barrier(partial=self.partial, wait_copies=landing)]
        return self.divergent_barrier(s, self.conflicts(reads, writes))

    def barrier(self, loc=ir.NO_LOC, from_user=False, partial=None,
                drain=False, wait_copies=None) -> low.Barrier:
        """A barrier here: everything before it is visible to everything after it. A block
        barrier drains the TMA reduces carried from before (`drain`: every pending one).
        `wait_copies`: whether T.ptx_cp_async copies must land first (None: whenever any
        may be in flight, as for a barrier the user wrote)."""
        drain = partial is None and (drain or bool(self.bulk_carried))
        if wait_copies is None:
            wait_copies = bool(self.copies_in_flight)
        b = low.Barrier(fence_async=self.async_proxy and bool(self.written), loc=loc,
                        from_user=from_user, partial=partial, drain_bulk_reads=drain,
                        wait_thread_copies=wait_copies)
        self.written.clear()
        self.read.clear()
        self.region_written.clear()
        self.region_read.clear()
        self.copied_only.clear()
        if wait_copies:
            self.copies_in_flight.clear()
        if drain:
            # wait_group.read 0 waits for every reduce the issuing thread has in flight.
            self.bulk_carried.clear()
            self.bulk_fresh.clear()
        return b

    # ------------------------------------------------------------------ bodies
    def body(self, stmts) -> list:
        out = []
        for s in stmts:
            reads, writes = self.shared_sets(s)
            written, read = self.written, self.read
            if not is_region(s):
                written, read = written | self.region_written, read | self.region_read
            by_copy, copied = self.copy_writes((s,))
            exempt = copied & self.copied_only
            if self.overlap(reads, written) or self.overlap(writes, read) or \
                    self.writes_conflict(writes, written, exempt):
                out.extend(self.hazard_barrier(s, reads, writes, copied))
            elif self.overlap(writes, self.bulk_fresh | self.bulk_carried):
                # The TMA engine may still read these bytes: its issuer waits, then all meet.
                if self.divergent is not None:
                    k = self.kernel
                    raise JtileTraceError(
                        f"{k.name} ({k.loc}): {getattr(s, 'loc', None)}: threads under "
                        f"{self.divergent[0]} at {self.divergent[1]} overwrite a shared tile a "
                        "TMA reduce (T.atomic_add into global memory) may still be reading; "
                        "call T.sync_threads() before the branch")
                out.append(self.barrier(drain=True))
            out.extend(self.stmt(s))
            self.copies_in_flight |= by_copy
            every_write = self.written | self.region_written
            self.copied_only = {b for b in self.copied_only if b not in writes or b in copied} | \
                {b for b in copied if b not in every_write}
            if is_region(s) and self.divergent is None:
                self.region_read |= reads
                self.region_written |= writes
                continue
            self.read |= self.threads_reads(s, reads)
            self.written |= writes
            if isinstance(s, low.TmaReduce):
                # Read asynchronously: settled by a drained barrier, not by the next one.
                self.bulk_fresh.add(s.smem_buffer)
                self.any_bulk_reads = True
            if self.divergent is not None:
                self.divergent_stmts.append(s)
        return out

    def loop_body(self, stmts) -> list:
        """A loop body, with a barrier at its end when the next iteration's shared-memory
        writes could overtake this iteration's reads (or the reverse)."""
        entry_written, entry_read = set(self.written), set(self.read)
        entry_region_written, entry_region_read = set(self.region_written), set(self.region_read)
        entry_copied = set(self.copied_only)
        self.seed_bulk_reads(stmts)
        out = self.body(stmts)
        # The next iteration's accesses, by the code around regions (block) and by regions.
        block, region = (set(), set()), (set(), set())
        for s in stmts:
            r, w = self.shared_sets(s)
            into = region if is_region(s) and self.divergent is None else block
            into[0].update(self.threads_reads(s, r))
            into[1].update(w)
        now_block, now_region = (self.read, self.written), (self.region_read, self.region_written)
        copied = self.copy_writes(stmts)[1]
        exempt = copied & self.copied_only
        if self.sets_conflict(now_block, block, exempt) or \
                self.sets_conflict(now_block, region, exempt) or \
                self.sets_conflict(now_region, block, exempt):
            out.extend(self.hazard_barrier(stmts[-1], block[0] | region[0],
                                           block[1] | region[1], copied))
        self.written |= entry_written
        self.read |= entry_read
        self.region_written |= entry_region_written
        self.region_read |= entry_region_read
        # A loop may run no iteration: what was written before it by anything but a copy
        # still counts.
        self.copied_only -= (entry_written | entry_region_written) - entry_copied
        self.leave_bulk_loop()
        return out

    def ring_body(self, stmts) -> list:
        """The body of a ring whose iterations each start at the ring's own block barrier
        (shared memory is settled there; TMA reduces are not: they are drained as in any
        loop)."""
        self.written.clear()
        self.read.clear()
        self.seed_bulk_reads(stmts)
        body = self.body(stmts)
        self.leave_bulk_loop()
        return body

    def leave_ring(self, buffers, body) -> None:
        """After a ring, later statements must not overwrite what its last iteration may still
        be reading (or read what it wrote) without a barrier."""
        for s in body:
            reads, writes = self.shared_sets(s)
            self.read |= reads
            self.written |= writes
        self.read |= set(buffers)
        self.written |= set(buffers)

    # ------------------------------------------------------------------ statements
    def stmt(self, s) -> list:
        if is_region(s) and self.divergent is None:
            return [self.region(s)]
        divides = isinstance(s, (ir.IfThenElse, ir.For, ir.While)) and \
            any(depends_on_thread(self.kernel, e, self.tainted) for e in statement_exprs(s))
        if divides and self.divergent is not None and self.partial is not None:
            # A branch inside a branch: which threads reach its barriers is not known.
            self.partial = None
            try:
                return self.stmt(s)
            finally:
                self.partial = self.partial_of_region
        if divides and self.divergent is None:
            what = {ir.IfThenElse: "the condition of T.If", ir.For: "the bound of the loop",
                    ir.While: "the condition of the while loop"}[type(s)]
            self.divergent, self.divergent_stmts = (what, s.loc), []
            self.divergent_loop_vars = set()
            try:
                if isinstance(s, ir.IfThenElse):
                    return self.branches(s, self.branch_threads(s.cond))
                return self.stmt(s)
            finally:
                self.divergent, self.partial, self.partial_of_region = None, None, None
        if isinstance(s, ir.ParallelFor):
            return [s]   # one unit: never a barrier inside divergent loops
        if isinstance(s, ir.SyncThreads) and s.named is not None:
            if self.divergent is not None:
                # The user's barrier over the branch's threads settles what they exchanged.
                return [self.barrier(s.loc, from_user=True, partial=s.named)]
            # Over part of the block only: the block's hazards stay pending.
            return [low.Barrier(loc=s.loc, from_user=True, partial=s.named)]
        if isinstance(s, ir.SyncThreads) and s.grid:
            # Every block meets (the emitter waits for TMA writes to global memory first).
            return [dataclasses.replace(self.barrier(s.loc, from_user=True), grid=True)]
        if isinstance(s, ir.SyncThreads):
            return [self.barrier(s.loc, from_user=True)]
        if isinstance(s, low.MbarrierPipeline):
            return [self.mbarrier_ring(s)]
        if isinstance(s, low.CpAsyncPipeline):
            return [self.cp_async_ring(s)]
        if isinstance(s, ir.For):
            if self.divergent is not None:
                self.divergent_loop_vars.add(s.var)
            return [dataclasses.replace(s, body=tuple(self.loop_body(s.body)))]
        if isinstance(s, ir.While):
            body = self.loop_body(s.body)
            cond_reads = {x.buffer for x in sub_expressions(s.cond)
                          if isinstance(x, ir.Load) and x.buffer.space.is_shared}
            # The condition is read after each iteration, like the next iteration's start.
            if self.overlap(cond_reads, self.written):
                body.append(self.barrier())
            return [dataclasses.replace(s, body=tuple(body))]
        if isinstance(s, ir.IfThenElse):
            return self.branches(s, None)
        if isinstance(s, ir.Copy) and s in self.plan.staging:
            return [self.staged_store(s, self.plan.staging[s])]
        return [s]

    def region(self, s: ir.IfThenElse) -> ir.IfThenElse:
        """A T.ws region: its threads meet at their own named barrier; it starts from no
        pending accesses of its own (the code before it was settled by the barrier placed
        before the region, other regions by the kernel's mbarriers)."""
        first, count = s.threads
        saved = (self.written, self.read, self.region_written, self.region_read)
        self.written, self.read, self.region_written, self.region_read = \
            set(), set(), set(), set()
        self.divergent, self.divergent_stmts = ("the T.ws region", s.loc), []
        self.divergent_loop_vars = set()
        self.partial = self.partial_of_region = (region_barrier_id(first), count)
        try:
            body = self.body(s.then_body)
        finally:
            self.divergent, self.partial, self.partial_of_region = None, None, None
            self.written, self.read, self.region_written, self.region_read = saved
        return dataclasses.replace(s, then_body=tuple(body))

    def branch_threads(self, cond):
        """`verify.split_threads` of a branch's condition, outside warp-specialised kernels."""
        if self.kernel.attrs.get("warp_roles") is not None:
            return None
        return split_threads(self.kernel, cond)

    def branches(self, s: ir.IfThenElse, threads) -> list:
        """Both bodies of a T.If, each from the state before it; after it, the union.
        `threads`: (then, else) thread counts of a branch on `tx < C`, else None."""
        entry_written, entry_read = set(self.written), set(self.read)
        if threads is not None:
            self.partial = self.partial_of_region = (self.branch_ids[0], threads[0])
        then_body = self.body(s.then_body)
        then_written, then_read = self.written, self.read
        else_body = s.else_body
        if s.else_body:
            self.written, self.read = set(entry_written), set(entry_read)
            if threads is not None:
                self.partial = self.partial_of_region = \
                    (self.branch_ids[1], threads[1]) if threads[1] % 32 == 0 else None
            self.divergent_stmts = []
            else_body = tuple(self.body(s.else_body))
        self.written = then_written | self.written | entry_written
        self.read = then_read | self.read | entry_read
        return [dataclasses.replace(s, then_body=tuple(then_body), else_body=else_body)]

    def mbarrier_ring(self, pipe: low.MbarrierPipeline) -> low.MbarrierPipeline:
        buffers = [load.tile.dst.buffer for load in pipe.loads]
        entry = None
        # Shared memory written before the ring (a Q tile, say) is read by wgmma inside it.
        if self.written or self.overlap(set(buffers), self.read):
            entry = self.barrier()
        if pipe.producer_threads:
            body = self.loop_body(pipe.body)
        else:
            # Thread 0 refills a stage only after the block barrier of each iteration.
            body = self.ring_body(pipe.body)
        self.leave_ring(buffers, pipe.body)
        return dataclasses.replace(pipe, body=tuple(body), entry_barrier=entry)

    def cp_async_ring(self, pipe: low.CpAsyncPipeline) -> low.CpAsyncPipeline:
        buffers = [c.dst.buffer for c in pipe.copies]
        entry = None
        if self.overlap(set(buffers), self.read | self.written):
            entry = self.barrier()
        # Each iteration passes the ring's own block barrier before its body.
        body = self.ring_body(pipe.body)
        self.leave_ring(buffers, pipe.body)
        return dataclasses.replace(pipe, body=tuple(body), entry_barrier=entry)

    def staged_store(self, s: ir.Copy, stage: ir.Buffer) -> low.StagedStore:
        entry = None
        if self.overlap({stage}, self.read | self.written):
            entry = self.barrier()   # the stage reuses bytes the block may still be using
        middle = self.barrier()      # the whole stage is written before any thread reads it
        self.read.add(stage)
        store = low.StagedStore(tile=s, stage=stage, middle=middle, entry_barrier=entry,
                                loc=s.loc)
        if stage not in self.plan.tma_staged:
            return store
        # The TMA engine reads the stage through the async proxy: the threads' stores to it
        # are fenced before the barrier. Maps after the loads' (number_tensor_maps).
        param, boxes = self.plan.tma_staged[stage]
        index = len(self.kernel.attrs.get("tma_maps", ())) + len(self.store_maps)
        ring = stage in self.plan.panel_rings
        store = dataclasses.replace(store, tma_map=index, boxes=boxes, panel_ring=ring,
                                    middle=dataclasses.replace(middle, fence_async=True))
        if ring:
            # The engine reads the last panel after the statement: drained before the exit.
            self.any_bulk_reads = True
        self.store_maps.append((param, store))
        return store


def _has_thread_copies(stmts) -> bool:
    return any(isinstance(s, ir.ThreadCopy) for s in statements(stmts))


def _fence_thread_copies(body: tuple) -> tuple:
    """A `FenceProxyAsync` after each mbarrier wait outside the code that issues T.ptx_cp_async:
    those copies write shared memory through the generic proxy, and the waiting threads may
    read it next through the async proxy (wgmma, TMA stores)."""
    out = []
    for s in body:
        if is_region(s) and _has_thread_copies((s,)):
            out.append(s)   # the issuing region reads through the generic proxy
            continue
        if isinstance(s, ir.BarrierOp) and s.op == "wait":
            out += [s, ir.FenceProxyAsync(s.loc)]
            continue
        if isinstance(s, ir.IfThenElse):
            s = dataclasses.replace(s, then_body=_fence_thread_copies(s.then_body),
                                    else_body=_fence_thread_copies(s.else_body))
        elif isinstance(s, (ir.For, ir.While)):
            s = dataclasses.replace(s, body=_fence_thread_copies(s.body))
        out.append(s)
    return tuple(out)


def plan_barriers(kernel: ir.Kernel, target) -> ir.Kernel:
    if target.has_tma and _has_thread_copies(kernel.body):
        kernel = kernel.replace(body=_fence_thread_copies(kernel.body))
    planner = _Planner(kernel)
    if kernel.attrs.get("persistent") and kernel.attrs.get("warp_roles") is not None:
        # The consumers run the body once per tile: it is a loop body.
        body = planner.loop_body(kernel.body)
    else:
        body = planner.body(kernel.body)
    if planner.any_bulk_reads:
        # The block's shared memory must outlive the TMA engine's reads of it.
        body.append(low.DrainBulkReads())
    kernel = kernel.replace(body=tuple(body))
    if planner.store_maps:
        maps = tuple(kernel.attrs.get("tma_maps", ())) + tuple(planner.store_maps)
        kernel = kernel.replace(attrs=dict(kernel.attrs, tma_maps=maps))
    return kernel


def _single_index(stmts, buf, loop_vars=frozenset()) -> bool:
    """Whether every access to `buf` in `stmts` is an element load or store, all at one and the
    same index expression, or the loads at one and the stores at another that never meets it
    (a ping-pong `s[r, i]` read and `s[r ^ 1, j]` written): each thread keeps to its own
    elements, and no load sees a store."""
    loaded, stored = {}, {}
    for s in statements(stmts):
        element_loads = [x for x in loads(s) if x.buffer is buf]
        loaded.update((_index_key(x.indices), x.indices) for x in element_loads)
        if isinstance(s, ir.Store) and s.buffer is buf:
            stored[_index_key(s.indices)] = s.indices
        elif buf in buffers_written(s):
            return False   # a tile op or a lowered instruction writes it
        if buf in buffers_read(s) and not element_loads:
            return False   # a tile op reads it
    if len(set(loaded) | set(stored)) == 1:
        return True
    if len(loaded) == 1 and len(stored) == 1:
        # Proven for one value of the variables: a loop inside the branch would give a later
        # iteration's load another value than an earlier iteration's store (another thread's).
        # Loads are out too: a variable stored between them changes their value.
        inner = set(loop_vars)
        for x in statements(stmts):
            inner |= {x.var} if isinstance(x, ir.For) else \
                set(x.vars) if isinstance(x, ir.ParallelFor) else set()
        (read,), (written,) = loaded.values(), stored.values()
        return any(never_equal(a, b) and all(_fixed_in_branch(e, inner) for e in (a, b))
                   for a, b in zip(read, written))
    return False


def _fixed_in_branch(expr, inner_vars: set) -> bool:
    """Whether `expr` has one value all through the branch: arithmetic on constants and on
    variables of loops around it, no loads."""
    return all(isinstance(e, (ir.Const, ir.BinOp, ir.UnOp, ir.Cast))
               or isinstance(e, ir.Var) and e not in inner_vars
               for e in sub_expressions(expr))


def _index_key(indices) -> tuple:
    return tuple(expr_text(i) for i in indices)
