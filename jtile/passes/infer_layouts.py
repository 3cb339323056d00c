"""Fragment layout inference.

Fragments named outside T.Parallel are held whole by every thread (TileLang's floating
fragments); `T.gemm` fixes its accumulator's layout (the mma.sync or wgmma one) and, when A
or B is a fragment, the operand's (the instruction's operand layout, or for FMA gemms what
each thread's accumulator elements read); `T.Parallel` loops give every fragment indexed by
all the loop's variables the same layout and the fragments indexed by some of them, or through
a bit-exact index map, the layout carried through; reductions project their source. What
stays undetermined gets the row-major element-wise layout. The result is stored in
`kernel.attrs["layouts"]` (Buffer -> Layout) and `kernel.attrs["mma"]` (Gemm -> MmaTiling).
"""

from __future__ import annotations

import dataclasses
import functools

from typing import Optional

from jtile.errors import JtileTraceError
from jtile.ir import nodes as ir
from jtile.ir.affine import aligned_vector_width
from jtile.ir.types import DType, MemorySpace
from jtile.ir.walk import (deep_buffers_read, deep_buffers_written, is_region, regions,
                          statements, sub_expressions)
from jtile.passes.fragment_access import (UNIFORM, BitIndex, access_layout, access_rule_broken,
                                          access_sources, floating_fragments,
                                          fragment_accesses, held_locally, is_tiled_fragment,
                                          lift_layout, loop_accesses, replicated_layout)
from jtile.passes.index_bits import is_loop_bit
from jtile.passes.layout import (Layout, MmaTiling, choose_mma_tiling, default_layout,
                                 is_power_of_two, log2, padded,
                                 padded_shape)
from jtile.passes.wgmma_selection import wgmma_tiling

VECTOR_BYTES = 16


def _fail(kernel, loc, message):
    where = f"{loc}: " if loc is not None else ""
    return JtileTraceError(f"{kernel.name} ({kernel.loc}): {where}{message}")


def loop_driver(loop: ir.ParallelFor, layouts: dict):
    """The fragment whose layout spreads the loop: one indexed by all loop vars in order,
    preferring one the loop stores to (every thread holding a copy of an element must run the
    iteration that stores it, so a stored fragment's layout is the only one that can run the
    loop; the fragments it reads need only be held by the running thread)."""
    full = tuple(range(len(loop.vars)))
    accesses = [a for a in loop_accesses(loop)
                if a.dims == full and padded_shape(a.buffer.shape) == tuple(loop.extents)]
    candidates = [a.buffer for a in accesses]
    for buf in [a.buffer for a in accesses if a.store] + candidates:
        if buf in layouts:
            return buf
    return candidates[0] if candidates else None


def loop_layout(loop: ir.ParallelFor, layouts: dict) -> Optional[Layout]:
    """Which thread runs which iteration of `loop` (a layout over its extents), or None for a
    plain strided loop.

    The layout of a fragment indexed by all the loop's variables in order, else one lifted
    from the first laid-out fragment the loop reads (a loop that only reads row vectors runs
    each row where its vector element lives), else None.
    """
    driver = loop_driver(loop, layouts)
    if driver is not None and driver in layouts:
        return layouts[driver]
    if not all(is_power_of_two(e) for e in loop.extents):
        return None
    for a in loop_accesses(loop):
        if a.buffer in layouts and access_rule_broken(a.dims) is None and \
                any(d is not UNIFORM for d in a.dims):
            lifted = lift_layout(layouts[a.buffer], a.sources, tuple(loop.extents))
            if lifted is not None:
                return lifted
    return None


def warn_gemm_on_cuda_cores(kernel, gemm, target) -> None:
    """A T.gemm whose inputs have a tensor-core path jtile cannot take here computes on the
    CUDA cores: the same sums (exact float32 for tfloat32), far slower. Say so. 8-bit inputs
    (float8, int8) run on wgmma only, whose conditions the message lists; tfloat32 has no
    tensor-core path in jtile (TileLang rounds it to TF32 on tensor cores)."""
    import warnings

    from jtile.errors import JtilePerformanceWarning

    if gemm.a.dtype is DType.tfloat32:
        why = ("runs on the CUDA cores (exact float32 FMAs, at least as accurate as TF32 tensor "
               "cores, far slower): jtile has no TF32 tensor-core path; cast the tiles to "
               "bfloat16 or float16 for tensor cores")
    elif gemm.a.dtype.bits == 8:
        products = "int32 multiply-adds" if gemm.a.dtype.is_int else "float32 FMAs"
        why = (f"runs on the CUDA cores ({products}), not the tensor cores: jtile's 8-bit "
               f"tensor-core path is wgmma, which needs sm_90a (the target is "
               f"{getattr(target, 'arch', target)}), A and B K-major (A (M, K); B (N, K) with "
               "transpose_B=True) in whole shared tiles with 32-, 64- or 128-byte multiple "
               "rows, and a warpgroup multiple of threads")
    else:
        return
    warnings.warn(JtilePerformanceWarning(
        f"{kernel.name} ({kernel.loc}): {gemm.loc}: T.gemm on {gemm.a.dtype} inputs {why}"),
        stacklevel=3)


