"""Shared-memory planning: pipelining stages, swizzles, reduction scratch, offsets, limits.

Decides, in `kernel.attrs["shared"]` (a SharedPlan):
- how many copies each tile a stage ring fills ahead gets (the rings' `stages`, decided by
  `pipeline_loops`);
- which shared tiles feed mma.sync through ldmatrix and are stored XOR-swizzled (16-byte
  chunks permuted per row) so the 8 rows one ldmatrix phase reads fall in distinct banks
  (wgmma operands use the TMA panel layout `lower_tile_ops` chose instead);
- scratch for cross-warp reductions;
- every buffer's byte offset (128-byte aligned): buffers whose lifetimes (in top-level
  statements) do not meet share bytes; the total is checked against the target's limit.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from jtile.errors import JtileTargetError
from jtile.ir import nodes as ir
from jtile.ir.types import MemorySpace
from jtile.ir.walk import (deep_buffers_read, deep_buffers_written, is_region, regions,
                          statements)
from jtile.passes.wgmma_selection import panel_layout

ALIGNMENT = 128
REDUCE_SCRATCH_BYTES_PER_THREAD = 8  # one float64 slot per thread and output register


@dataclass
class SharedPlan:
    offsets: dict = field(default_factory=dict)        # Buffer -> byte offset in jt_smem
    stages: dict = field(default_factory=dict)         # Buffer -> number of pipeline copies
    swizzled: set = field(default_factory=set)         # Buffers stored XOR-swizzled
    staging: dict = field(default_factory=dict)        # Copy -> shared Buffer it stores through
    tma_staged: dict = field(default_factory=dict)     # staging Buffer TMA stores -> (param,
                                                       # TmaBox per panel)
    panel_rings: set = field(default_factory=set)      # TMA staging Buffers holding two
                                                       # panels of their tile at a time (or
                                                       # its one panel)
    scratch_offset: int = 0
    scratch_bytes: int = 0
    dynamic_bytes: int = 0
    static_bytes: int = 0


# Tiles TMA writes with a 128-byte swizzle (and wgmma reads through descriptors) must start
# on the swizzle pattern's 1024-byte period.
PANEL_ALIGNMENT = 1024


def _align(n: int, alignment: int = ALIGNMENT) -> int:
    return (n + alignment - 1) // alignment * alignment


def plan_stage_rings(kernel: ir.Kernel, plan: SharedPlan) -> None:
    """Every tile a stage ring fills ahead (TMA loads or cp.async copies) gets one copy per
    stage."""
    from jtile.ir.lowered import CpAsyncPipeline, MbarrierPipeline

    for s in statements(kernel.body):
        if isinstance(s, MbarrierPipeline):
            for load in s.loads:
                plan.stages[load.tile.dst.buffer] = s.stages
        elif isinstance(s, CpAsyncPipeline):
            for copy in s.copies:
                plan.stages[copy.dst.buffer] = s.stages


def _swizzlable(buf: ir.Buffer) -> bool:
    """Rows of 2^k 16-byte chunks, at least two: what the XOR swizzle permutes."""
    inner_bytes = buf.shape[-1] * buf.dtype.bytes
    return buf.space.is_shared and inner_bytes % 32 == 0 and \
        (inner_bytes // 16) & (inner_bytes // 16 - 1) == 0


def plan_swizzles(kernel: ir.Kernel, plan: SharedPlan) -> None:
    """Shared tiles that ldmatrix reads for mma.sync are stored XOR-swizzled, and so is any
    other shared tile the kernel asks to swizzle (T.annotate_layout with a swizzled layout,
    as TileLang kernels do for their output tiles): every access goes through the same
    address map, so the layout changes bank conflicts, never values."""
    from jtile.ir.lowered import MmaSyncGemm

    for s in statements(kernel.body):
        if not isinstance(s, MmaSyncGemm):
            continue
        for region in (s.tile.a, s.tile.b):
            if _swizzlable(region.buffer):
                plan.swizzled.add(region.buffer)
    panels = kernel.attrs.get("panel_buffers", frozenset())
    for buf in kernel.allocations:
        annotation = getattr(buf, "layout_annotation", None)
        if annotation is not None and annotation[0] != "linear" and buf not in panels \
                and buf.ndim >= 2 and _swizzlable(buf):
            plan.swizzled.add(buf)


def _top_level_copies(body):
    """(top-level statement index, copy) for the copies the block runs once: at the kernel's
    top level or under its `T.If`/`T.Else`s (whose conditions are block-uniform around a
    cooperative copy, `verify_uniform_tile_ops`), so a barrier beside each is reached by every
    thread. A grouped GEMM stores its full tiles under such a condition. (Not inside a T.ws
    region: only its threads run it, and the staging's barriers and TMA issue would need them
    alone.)"""
    def walk(stmts):
        for s in stmts:
            if isinstance(s, ir.Copy):
                yield s
            elif isinstance(s, ir.IfThenElse) and not is_region(s):
                yield from walk(s.then_body)
                yield from walk(s.else_body or ())

    for index, s in enumerate(body):
        for copy in walk((s,)):
            yield index, copy


def plan_store_staging(kernel: ir.Kernel, plan: SharedPlan, target=None) -> dict:
    """Stores of a whole fragment to global memory whose threads hold fewer than 16
    contiguous bytes (the mma accumulator holds pairs) go through a shared tile, so global
    memory sees full 16-byte vectors; on sm_90+ the TMA engine writes a tile it
    can address (`tma_store_boxes`) from the TMA panel layout. Returns {staging buffer: top-level
    statement index}."""
    layouts = kernel.attrs.get("layouts", {})
    staged = {}
    for index, s in _top_level_copies(kernel.body):
        frag, dst = s.src.buffer, s.dst.buffer
        if frag.space is not MemorySpace.FRAGMENT or frag.reducer_op is not None \
                or dst.space is not MemorySpace.GLOBAL or frag.ndim != 2 \
                or tuple(s.src.extents) != tuple(frag.shape) \
                or s.dst.extents[-1] != frag.shape[-1]:
            continue
        layout = layouts[frag]
        contiguous = layout.contiguous_bits(1)
        # A warp whose 32 lanes continue along the row after each thread's run already
        # writes whole contiguous segments; only scattered stores gain from staging.
        lanes = tuple(layout.thread_bits[:5])
        coalesced = lanes == tuple((1, contiguous + b) for b in range(5))
        row_bytes = frag.shape[-1] * dst.dtype.bytes
        chunks = row_bytes // 16
        if coalesced or (1 << contiguous) * dst.dtype.bytes >= 16 or row_bytes % 32 \
                or chunks & (chunks - 1):
            continue
        stage = ir.Buffer(f"{frag.name}_out", tuple(frag.shape), dst.dtype,
                          MemorySpace.SHARED_DYN, s.loc)
        store = tma_store_boxes(kernel, s, stage, target) if target is not None else None
        if store is not None and kernel.attrs.get("persistent"):
            ring = panel_ring(stage, layout, kernel.attrs.get("panel_slots", 2))
            if ring is None:
                store = None
            else:
                stage = ring
                plan.panel_rings.add(stage)
        plan.staging[s] = stage
        if store is not None:
            plan.tma_staged[stage] = store
        else:
            plan.swizzled.add(stage)
        staged[stage] = index
    return staged


def panel_ring(stage: ir.Buffer, layout, slots: int = 2) -> "ir.Buffer | None":
    """The staging tile of a persistent kernel's TMA-stored epilogue: `slots` (two, or one when
    two do not fit beside the stage ring: `plan_shared_memory`) of the full tile's column
    panels, written and stored one panel at a time in turn (plan_barriers, tile_copy), so the
    engine reads one panel while the threads write the next, the ring of stages keeps its
    depth beside it, and the last panels' reads overlap the next tile's main loop. None when a
    thread's registers do not each sit in one panel (the panel a register belongs to must not
    depend on the thread)."""
    panels = panel_layout(stage)
    if panels is None or stage.ndim != 2:
        return None
    low = panels.panel_columns.bit_length() - 1
    if any(bit is not None and bit[0] == 1 and bit[1] >= low for bit in layout.thread_bits):
        return None
    slots = min(slots, panels.cols // panels.panel_columns)
    return ir.Buffer(stage.name, (stage.shape[0], slots * panels.panel_columns), stage.dtype,
                     stage.space, stage.loc)


def tma_store_boxes(kernel: ir.Kernel, s: ir.Copy, stage: ir.Buffer, target):
    """`(parameter index, TmaBox per panel)` when the TMA engine should store `stage` (in its
    panel layout) to the copy's global tile, else None: on (JTILE_TMA_STORE, default on), sm_90+, a
    destination of rank 4 at most (a vmap batch may add one: a map has at most 5), and a tile
    TMA can address (`lower_tile_ops.tma_boxes`, the rules of TMA loads)."""
    from jtile import config
    from jtile.passes.lower_tile_ops import tma_boxes

    if not (config.tma_stores() and target.has_tma) or s.dst.buffer.ndim > 4:
        return None
    return tma_boxes(s.dst, stage, kernel.params)


def reduce_scratch_bytes(kernel: ir.Kernel) -> int:
    """Scratch for combining partial results across warps (reductions and reducers)."""
    from jtile.codegen.reduce import accumulator_dtype, reduce_lane_bits

    layouts = kernel.attrs.get("layouts", {})
    need = 0
    # Thread indices of a block of 384 threads run to 511 in the layouts (powers of 2).
    threads = 1 << max(kernel.threads - 1, 1).bit_length()
    for s in statements(kernel.body):
        if isinstance(s, ir.Reduce):
            src = layouts[s.src]
            dst_regs = layouts[s.dst].num_registers
            if any(t >= 5 for t, _ in src.thread_dims(s.dim)):
                # One slot per output register for each thread whose reduced lane bits are 0.
                writers = threads >> len(reduce_lane_bits(src, s.dim))
                need = max(need, writers * dst_regs * accumulator_dtype(s.dst.dtype).bytes)
        elif isinstance(s, ir.FinalizeReducer):
            need = max(need, (kernel.threads // 32) * s.reducer.size *
                       REDUCE_SCRATCH_BYTES_PER_THREAD)
    return need


def live_intervals(kernel: ir.Kernel, buffers) -> dict:
    """Buffer -> (first, last) index of the top-level statements that use it. A use anywhere
    inside a top-level loop or branch counts for that whole statement, so a buffer is live
    across every iteration of a loop that touches it."""
    intervals = {}
    for index, top in enumerate(kernel.body):
        used = deep_buffers_read(top) | deep_buffers_written(top)
        for buf in used:
            if buf in buffers:
                first, _ = intervals.get(buf, (index, index))
                intervals[buf] = (first, index)
    return intervals


def place_buffers(sizes: dict, intervals: dict, alignment: int = ALIGNMENT,
                  panels=frozenset()) -> dict:
    """Byte offsets where buffers live at the same time never overlap and buffers whose lives
    do not meet may share bytes (largest placed first, lowest fit). Each starts on
    `alignment` bytes, the TMA/wgmma tiles in `panels` on their swizzle's 1024."""
    offsets: dict = {}
    never = (-1, -1)
    for buf in sorted(sizes, key=lambda b: (-sizes[b], b.name)):
        align = PANEL_ALIGNMENT if buf in panels else alignment
        life = intervals.get(buf, never)
        busy = sorted((offsets[o], offsets[o] + sizes[o]) for o in offsets
                      if life == never or intervals.get(o, never) == never
                      or not (life[1] < intervals[o][0] or intervals[o][1] < life[0]))
        offset = 0
        for start, end in busy:
            if offset + sizes[buf] <= start:
                break
            offset = max(offset, _align(end, align))
        offsets[buf] = offset
    return offsets


