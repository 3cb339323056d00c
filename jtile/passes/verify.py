"""Checks the rules a traced kernel must meet before anything is generated.

Each broken rule is a JtileError naming the kernel, the source line and the buffers.
"""

from __future__ import annotations

from jtile.errors import JtileError, JtileTargetError, JtileTraceError
from jtile.ir import nodes as ir
from jtile.ir.types import MemorySpace
from jtile.passes.verify_tile_options import verify_tile_options
from jtile.ir.walk import (buffers_read, buffers_written, child_bodies, is_region, regions,
                          statement_exprs, statements, sub_expressions)


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


def verify_atomics_start_defined(kernel: ir.Kernel, aliased_outputs=()) -> None:
    """An atomic update reads the value it updates, and a new output's contents are undefined
    (TileLang's callers pass a zeroed tensor): an output that only atomics write must be an
    aliased input, or be filled first."""
    plain, atomic = set(), {}
    for s in statements(kernel.body):
        if isinstance(s, ir.AtomicAdd):
            atomic.setdefault(s.dst.buffer, s)
        else:
            plain |= buffers_written(s)
    for index, out in enumerate(kernel.outputs):
        first = atomic.get(out)
        if first is not None and out not in plain and index not in aliased_outputs:
            raise _fail(kernel, first.loc, f"output {out.describe()} is only updated with "
                        f"T.atomic_{first.op}, which reads its current contents, but a new "
                        "output starts undefined; pass a zero-filled array as an input and "
                        "alias it to this output with input_output_aliases (as TileLang's "
                        "callers pass a zeroed tensor), or T.fill / T.clear it first")


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
    verify_tile_options(kernel, target)  # clusters, views, layout annotations
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
        if isinstance(s, (ir.ThreadCopy, ir.AsyncCopyGroup)) and not target.has_cp_async:
            raise _fail(kernel, s.loc, f"{_async_copy_name(s)} is cp.async, which arrived with "
                        f"sm_80; the target is {target.arch}", JtileTargetError)
        if isinstance(s, ir.SetMaxNreg) and not target.has_wgmma:
            raise _fail(kernel, s.loc, "T.set_max_nreg is setmaxnreg, an sm_90a instruction; "
                        f"the target is {target.arch}", JtileTargetError)
        if isinstance(s, ir.FenceProxyAsync) and not target.has_tma:
            raise _fail(kernel, s.loc, "T.fence_proxy_async orders accesses of the async proxy "
                        f"(TMA, wgmma), which arrived with sm_90; the target is {target.arch}",
                        JtileTargetError)


def _async_copy_name(s) -> str:
    if isinstance(s, ir.ThreadCopy):
        return "T.ptx_cp_async"
    return "T.ptx_commit_group" if s.op == "commit" else "T.ptx_wait_group"


def verify_async_copies_awaited(kernel: ir.Kernel) -> None:
    """A T.ptx_cp_async lands asynchronously: a kernel that never waits for one (no
    T.ptx_wait_group, no T.cp_async_barrier_noinc) would read shared memory before it lands.
    Interpret mode copies at once, so without this rule the two would disagree."""
    body = list(statements(kernel.body))
    copies = [s for s in body if isinstance(s, ir.ThreadCopy)]
    waits = [s for s in body if (isinstance(s, ir.AsyncCopyGroup) and s.op == "wait") or
             (isinstance(s, ir.BarrierOp) and s.op == "arrive_after_copies")]
    if copies and not waits:
        raise _fail(kernel, copies[0].loc, "T.ptx_cp_async lands asynchronously, and nothing in "
                    "the kernel waits for it: add T.ptx_commit_group() and T.ptx_wait_group(0) "
                    "before the data is read, or T.cp_async_barrier_noinc(barrier) and a "
                    "T.barrier_wait on it")


_TILE_OPS = (ir.Copy, ir.Fill, ir.Gemm, ir.Reduce, ir.FinalizeReducer, ir.SyncThreads,
             ir.Scan, ir.Im2Col)


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
                        ir.SyncThreads: "T.sync_threads", ir.Scan: "T.cumsum/T.cummax",
                        ir.Im2Col: "T.im2col"}.get(type(s), f"T.atomic_{getattr(s, 'op', 'add')} "
                                                   "of a tile")
                raise _fail(kernel, s.loc, f"{name} inside T.Parallel (opened at {loop.loc}); "
                            "tile operations run once per block, so move it out of the loop")