def warn_no_wgmma(kernel, gemm, count: int) -> None:
    """One T.gemm that wgmma cannot run sends every other gemm of the kernel, which could, to
    mma.sync too (their fragment layouts must meet): say which, rather than run slower
    without a word."""
    import warnings

    from jtile.errors import JtilePerformanceWarning

    m, n = gemm.c.buffer.shape[-2:] if gemm.c.buffer.ndim >= 2 else (gemm.c.buffer.shape[0], 1)
    warnings.warn(JtilePerformanceWarning(
        f"{kernel.name} ({kernel.loc}): {gemm.loc}: T.gemm into a {m}x{n} "
        f"{gemm.c.dtype} accumulator cannot run on wgmma ({kernel.threads} threads; wgmma "
        "needs 64 accumulator rows per warpgroup, B in shared memory, A in shared memory or "
        "a whole register fragment that is not transposed), so "
        f"all {count} gemms of the kernel run on mma.sync"), stacklevel=3)


def warn_sliced_operands(kernel, gemms, target) -> None:
    """wgmma reads a shared operand through a descriptor: a whole tile (a buffer, or
    `buf[i, :, :]` of one with leading dimensions) or a box of it on its core-matrix and
    k-step grid (`wgmma_region`). A gemm on sm_90a whose shared operand is another part of a
    buffer runs on mma.sync; say so, and what wgmma needs, rather than run slower without a
    word."""
    import warnings

    from jtile.errors import JtilePerformanceWarning
    from jtile.passes.wgmma_selection import WGMMA_INPUTS, operand_major, wgmma_region

    if not getattr(target, "has_wgmma", False):
        return
    for gemm in gemms:
        if gemm.a.dtype not in WGMMA_INPUTS:
            continue
        sliced = [r for r, which in ((gemm.a, "a"), (gemm.b, "b")) if r.buffer.space.is_shared
                  and not wgmma_region(r, operand_major(gemm, which))]
        if sliced:
            r = sliced[0]
            warnings.warn(JtilePerformanceWarning(
                f"{kernel.name} ({kernel.loc}): {gemm.loc}: T.gemm reads {r.buffer.name}"
                f"{list(r.extents)}, a part of {r.buffer.describe()} that wgmma cannot address "
                "(it reads a whole tile of the last two dimensions, or a box of one starting "
                "and ending on 8-row groups and whole k-steps, at static offsets), so the "
                "kernel's gemms run on mma.sync. Read `buf[i, :, :]`, the whole buffer, or such "
                "a box"), stacklevel=3)
            return


def require_wgmma(kernel, gemms, on_wgmma: dict, target, candidates=None) -> None:
    """T.wgmma_gemm is compiled on wgmma or refused, as in TileLang (never mma.sync).
    `candidates`: each tensor-core gemm's own wgmma tiling or None, to name the one that
    cannot run there."""
    from jtile.errors import JtileTargetError

    forced = [s for s in gemms if s.wgmma_only]
    if not forced or target is None:
        return
    if not getattr(target, "has_wgmma", False):
        raise JtileTargetError(
            f"{kernel.name} ({kernel.loc}): {forced[0].loc}: T.wgmma_gemm needs wgmma, which "
            f"{target.arch} does not have (sm_90a does); use T.gemm, which runs on the "
            "target's own tensor-core instructions")
    for s in forced:
        if s not in on_wgmma:
            candidates = candidates or {}
            culprit = s if candidates.get(s, None) is None else next(
                (g for g, t in candidates.items() if t is None), s)
            because = "" if culprit is s else (
                f" because the T.gemm at {culprit.loc} cannot, and the kernel's tensor-core "
                "gemms run all on wgmma or all on mma.sync")
            raise _fail(kernel, s.loc,
                        f"T.wgmma_gemm cannot run on wgmma here{because}. wgmma needs a whole "
                        "warpgroup "
                        "(128 threads) per 64 accumulator rows, float16 / bfloat16 / float8 / "
                        "int8 inputs, B in shared memory, A in shared memory or a whole register "
                        "fragment that is not transposed, shared operands it can address (whole "
                        "tiles, or boxes of them on 8-row groups and whole k-steps), and every "
                        "tensor-core gemm of the kernel on wgmma too (their layouts meet). Use "
                        "T.gemm to let jtile run it on mma.sync")