def _producer_rings_live_from_entry(kernel: ir.Kernel, intervals: dict,
                                    persistent: bool) -> None:
    """A producer warpgroup starts filling its ring at kernel entry, while the consumers still
    run the statements before the loop: ring tiles must not share bytes with anything those
    statements use. In a persistent kernel it fills the next tile's stages while the consumers
    run the statements after the loop too: the ring lives through the whole body."""
    from jtile.ir.lowered import MbarrierPipeline

    last = len(kernel.body) - 1
    for s in kernel.body:
        if isinstance(s, MbarrierPipeline) and s.producer_threads:
            for load in s.loads:
                buf = load.tile.dst.buffer
                if buf in intervals:
                    intervals[buf] = (0, last if persistent else intervals[buf][1])


def warn_unpipelined(kernel: ir.Kernel, target) -> None:
    """A T.Pipelined loop asked for stages but `pipeline_loops` found nothing it can issue
    ahead: say so instead of silently running it as a plain loop."""
    import warnings

    from jtile.errors import JtilePerformanceWarning

    # Loops holding T.ws regions, and a region's own loops, are the kernel's to pipeline
    # through its mbarriers, as in TileLang: jtile runs them as written.
    in_regions = {id(x) for r in regions(kernel.body) for x in statements(r.then_body)}
    for s in statements(kernel.body):
        if isinstance(s, ir.For) and s.kind is ir.LoopKind.PIPELINED and s.num_stages > 1 \
                and not regions(s.body) and id(s) not in in_regions:
            why = (f"{target.arch} has no asynchronous copies (cp.async needs sm_80)"
                   if not target.has_cp_async else
                   "no T.copy in it moves a global tile into a shared tile that only that copy "
                   "writes in the loop, with the same dtype and addresses that depend on loop "
                   "and block indices and on inputs the kernel does not write only")
            warnings.warn(JtilePerformanceWarning(
                f"{kernel.name} ({kernel.loc}): {s.loc}: T.Pipelined(num_stages="
                f"{s.num_stages}) runs as a plain loop: {why}"), stacklevel=2)