_PRIVATE_SPACES = (MemorySpace.LOCAL, MemorySpace.VAR)


def thread_dependent_buffers(kernel: ir.Kernel) -> set:
    """Thread-private buffers (local, var) that may hold a value that differs between threads:
    stored from such a value, at such an index, or under such a condition. Computed to a fixed
    point over the whole body, regardless of order, since a loop carries values backwards.
    A T.alloc_var that starts from the thread index holds such a value from the start."""
    tainted: set = {b for b in kernel.allocations if b.space in _PRIVATE_SPACES and
                    b.init is not None and depends_on_thread(kernel, b.init, set())}

    def depends(expr) -> bool:
        return depends_on_thread(kernel, expr, tainted)

    changed = True
    while changed:
        changed = False

        def visit(body, divergent: bool):
            nonlocal changed
            for s in body:
                # A T.Parallel iteration belongs to one thread, so what it writes differs.
                inner = divergent or isinstance(s, ir.ParallelFor) or \
                    any(depends(e) for e in statement_exprs(s))
                if inner:
                    for buf in buffers_written(s):
                        if buf.space in _PRIVATE_SPACES and buf not in tainted:
                            tainted.add(buf)
                            changed = True
                for child in child_bodies(s):
                    visit(child, inner)

        visit(kernel.body, False)
    return tainted


def depends_on_thread(kernel: ir.Kernel, expr, tainted: set) -> bool:
    """Whether `expr` may differ between the threads of a block: it reads the thread index
    (directly, or in the index of a load) or a thread-private buffer that holds such a value."""
    for e in sub_expressions(expr):
        if isinstance(e, ir.Var) and (e is kernel.thread_var or e.kind is ir.VarKind.THREAD):
            return True
        if isinstance(e, ir.Load) and e.buffer in tainted:
            return True
    return False


def cooperative_name(s):
    """The name of `s` when the whole block must run it together, else None. Copies, fills
    and tile atomics that touch a thread-private buffer are per-thread work (every thread
    moves the whole tile), so they may run under a thread-dependent condition."""
    if isinstance(s, (ir.Copy, ir.Fill)) or \
            (isinstance(s, ir.AtomicAdd) and isinstance(s.value, ir.Region)):
        regions = (s.dst,) + ((s.src,) if isinstance(s, ir.Copy) else ()) + \
            ((s.value,) if isinstance(s, ir.AtomicAdd) else ())
        if any(r.buffer.space in _PRIVATE_SPACES for r in regions):
            return None
        if isinstance(s, ir.Copy) and s.split_phase:
            return "T.tma_copy"
        return {ir.Copy: "T.copy", ir.Fill: "T.fill"}.get(
            type(s), f"T.atomic_{getattr(s, 'op', 'add')} of a tile")
    if isinstance(s, ir.SyncThreads) and s.named is not None:
        return None   # a named barrier over the threads that reach it
    return {ir.Gemm: "T.gemm", ir.Reduce: f"T.reduce_{getattr(s, 'op', '')}",
            ir.FinalizeReducer: "T.finalize_reducer", ir.SyncThreads: "T.sync_threads",
            ir.ParallelFor: "T.Parallel"}.get(type(s))


def _stores_floating_fragment(s) -> bool:
    from jtile.passes.fragment_access import is_scalar_fragment, is_tiled_fragment

    return isinstance(s, ir.Store) and is_tiled_fragment(s.buffer) and \
        not is_scalar_fragment(s.buffer)