def _uses(kernel):
    reduced_rows, a_operands = set(), set()
    for s in statements(kernel.body):
        if isinstance(s, ir.Reduce):
            reduced_rows.add(s.src)
        if isinstance(s, ir.Gemm) and s.a.buffer.space is MemorySpace.FRAGMENT:
            a_operands.add(s.a.buffer)
    return reduced_rows, a_operands


def infer_layouts(kernel: ir.Kernel, target=None) -> ir.Kernel:
    """Every fragment's layout (and every gemm's tiling), over the threads that use it: the
    block's, or those of the T.ws regions (of one size) that use it."""
    found = regions(kernel.body)
    if not found:
        return _infer_layouts(kernel, target)
    layouts, tilings = {}, {}
    for threads, (body, fragments) in thread_scopes(kernel, found).items():
        allocations = tuple(b for b in kernel.allocations
                            if not is_tiled_fragment(b) or b in fragments)
        scoped = _infer_layouts(kernel.replace(body=body, threads=threads,
                                               allocations=allocations), target)
        layouts.update(scoped.attrs["layouts"])
        tilings.update(scoped.attrs["mma"])
    return kernel.replace(attrs=dict(kernel.attrs, layouts=layouts, mma=tilings))


def _without_regions(body) -> tuple:
    out = []
    for s in body:
        if is_region(s):
            continue
        if isinstance(s, ir.IfThenElse):
            s = dataclasses.replace(s, then_body=_without_regions(s.then_body),
                                    else_body=_without_regions(s.else_body))
        elif isinstance(s, (ir.For, ir.While)):
            s = dataclasses.replace(s, body=_without_regions(s.body))
        out.append(s)
    return tuple(out)


def thread_scopes(kernel: ir.Kernel, found: list) -> dict:
    """{thread count: (statements, tiled fragments they use)}: the block's statements outside
    the T.ws regions `found`, and the bodies of the regions of each size. A fragment used in
    two scopes is refused: its threads hold it in one layout."""
    scopes = {kernel.threads: [_without_regions(kernel.body), None]}
    for region in found:
        scope = scopes.setdefault(region.threads[1], [(), None])
        scope[0] = scope[0] + tuple(region.then_body)
    owner: dict = {}
    for threads, scope in scopes.items():
        used = set()
        for s in statements(scope[0]):
            used |= {b for b in deep_buffers_read(s) | deep_buffers_written(s)
                     if is_tiled_fragment(b)}
        scope[1] = used
        for b in used:
            if owner.setdefault(b, threads) != threads:
                where = [f"{n} threads" + (" (the block)" if n == kernel.threads else
                                            " (T.ws regions)") for n in (owner[b], threads)]
                raise _fail(kernel, b.loc, f"fragment {b.describe()} is used by "
                            f"{where[0]} and by {where[1]}: a fragment is held by the threads "
                            "that use it, in one layout; use it inside T.ws regions of one "
                            "size only, or outside them only")
    return {threads: tuple(scope) for threads, scope in scopes.items()}