def _persistent_if_staged(kernel: ir.Kernel, target) -> ir.Kernel:
    """The compiler's own choice of a persistent tile loop (schedule_tiles) stands only when
    the trial plan sends every staged store through TMA panel slots beside the full ring; else
    the kernel runs one block per tile."""
    import warnings

    attrs = {k: v for k, v in kernel.attrs.items() if k != "persistent_if_staged"}
    trial = kernel.replace(attrs=attrs)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")   # the real plan below warns once
            planned = plan_shared_memory(trial, target)
    except JtileTargetError:
        planned = None
    if planned is not None and planned.attrs.get("persistent"):
        plan = planned.attrs["shared"]
        if plan.staging and all(stage in plan.panel_rings for stage in plan.staging.values()):
            return trial
    attrs.pop("persistent", None)
    return kernel.replace(attrs=attrs)


def plan_shared_memory(kernel: ir.Kernel, target) -> ir.Kernel:
    if kernel.attrs.get("persistent_if_staged"):
        kernel = _persistent_if_staged(kernel, target)
    entry = kernel
    plan = SharedPlan()
    plan_stage_rings(kernel, plan)
    warn_unpipelined(kernel, target)
    plan_swizzles(kernel, plan)
    staged = plan_store_staging(kernel, plan, target)
    kernel = kernel.replace(allocations=tuple(kernel.allocations) + tuple(staged))
    if plan.tma_staged:
        # TMA stores read the stage in the panel layout, 1024-byte aligned like TMA loads.
        panels = kernel.attrs.get("panel_buffers", frozenset()) | frozenset(plan.tma_staged)
        kernel = kernel.replace(attrs=dict(kernel.attrs, panel_buffers=panels))
    static = 0
    rows = []
    sizes = {}
    for buf in kernel.allocations:
        if not buf.space.is_shared:
            continue
        sizes[buf] = buf.nbytes * plan.stages.get(buf, 1)
        rows.append(f"{buf.name} {buf.dtype}{list(buf.shape)}"
                    f"{' x' + str(plan.stages[buf]) + ' stages' if buf in plan.stages else ''}"
                    f" = {sizes[buf]} bytes")
        if buf.space is MemorySpace.SHARED:
            static += sizes[buf]
    intervals = live_intervals(kernel, sizes)
    intervals.update({stage: (index, index) for stage, index in staged.items()})
    panels = kernel.attrs.get("panel_buffers", frozenset())
    plan.scratch_bytes = reduce_scratch_bytes(kernel)
    barriers = sum(8 * b.shape[0] for b in kernel.allocations if b.space is MemorySpace.BARRIER)
    barriers += sum(16 * s.stages for s in statements(kernel.body)
                    if type(s).__name__ == "MbarrierPipeline")
    limit = target.max_shared_memory_per_block

    def place(persistent: bool, buffers: dict) -> int:
        lives = dict(intervals)
        _producer_rings_live_from_entry(kernel, lives, persistent)
        for ring in plan.panel_rings:
            # The engine still reads the last panels while the next tile runs.
            lives[ring] = (0, len(kernel.body) - 1)
        plan.offsets = place_buffers(buffers, lives, ALIGNMENT, panels)
        offset = max((_align(plan.offsets[b] + buffers[b]) for b in buffers), default=0)
        plan.scratch_offset = offset
        return _align(offset + plan.scratch_bytes) if plan.scratch_bytes else offset

    offset = place(kernel.attrs.get("persistent", False), sizes)
    if kernel.attrs.get("persistent") and offset + barriers > limit and \
            entry.attrs.get("panel_slots", 2) > 1 and \
            any(r.shape[-1] > panel_layout(r).panel_columns for r in plan.panel_rings):
        # Two panel slots do not fit beside the stage ring: one each (the threads write a
        # panel once the engine has read the last; warned about once, above).
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return plan_shared_memory(entry.replace(attrs=dict(entry.attrs, panel_slots=1)),
                                      target)
    if kernel.attrs.get("persistent") and offset + barriers > limit:
        # The ring cannot stay resident beside the staged stores: store the fragments
        # directly (the producer keeps loading the next tile meanwhile) ...
        unstaged = {b: n for b, n in sizes.items() if b not in staged}
        offset = place(True, unstaged)
        if offset + barriers <= limit:
            plan.staging = {}
            plan.swizzled -= set(staged)
            plan.tma_staged, plan.panel_rings = {}, set()
            kernel = kernel.replace(allocations=tuple(b for b in kernel.allocations
                                                      if b not in staged))
        else:
            # ... or, when even that does not fit, run one block per tile.
            kernel = kernel.replace(attrs={k: v for k, v in kernel.attrs.items()
                                           if k != "persistent"})
            offset = place(False, sizes)
    if plan.scratch_bytes:
        rows.append(f"reduction scratch = {plan.scratch_bytes} bytes")
    plan.dynamic_bytes = offset
    plan.static_bytes = static
    total = offset + barriers
    if total > limit:
        listing = "; ".join(rows)
        raise JtileTargetError(
            f"{kernel.name} ({kernel.loc}): shared memory needs {total} bytes "
            f"({listing}{'; barriers = ' + str(barriers) + ' bytes' if barriers else ''}) but "
            f"{target.arch} allows {limit} bytes per block; use smaller tiles or fewer stages")
    if static > target.static_shared_memory_limit:
        raise JtileTargetError(
            f"{kernel.name} ({kernel.loc}): static shared memory (scope \"shared\") needs "
            f"{static} bytes but at most {target.static_shared_memory_limit} bytes are allowed; "
            "use the default scope \"shared.dyn\" for large tiles")
    return kernel.replace(attrs=dict(kernel.attrs, shared=plan))