def verify_uniform_tile_ops(kernel: ir.Kernel, tainted=None) -> None:
    """Tile operations, T.Parallel and T.sync_threads run on every thread of the block
    together (each thread does its share, and the compiled code synchronises inside them).
    Under a `T.If`/`T.Else` or a loop bound that differs between threads, only some threads
    would do their share and `__syncthreads()` would wait for threads that never arrive.
    Element stores, mbarrier operations and per-thread copies stay allowed there."""
    if kernel.thread_var is None:
        return
    tainted = thread_dependent_buffers(kernel) if tainted is None else tainted

    def visit(body, divergence):
        for s in body:
            if divergence is not None and _stores_floating_fragment(s):
                what, loc = divergence
                raise _fail(kernel, s.loc, f"a store into fragment {s.buffer.describe()} "
                            f"outside T.Parallel, under {what} at {loc}, which differs between "
                            "the threads of a block; every thread holds its own copy of the "
                            "whole fragment there, and the threads that skip the store would "
                            "keep a stale copy. Move the store out of the condition (a "
                            "T.if_then_else value keeps it conditional)")
            if divergence is not None:
                name = cooperative_name(s)
                if name is not None:
                    what, loc = divergence
                    raise _fail(kernel, s.loc, f"{name} under {what} at {loc}, which "
                                "differs between the threads of a block; every thread must run "
                                f"{name} together, or the threads that skip it leave their share "
                                "undone (and a barrier inside it waits forever). Move it out of "
                                "the condition, or write the per-thread work as element stores"
                                + (" (jtile runs T.tma_copy as a copy shared by the threads of "
                                   "the block or of the T.ws region around it: give the "
                                   "producer a T.ws region instead of a branch on the thread "
                                   "index)" if name == "T.tma_copy" else ""))
            inner = divergence
            # A T.ws region's threads run its tile operations together.
            if inner is None and not isinstance(s, ir.ParallelFor) and not is_region(s) and \
                    any(depends_on_thread(kernel, e, tainted) for e in statement_exprs(s)):
                if isinstance(s, ir.IfThenElse):
                    inner = ("the condition of T.If", s.loc)
                elif isinstance(s, ir.For):
                    inner = ("the bound of the loop", s.loc)
                elif isinstance(s, ir.While):
                    inner = ("the condition of the while loop", s.loc)
            if isinstance(s, ir.IfThenElse):
                visit(s.then_body, inner)
                if s.else_body:
                    visit(s.else_body, divergence if inner is divergence
                          else ("T.Else of the T.If", s.loc))
            elif not isinstance(s, ir.ParallelFor):  # T.Parallel bodies have their own check
                for child in child_bodies(s):
                    visit(child, inner)

    visit(kernel.body, None)


def verify_fragment_indexing(kernel: ir.Kernel) -> None:
    """Inside T.Parallel, fragment elements are named by the loop's variables, by indices
    uniform over its iterations, or by bit-exact maps of the variables; outside it every
    thread holds the whole fragment, so a store there must put the same value at the same
    index in every thread (`jtile.passes.fragment_access`). Interpret mode would otherwise
    accept programs no thread layout can run."""
    from jtile.passes.fragment_access import (floating_accesses, fragment_rule_violations,
                                              fragment_tile_violations)

    for s, buf, rule in fragment_rule_violations(kernel):
        what = f"fragment {buf.describe()} " if buf is not None else ""
        raise _fail(kernel, s.loc, f"{what}{rule}")
    tainted = None
    for s, buf, store in floating_accesses(kernel):
        if not store:
            continue
        tainted = thread_dependent_buffers(kernel) if tainted is None else tainted
        if any(depends_on_thread(kernel, e, tainted) for e in statement_exprs(s)):
            raise _fail(kernel, s.loc, f"fragment {buf.describe()} is stored to outside "
                        "T.Parallel at an index or with a value that differs between the "
                        "threads of a block; there every thread holds its own copy of the "
                        "whole fragment, and the copies must stay equal. Store per-thread "
                        "values in T.alloc_local, or in shared memory indexed by the thread")
    for loc, rule in fragment_tile_violations(kernel):
        raise _fail(kernel, loc, rule)