def _infer_layouts(kernel: ir.Kernel, target=None) -> ir.Kernel:
    layouts: dict = {}
    tilings: dict = {}
    threads = kernel.threads
    fragments = [b for b in kernel.allocations if is_tiled_fragment(b)]
    fragments += fragment_views(kernel)
    reduced, a_operands = _uses(kernel)
    all_stmts = list(statements(kernel.body))

    # 0. Fragments named element by element outside T.Parallel (TileLang's floating
    # fragments, `if mask[k]:`): every thread runs that code, so every thread holds all of
    # each. Fixed first, as TileLang does, so the tile ops around them meet this layout.
    floating = floating_fragments(kernel)
    for buf in floating:
        layouts[buf] = replicated_layout(tuple(buf.shape), threads)

    # 1. gemm accumulators and register A operands. On sm_90a every tensor-core gemm of the
    # kernel runs on wgmma when all of them can (their layouts meet: a softmax'd accumulator
    # feeds the next gemm's A), otherwise all on mma.sync.
    gemms = [s for s in all_stmts if isinstance(s, ir.Gemm)]

    def full_row(s) -> bool:
        # Rows whole inside a warp(group): accumulators reduced along rows, and accumulators
        # shaped like a register A operand (softmax(S) becomes P for the next gemm).
        return s.c.buffer in reduced or any(tuple(a.shape) == tuple(s.c.buffer.shape)
                                            for a in a_operands)

    wgmma = {s: wgmma_tiling(s, threads, target, full_row(s))
             for s in gemms if s.a.dtype.bits <= 16 and s.a.dtype.is_float
             or s.a.dtype.bits == 8 and s.a.dtype.is_int}
    candidates = dict(wgmma)
    if wgmma and any(t is None for t in wgmma.values()):
        blocked = next(s for s, t in wgmma.items() if t is None)
        if any(t is not None for t in wgmma.values()):
            warn_no_wgmma(kernel, blocked, len(wgmma))
        else:
            warn_sliced_operands(kernel, gemms, target)
        wgmma = {}
    require_wgmma(kernel, gemms, wgmma, target, candidates)
    for s in gemms:
        m, n = s.c.squeezed_shape()
        fast = s.a.dtype.bits == 16
        full_row = bool(a_operands) or s.c.buffer in reduced
        if s in wgmma:
            tiling = wgmma[s]
            tilings[s] = tiling
            _assign(kernel, layouts, s.c.buffer, tiling.accumulator_layout(threads), s.loc,
                    "T.gemm accumulator")
            if s.a.buffer.space is MemorySpace.FRAGMENT:
                _assign(kernel, layouts, s.a.buffer,
                        tiling.operand_a_layout(threads, s.a.buffer.shape[1]), s.loc,
                        "T.gemm A operand")
            continue
        if target is not None:
            warn_gemm_on_cuda_cores(kernel, s, target)
        tiling = choose_mma_tiling(m, n, threads // 32, full_row, s.policy) if fast else None
        if fast and tiling is None and full_row:
            tiling = choose_mma_tiling(m, n, threads // 32, False, s.policy)
        if fast and tiling is None:
            policy = "" if s.policy == "square" else f" with policy {s.policy}"
            raise _fail(kernel, s.loc, f"T.gemm: a {m}x{n} accumulator cannot be split into "
                        f"m16n8 tiles over {threads // 32} warps{policy}; use tile sizes that "
                        "are multiples of 16 x 8 per warp")
        c_layout = tiling.accumulator_layout(threads) if tiling else \
            default_layout((m, n), threads, 1)
        tilings[s] = tiling
        _assign(kernel, layouts, s.c.buffer, c_layout, s.loc, "T.gemm accumulator")
        if tiling and s.a.buffer.space is MemorySpace.FRAGMENT:
            if s.transpose_a:
                raise _fail(kernel, s.loc, "T.gemm: a fragment A cannot be transposed; store it "
                            "untransposed")
            k = s.a.squeezed_shape()[1]
            _assign(kernel, layouts, s.a.buffer, tiling.operand_a_layout(threads, k), s.loc,
                    "T.gemm A operand")
        if tiling and s.b.buffer.space is MemorySpace.FRAGMENT:
            k = s.a.squeezed_shape()[0 if s.transpose_a else 1]
            _assign(kernel, layouts, s.b.buffer,
                    tiling.operand_b_layout(threads, k, s.transpose_b), s.loc, "T.gemm B operand")
        if tiling is None:
            for operand, role in ((s.a, "A"), (s.b, "B")):
                if operand.buffer.space is MemorySpace.FRAGMENT:
                    _assign(kernel, layouts, operand.buffer,
                            fma_operand_layout(c_layout, s, role), s.loc, f"T.gemm {role} operand")

    # Accumulators whose rows meet through row vectors need equal row projections.
    _share_row_tilings(kernel, all_stmts, layouts, tilings, threads)

    # 2. propagate through loops, reductions and fragment copies; default what is left.
    uniformly_indexed = functools.cache(lambda: _uniformly_indexed(all_stmts))
    while True:
        changed = True
        while changed:
            changed = _propagate(kernel, all_stmts, layouts, uniformly_indexed)
        missing = [b for b in fragments if b not in layouts]
        if not missing:
            break
        # The largest first: tiles spread loops, and vectors then follow them by projection.
        buf = max(missing, key=lambda b: (b.ndim, b.size))
        layouts[buf] = _unconstrained_layout(kernel, buf, all_stmts, threads)

    _check_loops(kernel, all_stmts, layouts)
    _check_floating_reductions(kernel, all_stmts, layouts, floating)
    attrs = dict(kernel.attrs, layouts=layouts, mma=tilings)
    return kernel.replace(attrs=attrs)


def fma_operand_layout(c_layout: Layout, gemm: ir.Gemm, role: str) -> Layout:
    """The layout of a fragment operand of a gemm computed in FMAs: each thread holds, along
    all of K, the rows of A (role "A") or the columns of B (role "B") of the accumulator
    elements it holds, as a T.Parallel over C reading A[i, k] or B[k, j] would need."""
    region = gemm.a if role == "A" else gemm.b
    transposed = gemm.transpose_a if role == "A" else gemm.transpose_b
    own = 0 if role == "A" else 1
    dims = (own, UNIFORM) if (role == "A") != transposed else (UNIFORM, own)
    shape = tuple(region.buffer.shape)
    sources = access_sources(c_layout.shape, shape, dims, (None, None))
    return access_layout(c_layout, shape, dims, sources)


def _floating_loc(kernel, buf):
    from jtile.passes.fragment_access import floating_accesses

    return next(s.loc for s, b, _ in floating_accesses(kernel) if b is buf)


def _check_floating_reductions(kernel, all_stmts, layouts, floating) -> None:
    """A reduction into a fragment every thread holds whole must leave every row's result in
    every thread: its source may spread only the reduced dimension over the threads."""
    for s in all_stmts:
        if not (isinstance(s, ir.Reduce) and s.dst in floating and is_tiled_fragment(s.src)):
            continue
        keep = tuple(d for d in range(s.src.ndim) if d != s.dim)
        if any(b is not None for b in layouts[s.src].project(keep).thread_bits):
            raise _fail(kernel, s.loc, f"T.reduce_{s.op} into {s.dst.describe()}, which is "
                        f"named element by element outside T.Parallel (at "
                        f"{_floating_loc(kernel, s.dst)}) so every thread must hold all of it, "
                        f"but {s.src.describe()} is laid out "
                        f"({layouts[s.src].describe()}) with its kept dimensions spread over "
                        "the threads, so each thread gets only its own rows; reduce into a "
                        "second fragment and read that one inside T.Parallel, or store the "
                        "result to shared memory and read it there")


def _assign(kernel, layouts, buf, layout: Layout, loc, why) -> bool:
    old = layouts.get(buf)
    if old is None:
        layouts[buf] = layout
        return True
    if old != layout:
        raise _fail(kernel, loc, f"{why}: fragment {buf.describe()} is needed in two different "
                    f"layouts ({old.describe()} and {layout.describe()}); copy it into a "
                    "second fragment with T.copy through shared memory")
    return False


def _row_groups(all_stmts) -> list:
    """Sets of fragments whose rows meet: a reduction along the last dimension and its
    vector; every fragment a T.Parallel loop indexes with its first variable along their
    first dimension (the accumulator and its row vectors); fragment copies."""
    parent: dict = {}

    def find(b):
        while parent.setdefault(b, b) is not b:
            b = parent[b]
        return b

    def union(a, b):
        parent[find(a)] = find(b)

    for s in all_stmts:
        if isinstance(s, ir.Reduce) and is_tiled_fragment(s.src) and is_tiled_fragment(s.dst) \
                and s.src.ndim == 2 and s.dim == 1:
            union(s.src, s.dst)
        elif isinstance(s, ir.ParallelFor):
            rows = [buf for buf, dims, _ in fragment_accesses(s) if dims and dims[0] == 0]
            for buf in rows[1:]:
                union(rows[0], buf)
        elif isinstance(s, ir.Copy) and is_tiled_fragment(s.src.buffer) and \
                is_tiled_fragment(s.dst.buffer):
            union(s.src.buffer, s.dst.buffer)
    groups: dict = {}
    for b in list(parent):
        groups.setdefault(find(b), set()).add(b)
    return list(groups.values())


def _share_row_tilings(kernel, all_stmts, layouts, tilings, threads) -> None:
    """Gives mma.sync accumulators whose rows meet (attention-style: the running max and
    sum of one product scale the rows of another) one warp grid, so that their row vectors'
    layouts agree; the grid is the one with the least shared-memory traffic that tiles all.
    Accumulators that already agree, or that no common grid tiles, are left alone."""
    by_acc: dict = {}
    for g, tiling in tilings.items():
        if isinstance(tiling, MmaTiling):
            by_acc.setdefault(g.c.buffer, []).append(g)
    warps = threads // 32
    for group in _row_groups(all_stmts):
        accs = [b for b in by_acc if b in group]
        if len(accs) < 2 or any(b not in layouts for b in accs):
            continue
        if len({layouts[b].project((0,)).thread_bits for b in accs}) == 1:
            continue
        shapes = {b: by_acc[b][0].c.squeezed_shape() for b in accs}
        best = None
        for wm_bits in range(log2(warps) + 1):
            wm, wn = 1 << wm_bits, warps >> wm_bits
            if any(m % (16 * wm) or n % (8 * wn) for m, n in shapes.values()):
                continue
            cost = sum(m // wm + n // wn for m, n in shapes.values())
            if best is None or cost < best[0]:
                best = (cost, wm, wn)
        if best is None:
            continue
        _, wm, wn = best
        for b in accs:
            m, n = shapes[b]
            tiling = MmaTiling(m, n, wm, wn)
            layouts[b] = tiling.accumulator_layout(threads)
            for g in by_acc[b]:
                tilings[g] = tiling
                if g.a.buffer.space is MemorySpace.FRAGMENT:
                    layouts[g.a.buffer] = tiling.operand_a_layout(threads, g.a.squeezed_shape()[1])
                if g.b.buffer.space is MemorySpace.FRAGMENT:
                    layouts[g.b.buffer] = tiling.operand_b_layout(
                        threads, g.a.squeezed_shape()[0 if g.transpose_a else 1], g.transpose_b)


def _unconstrained_layout(kernel, buf: ir.Buffer, all_stmts, threads: int) -> Layout:
    """The row-major element-wise layout, except that dimensions some T.Parallel loop indexes
    uniformly (`v[0]`, `x[i, k]` with k a serial counter) stay whole in every thread's
    registers, so every iteration finds those elements locally."""
    in_registers = set()
    for s in all_stmts:
        if isinstance(s, ir.ParallelFor):
            for b, dims, _ in fragment_accesses(s):
                if b is buf:
                    # Index bits that are constant or uniform name elements whatever the
                    # thread: keep those dimensions whole in registers.
                    in_registers |= {k for k, d in enumerate(dims) if d is UNIFORM or (
                        isinstance(d, BitIndex) and not all(is_loop_bit(x) for x in d.bits))}
    spread = [k for k in range(buf.ndim) if k not in in_registers]
    widest = memory_vector_width(buf, all_stmts)
    if not in_registers:
        vector = max(1, min(widest, buf.shape[-1]))
        return default_layout(tuple(buf.shape), threads, vector)
    shape = tuple(buf.shape[k] for k in spread)
    vector = max(1, min(widest, shape[-1])) if shape else 1
    inner = default_layout(shape, threads, vector)

    def remap(bit):
        return None if bit is None else (spread[bit[0]], bit[1])

    regs = [(k, b) for k in reversed(sorted(in_registers))
            for b in range(log2(padded(buf.shape[k])))]
    regs += [remap(b) for b in inner.reg_bits]
    return Layout(padded_shape(buf.shape), tuple(remap(b) for b in inner.thread_bits),
                  tuple(regs))


def memory_vector_width(buf: ir.Buffer, all_stmts) -> int:
    """How many consecutive elements of `buf`'s last dimension each thread should hold so its
    moves to and from memory are as wide as they can be: 16 bytes, narrowed to what every
    `T.copy` between `buf` and global or shared memory can move as one aligned vector (a
    row whose length or start is odd moves element by element). Where the moves are that
    narrow, consecutive threads holding consecutive elements keeps a warp's accesses
    coalesced, where 16-byte slots per thread would scatter them over 16x the sectors."""
    width = VECTOR_BYTES // buf.dtype.bytes
    copied = False
    for s in all_stmts:
        if not isinstance(s, ir.Copy):
            continue
        for side, other in ((s.src, s.dst), (s.dst, s.src)):
            memory = other.buffer
            if side.buffer is not buf or memory.space not in _ADDRESSED or \
                    other.extents[-1] == 1:
                continue
            copied = True
            width = aligned_vector_width(
                other, min(width, VECTOR_BYTES // max(memory.dtype.bytes, buf.dtype.bytes)))
    if not copied and any(_moves_elementwise(s, buf) for s in all_stmts
                          if isinstance(s, ir.ParallelFor)):
        return 1
    return max(width, 1)


def _moves_elementwise(loop: ir.ParallelFor, buf: ir.Buffer) -> bool:
    """Whether a statement of `loop` stores `buf` to global memory, or loads global memory
    into `buf`, one element per iteration along the loop's last variable (T.Parallel moves
    elements one at a time; the layout decides whether a warp's elements are adjacent)."""
    last = loop.vars[-1]

    def along_last(indices) -> bool:
        return bool(indices) and any(x is last for x in sub_expressions(indices[-1]))

    for s in statements(loop.body):
        if not isinstance(s, ir.Store):
            continue
        loaded = [x for x in sub_expressions(s.value) if isinstance(x, ir.Load)]
        if s.buffer is buf and any(ld.buffer.space is MemorySpace.GLOBAL and
                                   along_last(ld.indices) for ld in loaded):
            return True
        if s.buffer.space is MemorySpace.GLOBAL and along_last(s.indices) and \
                any(ld.buffer is buf for ld in loaded):
            return True
    return False


_ADDRESSED = (MemorySpace.GLOBAL, MemorySpace.SHARED, MemorySpace.SHARED_DYN)


def fragment_views(kernel) -> list:
    """T.reshape views of fragments: the root's registers under another shape."""
    return [v for v in kernel.attrs.get("views", ())
            if v.space is MemorySpace.FRAGMENT and is_tiled_fragment(v.view_of)]


def _propagate(kernel, all_stmts, layouts, uniformly_indexed) -> bool:
    """One pass of layout propagation; `uniformly_indexed()` is `_uniformly_indexed` of the
    statements, computed once when first needed."""
    changed = False
    for view in fragment_views(kernel):
        # A view and its fragment hold the same registers: one layout, re-split by shape.
        root = view.view_of
        if root in layouts and view not in layouts:
            layouts[view] = layouts[root].reshape(tuple(view.shape))
            changed = True
        elif view in layouts and root not in layouts:
            layouts[root] = layouts[view].reshape(tuple(root.shape))
            changed = True
    for s in all_stmts:
        if isinstance(s, ir.ParallelFor):
            base = loop_layout(s, layouts)
            if base is None:
                continue
            for a in loop_accesses(s):
                if a.buffer in layouts or access_rule_broken(a.dims) is not None or \
                        any(d is UNIFORM for d in a.dims) or _uniform_bits(a.dims):
                    continue
                layouts[a.buffer] = access_layout(base, tuple(a.buffer.shape), a.dims,
                                                  a.sources)
                changed = True
        elif isinstance(s, ir.Reduce) and is_tiled_fragment(s.src) and s.src in layouts \
                and s.dst not in layouts:
            keep = tuple(d for d in range(s.src.ndim) if d != s.dim)
            projected = layouts[s.src].project(keep)
            if not keep:  # a vector reduced to its (1,) result
                projected = dataclasses.replace(projected, shape=tuple(s.dst.shape))
            layouts[s.dst] = projected
            changed = True
        elif isinstance(s, ir.Reduce) and is_tiled_fragment(s.src) and s.dst in layouts \
                and s.src not in layouts and s.src.ndim > 1:
            # The reduction's source takes the vector's threads, its reduced dimension the rest.
            keep = tuple(d for d in range(s.src.ndim) if d != s.dim)
            sources = access_sources(tuple(s.src.shape), tuple(s.dst.shape), keep, keep)
            lifted = lift_layout(layouts[s.dst], sources, tuple(s.src.shape))
            if lifted is not None:
                if s.dim in uniformly_indexed().get(s.src, ()):
                    # Read elsewhere at one index of the reduced dimension for all threads
                    # (`lse[k, i]`, `T.copy(lse[k, :], row)`): every thread must hold that
                    # whole dimension, so it goes to registers, not to the replicas' threads.
                    lifted = _dimension_in_registers(lifted, s.dim)
                layouts[s.src] = lifted
                changed = True
        elif isinstance(s, ir.Copy):
            src, dst = s.src.buffer, s.dst.buffer
            if is_tiled_fragment(src) and is_tiled_fragment(dst) and src.shape == dst.shape:
                if src in layouts and dst not in layouts:
                    layouts[dst] = layouts[src]
                    changed = True
                elif dst in layouts and src not in layouts:
                    layouts[src] = layouts[dst]
                    changed = True
    return changed


def _uniformly_indexed(all_stmts) -> dict:
    """Fragment -> the dimensions some statement indexes with one value for every thread: a
    T.Parallel index that does not depend on the loop's variables, or a fragment copy of a
    part one element thick there (`T.copy(lse[k, :], row)`)."""
    out: dict = {}
    for s in all_stmts:
        if isinstance(s, ir.ParallelFor):
            for buf, dims, _ in fragment_accesses(s):
                out.setdefault(buf, set()).update(d for d, x in enumerate(dims) if x is UNIFORM)
        elif isinstance(s, ir.Copy):
            for region in (s.src, s.dst):
                if is_tiled_fragment(region.buffer):
                    out.setdefault(region.buffer, set()).update(
                        d for d, (e, n) in enumerate(zip(region.extents, region.buffer.shape))
                        if e == 1 and n > 1)
    return out


def _dimension_in_registers(layout: Layout, dim: int) -> Layout:
    """`layout` with the thread bits that select dimension `dim` moved to registers (those
    threads then hold replicas)."""
    moved = tuple(b for b in layout.thread_bits if b is not None and b[0] == dim)
    threads = tuple(None if b in moved else b for b in layout.thread_bits)
    return dataclasses.replace(layout, thread_bits=threads, reg_bits=layout.reg_bits + moved)


def _uniform_bits(dims) -> bool:
    return any(isinstance(d, BitIndex) and not all(is_loop_bit(x) or isinstance(x, str)
                                                   for x in d.bits) for d in dims)


def _check_loops(kernel, all_stmts, layouts) -> None:
    """Every fragment a loop touches must be held by the threads that run those iterations."""
    floating = set(floating_fragments(kernel))
    for s in all_stmts:
        if not isinstance(s, ir.ParallelFor):
            continue
        accesses = fragment_accesses(s)
        if not accesses:
            continue
        base = loop_layout(s, layouts)
        where = f"T.Parallel{tuple(s.extents)} (at {s.loc})"
        for a in loop_accesses(s):
            buf, stmt = a.buffer, a.stmt
            rule = access_rule_broken(a.dims)
            if rule is not None:
                raise _fail(kernel, stmt.loc, f"fragment {buf.describe()} in {where}: {rule}")
            if held_locally(base, layouts[buf], a.sources, a.store):
                continue
            filled = [x.buffer for x in loop_accesses(s) if x.store and x.buffer in floating]
            if filled:
                other = buf if buf is not filled[0] else loop_driver(s, layouts)
                spread = f", but it also touches {other.describe()}, laid out over the " \
                    f"threads as {layouts[other].describe()}" if other is not None and \
                    other is not filled[0] else ", but the loop is spread over the threads"
                raise _fail(kernel, stmt.loc, f"{where} stores into fragment "
                            f"{filled[0].describe()}, which is named element by element outside "
                            "T.Parallel, so every thread holds all of it and must run every "
                            f"iteration that stores it{spread}; a thread would leave the other "
                            "threads' copies stale. Fill it in a T.Parallel loop that touches "
                            "only it and memory (through a shared buffer), or with T.copy")
            if base is None:
                names = ", ".join(sorted({b.name for b, _, _ in accesses}))
                raise _fail(kernel, s.loc, f"T.Parallel{tuple(s.extents)} touches fragments "
                            f"({names}) but no layout puts the elements each iteration touches "
                            f"in one thread: {buf.name} is spread over threads (layout "
                            f"{layouts[buf].describe()}) along a dimension the loop indexes "
                            "with a uniform index, or the loop's extents are not powers of 2; "
                            "copy the fragment to a shared buffer and read that instead")
            driver = loop_driver(s, layouts)
            first = driver.describe() if driver is not None else \
                f"the loop (laid out as {base.describe()})"
            raise _fail(kernel, stmt.loc, f"fragments {first} and {buf.describe()} are laid out "
                        f"differently over threads (layouts {base.describe()} vs "
                        f"{layouts[buf].describe()}), so one {where} cannot touch both; copy "
                        "one through shared memory")