def split_threads(kernel: ir.Kernel, cond):
    """(threads that run the then branch, threads that run the else branch) of a condition
    that splits the block at a multiple of 32 (`tx < C`, `tx >= C`, `C > tx`, `C <= tx`),
    else None."""
    tx, threads = kernel.thread_var, kernel.threads
    if tx is None or not isinstance(cond, ir.BinOp):
        return None
    op, a, b = cond.op, cond.a, cond.b
    if b is tx and isinstance(a, ir.Const):   # C > tx is tx < C, C <= tx is tx >= C
        op, a, b = {"gt": "lt", "le": "ge"}.get(op), b, a
    if a is not tx or not isinstance(b, ir.Const) or not isinstance(b.value, int) or \
            isinstance(b.value, bool) or not 0 < b.value < threads or b.value % 32:
        return None
    below = (b.value, threads - b.value)
    return below if op == "lt" else below[::-1] if op == "ge" else None


def verify_named_barrier_counts(kernel: ir.Kernel, tainted=None) -> None:
    """A named barrier lets threads through `arrive_count` at a time: where the number of
    threads that reach it is known (the whole block, or a branch on `tx < C` / `tx >= C`) and
    is not a multiple of the count, the last ones would wait forever. Under other conditions
    on the thread index the count is the kernel's responsibility, as in TileLang."""
    if kernel.thread_var is None:
        return
    tainted = thread_dependent_buffers(kernel) if tainted is None else tainted

    def visit(body, arriving):
        for s in body:
            if isinstance(s, ir.SyncThreads) and s.named is not None and arriving is not None \
                    and arriving % s.named[1]:
                raise _fail(kernel, s.loc, f"T.sync_threads(barrier_id={s.named[0]}, "
                            f"arrive_count={s.named[1]}) is reached by {arriving} threads here; "
                            f"the barrier lets them through {s.named[1]} at a time, so the last "
                            f"{arriving % s.named[1]} would wait forever. Use a count that "
                            f"divides {arriving}")
            divides = not isinstance(s, ir.ParallelFor) and \
                any(depends_on_thread(kernel, e, tainted) for e in statement_exprs(s))
            if is_region(s):
                visit(s.then_body, s.threads[1] if arriving == kernel.threads else None)
            elif isinstance(s, ir.IfThenElse):
                split = split_threads(kernel, s.cond) if divides and arriving == kernel.threads \
                    else None
                inner = split if split is not None else (None, None) if divides else \
                    (arriving, arriving)
                visit(s.then_body, inner[0])
                visit(s.else_body, inner[1])
            else:
                for child in child_bodies(s):
                    visit(child, None if divides else arriving)

    visit(kernel.body, kernel.threads)


def verify_regions(kernel: ir.Kernel) -> None:
    """T.ws regions: not inside T.Parallel (a region is a range of the block's threads, not of
    a loop's iterations), and their named barriers (one per warpgroup, counted down from id 15)
    free of the kernel's own T.sync_threads ids."""
    from jtile.passes.plan_barriers import region_barrier_id

    def visit(body, loop, serial):
        for s in body:
            if is_region(s) and loop is not None:
                raise _fail(kernel, s.loc, f"T.ws inside T.Parallel (opened at {loop.loc}): a "
                            "region names warpgroups of the block; open it outside the loop")
            if isinstance(s, ir.SetMaxNreg) and serial is not None:
                raise _fail(kernel, s.loc, f"T.set_max_nreg in a T.ws region inside the loop at "
                            f"{serial.loc}: each warpgroup moves its registers once; ask in a "
                            "region before the loop")
            inner = s if isinstance(s, ir.ParallelFor) else loop
            inner_serial = s if isinstance(s, (ir.For, ir.While)) else serial
            for child in child_bodies(s):
                visit(child, inner, inner_serial)

    visit(kernel.body, None, None)
    found = regions(kernel.body)
    verify_register_requests(kernel, found)
    taken = {region_barrier_id(s.threads[0]): s for s in found}
    for s in statements(kernel.body):
        if isinstance(s, ir.SyncThreads) and s.named is not None and s.named[0] in taken:
            region = taken[s.named[0]]
            raise _fail(kernel, s.loc, f"T.sync_threads(barrier_id={s.named[0]}): the T.ws "
                        f"region at {region.loc} meets at named barrier {s.named[0]} (jtile "
                        "takes ids 15, 14, ... for warpgroups 0, 1, ... of T.ws regions); use "
                        f"an id below {min(taken)}")


def verify_register_requests(kernel: ir.Kernel, regions) -> None:
    """The T.set_max_nreg of T.ws regions: one per warpgroup, a decrease to at most and an
    increase to at least the launch share (what every thread holds at entry), and all of them
    together within one block's register file (an increase the file cannot meet waits
    forever)."""
    from jtile.passes.plan_barriers import WARPGROUP
    from jtile.passes.specialize_warps import REGISTER_FILE, launch_registers

    share = launch_registers(kernel.threads)
    asked: dict = {}
    for region in regions:
        first, count = region.threads
        for s in region.then_body:
            if not isinstance(s, ir.SetMaxNreg):
                continue
            if s.increase and s.count < share or not s.increase and s.count > share:
                raise _fail(kernel, s.loc, f"T.set_max_nreg({s.count}, {int(s.increase)}): a "
                            f"block of {kernel.threads} threads starts with {share} registers a "
                            f"thread, so an {'increase' if s.increase else 'decrease'} asks for "
                            f"{'at least' if s.increase else 'at most'} {share}")
            for group in range(first // WARPGROUP, (first + count) // WARPGROUP):
                if group in asked:
                    raise _fail(kernel, s.loc, f"warpgroup {group} asks for registers twice "
                                f"(T.set_max_nreg at {asked[group].loc} and here); ask once, at "
                                "the top of its first T.ws region")
                asked[group] = s
    if not asked:
        return
    groups = kernel.threads // WARPGROUP
    total = sum(WARPGROUP * (asked[g].count if g in asked else share) for g in range(groups))
    if total > REGISTER_FILE:
        counts = ", ".join(f"warpgroup {g}: {asked[g].count if g in asked else share}"
                           for g in range(groups))
        raise _fail(kernel, next(iter(asked.values())).loc,
                    f"T.set_max_nreg asks for {total} registers in all ({counts}; 128 threads "
                    f"each), more than the {REGISTER_FILE} of the register file: the increase "
                    "would wait forever. Lower the increases or decrease the others")


def verify_loop_indices_in_scope(kernel: ir.Kernel) -> None:
    """Every loop index is used inside its loop. A Python name rebound inside a
    `for ... in range(...)` / T.serial body (`acc = acc + X[k]`) holds the expression of the
    one traced iteration, and a later statement using it would read the index after the loop:
    refused with the way to accumulate."""

    def visit(body, bound: frozenset):
        for s in body:
            for e in statement_exprs(s):
                for x in sub_expressions(e):
                    if isinstance(x, ir.Var) and x.kind is ir.VarKind.LOOP and x not in bound:
                        raise _fail(kernel, s.loc, f"the loop index {x.name} is used after its "
                                    "loop: a Python name assigned inside a `for ... in "
                                    "range(...)` (T.serial) body holds the expression of its "
                                    "one traced iteration, not a running value. Accumulate "
                                    "into a T.alloc_var (`acc = T.alloc_var(dtype)`; then "
                                    "`acc = acc + ...` stores into it), or loop over a tuple "
                                    "for a Python loop")
            inner = bound
            if isinstance(s, ir.For):
                inner = bound | {s.var}
            elif isinstance(s, ir.ParallelFor):
                inner = bound | set(s.vars)
            for child in child_bodies(s):
                visit(child, inner)

    visit(kernel.body, frozenset())


def verify(kernel: ir.Kernel, aliases=None) -> ir.Kernel:
    aliases = dict(aliases or {})
    verify_loop_indices_in_scope(kernel)
    verify_inputs_read_only(kernel, tuple(aliases))
    verify_outputs_written(kernel, tuple(aliases.values()))
    verify_reducers(kernel)
    verify_no_tile_ops_in_parallel(kernel)
    verify_regions(kernel)
    verify_fragment_indexing(kernel)
    # Which thread-private buffers hold per-thread values: both checks below need it.
    tainted = thread_dependent_buffers(kernel) if kernel.thread_var is not None else None
    verify_uniform_tile_ops(kernel, tainted)
    verify_named_barrier_counts(kernel, tainted)
    verify_atomics_start_defined(kernel, tuple(aliases.values()))
    verify_async_copies_awaited(kernel)
    return kernel
