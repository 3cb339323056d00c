"""Printing Hopper's lowered statements: wgmma gemms, TMA loads and mbarrier stage rings.

Everything printed here was decided by the passes (lower_tile_ops, pipeline_loops,
specialize_warps) and sits in node fields; this module turns it into device-header calls.
"""

from __future__ import annotations

import dataclasses

from typing import NamedTuple

from jtile.codegen import TMA_SWIZZLE_SPAN_BYTES, TensorMapSpec
from jtile.codegen.wgmma_asm import ZERO_START
from jtile.ir import lowered as low
from jtile.ir import nodes as ir
from jtile.ir.walk import child_bodies
from jtile.ir.lowered import Major
from jtile.ir.types import DType
from jtile.passes.layout import padded
from jtile.passes.lower_tile_ops import TMA_DTYPE
from jtile.passes.wgmma_selection import panel_layout

# The CUtensorMapSwizzle value of each swizzle span.
TMA_SWIZZLE = {span: value for value, span in TMA_SWIZZLE_SPAN_BYTES.items()}
FULL = "jt_full_bar"
EMPTY = "jt_empty_bar"
# Named barrier ids: 0 is __syncthreads(), 1 the consumers' barrier (codegen/cuda.py); the
# consumer warpgroups taking turns at a ring's wgmma use TURN_BARRIER + their index.
TURN_BARRIER = 2


class RingPosition(NamedTuple):
    """Where the consumers' loop of the ring being printed stands (C expressions)."""
    counter: str    # the loop iteration
    stages: int
    position: str   # the ring iteration (counter plus earlier passes)
    extent: str     # the loop's trip count
    turns: int      # MbarrierPipeline.turns


# ----------------------------------------------------------------------------- tensor maps


def tensor_map_specs(em) -> tuple:
    """One TensorMapSpec per map the kernel's TMA loads and stores use
    (GeneratedKernel.tensor_maps)."""
    specs = []
    for param, use in em.kernel.attrs.get("tma_maps", ()):
        buf = em.kernel.params[param]
        panel = panel_layout(use.smem_buffer)
        dims = tuple(reversed(buf.shape))
        strides, stride = [], buf.dtype.bytes
        for d in dims[:-1]:
            stride *= d
            strides.append(stride)
        box = (panel.panel_columns,) + tuple(reversed(use.global_extents))[1:]
        if use.multicast > 1:  # each CTA of the cluster loads a slice of the rows
            box = tuple(n // use.multicast if i == use.row_coord else n
                        for i, n in enumerate(box))
        if em.batch > 1 and em.batched[param]:
            strides.append(stride * dims[-1])
            dims += (em.batch,)
            box += (1,)
        specs.append(TensorMapSpec(param=param, dtype=TMA_DTYPE[buf.dtype], dims=dims,
                                   strides=tuple(strides), box=box,
                                   swizzle=TMA_SWIZZLE[panel.span]))
    return tuple(specs)


def map_name(index: int) -> str:
    return f"jt_tma_map{index}"


def tensor_map_params(em) -> list:
    return [f"const __grid_constant__ jt::TensorMap {map_name(i)}"
            for i in range(len(em.kernel.attrs.get("tma_maps", ())))]


# ----------------------------------------------------------------------------- TMA loads


def _issue_loads(em, pipe: low.MbarrierPipeline, iteration: str, stage: str) -> None:
    """Expect the stage's bytes on its full barrier, then issue every box of every load."""
    em.line(f"jt::mbarrier_arrive_expect_tx(&{FULL}[{stage}], {pipe.transaction_bytes}u);")
    em.var_override[pipe.var] = f"({iteration})"
    for load in pipe.loads:
        buf = load.tile.dst.buffer
        base = f"reinterpret_cast<unsigned char*>({em.name(buf)}) + ({stage}) * {buf.nbytes}"
        param = em.kernel.attrs["tma_maps"][load.map_index][0]
        batch = em.batch > 1 and em.batched[param]
        for box in load.boxes:
            coords = [f"(int)({em.expr(c)})" for c in box.coords]
            offset = f"{box.smem_byte_offset}"
            call = f"jt::tma_load_{len(coords) + batch}d"
            mask = ""
            if load.multicast > 1:
                # This CTA's slice of the rows, landing in every CTA of the cluster.
                rows = buf.shape[0] // load.multicast
                coords[load.row_coord] = f"{coords[load.row_coord]} + (int)jt_cta_rank * {rows}"
                offset += f" + jt_cta_rank * {rows * panel_layout(buf).span}"
                call += "_multicast"
                mask = f"(unsigned short){(1 << load.multicast) - 1}, "
            if batch:
                coords.append("(int)jt_batch")
            em.line(f"{call}({base} + {offset}, &{map_name(load.map_index)}, &{FULL}[{stage}], "
                    f"{mask}{', '.join(coords)});")
    del em.var_override[pipe.var]


def issue_tma_boxes(em, call: str, map_index: int, smem: ir.Buffer, boxes) -> None:
    """`call` (a TMA store or reduce) of each box of `smem` (one per panel), then commit."""
    param = em.kernel.attrs["tma_maps"][map_index][0]
    batch = em.batch > 1 and em.batched[param]
    base = f"reinterpret_cast<const unsigned char*>({em.name(smem)})"
    for box in boxes:
        coords = [f"(int)({em.expr(c)})" for c in box.coords]
        if batch:
            coords.append("(int)jt_batch")
        em.line(f"jt::{call}_{len(coords)}d(&{map_name(map_index)}, "
                f"{base} + {box.smem_byte_offset}, {', '.join(coords)});")
    em.line("jt::tma_store_commit();")


def emit_tma_store(em, staged: low.StagedStore) -> None:
    """One thread stores the staged tile with its boxes (one per panel), then waits until the
    engine has read the tile (the stage's bytes may be reused after the next barrier; a block
    that exits keeps its shared memory until this thread is done)."""
    tid = em.name(em.kernel.thread_var)
    with em.block(f"if ({tid} == 0)"):
        issue_tma_boxes(em, "tma_store", staged.tma_map, staged.stage, staged.boxes)
        em.line("jt::tma_store_wait_read<0>();")


def emit_tma_reduce(em, s: low.TmaReduce) -> None:
    """Thread 0 (a consumer in a warp-specialised kernel) issues the reduce and goes on; the
    barriers plan_barriers marked `drain_bulk_reads` wait for its reads of the tile."""
    em.comment_loc(s.loc)
    tid = em.name(em.kernel.thread_var)
    with em.block(f"if ({tid} == 0)"):
        issue_tma_boxes(em, "tma_reduce_add", s.map_index, s.smem_buffer, s.boxes)


def declare_ring(em, pipe: low.MbarrierPipeline) -> None:
    em.line(f"__shared__ __align__(8) unsigned long long {FULL}[{pipe.stages}];")
    if pipe.producer_threads:
        em.line(f"__shared__ __align__(8) unsigned long long {EMPTY}[{pipe.stages}];")


def init_ring(em, pipe: low.MbarrierPipeline) -> None:
    """Run by thread 0 before the block-wide barrier that follows barrier initialisation."""
    with em.block(f"for (int s = 0; s < {pipe.stages}; ++s)"):
        em.line(f"jt::mbarrier_init(&{FULL}[s], 1);")
        if pipe.producer_threads:
            # One arrival per consumer warp of every CTA whose loads fill this stage.
            arrivals = pipe.consumer_threads // 32 * pipe.cluster_consumers
            em.line(f"jt::mbarrier_init(&{EMPTY}[s], {arrivals});")


def release_stage(em, stage: str) -> None:
    """One arrival per consumer warp on the stage's empty barrier, once the warp is done with
    it (each warp's own wgmma wait or last read precedes this in its program order)."""
    tid = em.name(em.kernel.thread_var)
    em.line("__syncwarp();")
    with em.block(f"if (({tid} & 31) == 0)"):
        if em.cluster_consumers > 1:
            # Every CTA of the cluster multicasts into this stage: free it in all of them.
            for rank in range(em.cluster_consumers):
                em.line(f"jt::mbarrier_arrive_cluster(&{EMPTY}[{stage}], {rank}u);")
        else:
            em.line(f"jt::mbarrier_arrive(&{EMPTY}[{stage}]);")


def emit_producer(em, pipe: low.MbarrierPipeline) -> None:
    """The producer warpgroup: one thread runs ahead through the ring, waiting only for the
    consumers to free each stage (empty barrier, the previous round's phase)."""
    tid = em.name(em.kernel.thread_var)
    with em.block(f"if ({tid} == {pipe.consumer_threads})"):
        for i in range(len(em.kernel.attrs.get("tma_maps", ()))):
            em.line(f"jt::tma_prefetch_map(&{map_name(i)});")
        if em.persistent:
            with em.tile_loop():
                _producer_ring(em, pipe)
        else:
            _producer_ring(em, pipe)


def _ring_base(em, pipe) -> str | None:
    """The variable counting `pipe`'s iterations before this pass, for a ring entered more
    than once: inside another loop (its own counter, `repeated_ring_counters`), or on a
    persistent kernel's tiles (`jt_ring`). Stages and barrier phases run on from one pass
    to the next; restarting them would wait on a phase an earlier pass already completed."""
    counter = em.ring_counters.get(pipe)
    if counter is not None:
        return counter
    return "jt_ring" if em.persistent else None


def _advance_ring(em, pipe, n: str) -> None:
    """After a pass of `n` iterations, the next pass's stages and phases start after it."""
    base = _ring_base(em, pipe)
    if base is not None:
        em.line(f"{base} += {n};")


def _ring_position(em, counter: str, pipe=None) -> str:
    """The ring iteration of loop iteration `counter`."""
    base = _ring_base(em, pipe)
    return f"({base} + {counter})" if base is not None else counter


def repeated_ring_counters(body) -> dict:
    """{ring: counter name} for the mbarrier rings nested in another loop."""
    counters = {}

    def visit(stmts, in_loop: bool):
        for s in stmts:
            if isinstance(s, low.MbarrierPipeline) and in_loop:
                counters[s] = f"jt_ring{len(counters)}"
            looping = in_loop or isinstance(s, (ir.For, ir.While, low.MbarrierPipeline,
                                                low.CpAsyncPipeline))
            for child in child_bodies(s):
                visit(child, looping)

    visit(body, False)
    return counters


def _producer_ring(em, pipe: low.MbarrierPipeline) -> None:
    n = em.expr(pipe.extent)
    with em.block(f"for (int k = 0; k < {n}; ++k)"):
        em.line(f"const int jt_it = {_ring_position(em, 'k', pipe)};")
        em.line(f"const int s = jt_it % {pipe.stages};")
        with em.block(f"if (jt_it >= {pipe.stages})"):
            em.line(f"jt::mbarrier_wait_parity(&{EMPTY}[s], ((jt_it / {pipe.stages}) & 1) ^ 1);")
        _issue_loads(em, pipe, "k", "s")
    _advance_ring(em, pipe, n)


def emit_pipeline(em, pipe: low.MbarrierPipeline) -> None:
    """The consumers' side of the ring (and, without a producer warpgroup, thread 0 issuing
    the loads S - 1 tiles ahead, after the barrier that frees the stage it refills)."""
    from jtile.codegen.pipeline import enter_ring, leave_ring

    counter, n = enter_ring(em, pipe)
    tid = em.name(em.kernel.thread_var)
    stages = pipe.stages
    buffers = [load.tile.dst.buffer for load in pipe.loads]
    if pipe.entry_barrier is not None:
        em.emit_barrier(pipe.entry_barrier)
    with em.block(""):
        if not pipe.producer_threads:
            with em.block(f"if ({tid} == 0)"):
                for s in range(stages - 1):
                    with em.block(f"if ({s} < {n})"):
                        _issue_loads(em, pipe, str(s),
                                     f"({_ring_position(em, str(s), pipe)} % {stages})")
        position = _ring_position(em, counter, pipe)
        if pipe.turns:
            # The first warpgroup takes the first turn: the last one hands it over, as after
            # each of its turns.
            with em.block(f"if ({n} > 0 && ({tid} >> 7) == {pipe.turns - 1})"):
                em.line(f"jt::named_barrier_arrive({TURN_BARRIER}, {2 * 128});")
        if pipe.overlap:
            _emit_overlapped(em, pipe, counter, position, n, buffers)
            _advance_ring(em, pipe, n)
            leave_ring(em, buffers)
            return
        if pipe.rolled:
            em.line("#pragma unroll 1")
        with em.block(f"for (int {counter} = 0; {counter} < {n}; ++{counter})"):
            stage = _enter_iteration(em, pipe, counter, position, n, buffers)
            if not pipe.producer_threads:
                # Every thread is past iteration counter - 1, so its stage may be refilled.
                em.line("__syncthreads();")
                ahead = f"{counter} + {stages - 1}"
                with em.block(f"if ({tid} == 0 && {ahead} < {n})"):
                    _issue_loads(em, pipe, ahead,
                                 f"({_ring_position(em, f'({ahead})', pipe)} % {stages})")
            em.body(pipe.body)
            if pipe.producer_threads and not pipe.deferred_release:
                release_stage(em, stage)
        if pipe.deferred_release:
            _wait_wgmmas(em, 0, dict.fromkeys(em.name(g.tile.c.buffer) for g in pipe.body
                                              if isinstance(g, low.WgmmaGemm)))
            if em.persistent:
                # The next tile's loads need the last stage back (a one-shot kernel ends here).
                with em.block(f"if ({n} > 0)"):
                    release_stage(em, f"({_ring_position(em, n, pipe)} - 1) % {stages}")
        _advance_ring(em, pipe, n)
    leave_ring(em, buffers)


def _enter_iteration(em, pipe: low.MbarrierPipeline, counter: str, position: str, n: str,
                     buffers) -> str:
    """Waits until the stage of ring iteration `position` is full and addresses the ring's
    tiles in it; returns the stage."""
    stages = pipe.stages
    stage = f"({position} % {stages})"
    em.line(f"jt::mbarrier_wait_parity(&{FULL}[{stage}], ({position} / {stages}) & 1);")
    _address_stage(em, buffers, stage)
    em.ring = RingPosition(counter, stages, position, n, pipe.turns)
    return stage


def _address_stage(em, buffers, stage: str) -> None:
    for b in buffers:
        em.stage_expr[b] = stage


def emit_wgmma_wait(em, s: low.WgmmaWait) -> None:
    """A wait passes/late_wgmma_waits placed before the statement that needs its groups."""
    _wait_wgmmas(em, s.pending, [em.name(b) for b in s.accumulators])


def _wait_wgmmas(em, pending: int, accumulators) -> None:
    """wgmma.wait_group `pending`, then the accumulators are read again only after it."""
    em.line(f"jt::wgmma_wait<{pending}>();")
    for acc in accumulators:
        em.line(f"jt::wgmma_hold({acc});")


@dataclasses.dataclass(frozen=True)
class _OverlapParts:
    """An overlapped ring body cut as passes/overlap_gemms.py's schedules name its parts."""

    head: tuple       # up to and including G1
    middle: tuple     # G1's element-wise work (the softmax)
    late: low.WgmmaGemm  # G2 inside the loop
    last_late: low.WgmmaGemm  # G2 of the last iteration, after the loop: it takes no turn
    fill: tuple       # writes G2's A fragment (P)
    scale: tuple      # touches G2's accumulator (O *= rescale)
    early_acc: list   # G1's accumulator, named
    late_acc: list    # G2's


def _overlap_parts(em, pipe: low.MbarrierPipeline) -> _OverlapParts:
    first, tail_start = pipe.overlap
    body = pipe.body
    fill, scale = (tuple(body[i] for i in part) for part in pipe.overlap_split)
    return _OverlapParts(body[:first + 1], body[first + 1:tail_start], body[-1],
                         dataclasses.replace(body[-1], pass_turn=False), fill, scale,
                         [em.name(body[first].tile.c.buffer)], [em.name(body[-1].tile.c.buffer)])


def _first_iteration(em, pipe, counter: str, position: str, n: str, buffers,
                     parts: _OverlapParts) -> None:
    """Iteration 0 of either schedule: G1, its wait, the softmax and P filled; G2 waits for
    the next iteration."""
    with em.block(""):
        em.line(f"const int {counter} = 0;")
        _enter_iteration(em, pipe, counter, position, n, buffers)
        em.body(parts.head)
        if pipe.turns:
            _pass_turn(em)  # later iterations hand it on after G2
        _wait_wgmmas(em, 0, parts.early_acc)
        em.body(parts.middle + parts.fill)


def _emit_overlapped(em, pipe: low.MbarrierPipeline, counter: str, position: str, n: str,
                     buffers) -> None:
    """The consumers' loop of a ring whose second gemm runs one iteration late, P in two
    register copies, or one (passes/overlap_gemms.py prints both schedules in its
    docstring)."""
    stages = pipe.stages
    parts = _overlap_parts(em, pipe)

    def release(iteration: str) -> None:
        release_stage(em, f"({_ring_position(em, iteration, pipe)} % {stages})")

    if pipe.overlap_copies == 1:
        _emit_overlapped_one_copy(em, pipe, counter, position, n, buffers, parts, release)
        return
    late = parts.late
    a_buffer = late.tile.a.buffer
    copies = (em.name(a_buffer), em.temp(em.name(a_buffer) + "_next"))
    em.line(f"{a_buffer.dtype.c_name} {copies[1]}[{em.layouts[a_buffer].num_registers}];")

    def with_copy(parity: int, emit) -> None:
        """Emits `emit()` with the A fragment named by its register copy `parity`."""
        saved = em.names[a_buffer]
        em.names[a_buffer] = copies[parity]
        try:
            emit()
        finally:
            em.names[a_buffer] = saved

    def late_gemm(stage: str, parity: int, gemm=late) -> None:
        _address_stage(em, buffers, stage)
        with_copy(parity, lambda: em.body((gemm,)))

    # Prologue, loop and epilogue under one test: a path that issues a late gemm always
    # reaches the epilogue's wait (ptxas serializes the wgmmas when it cannot see that).
    with em.block(f"if ({n} > 0)"):
        _first_iteration(em, pipe, counter, position, n, buffers, parts)
        em.line("#pragma unroll 1")
        with em.block(f"for (int {counter} = 1; {counter} < {n}; ++{counter})"):
            # The late gemm of two iterations back (issued before the last softmax) is done:
            # its stage is free and the accumulator may be rescaled before the next one joins
            # it. Nothing else is in flight here, so ptxas sees every accumulator access
            # ordered.
            _wait_wgmmas(em, 0, parts.late_acc)
            with em.block(f"if ({counter} >= 2)"):
                release(f"({counter} - 2)")
            em.body(parts.scale)
            for parity in (1, 0):
                with em.block(f"if (({counter} & 1) == {parity})" if parity else "else"):
                    stage = _enter_iteration(em, pipe, counter, position, n, buffers)
                    em.body(parts.head)
                    late_gemm(f"(({position} - 1) % {stages})", 1 - parity)
                    _wait_wgmmas(em, 1, parts.early_acc)
                    _address_stage(em, buffers, stage)
                    em.body(parts.middle)
                    with_copy(parity, lambda: em.body(parts.fill))
        _wait_wgmmas(em, 0, parts.late_acc)
        with em.block(f"if ({n} >= 2)"):
            release(f"({n} - 2)")
        em.body(parts.scale)
        last = f"({_ring_position(em, f'({n} - 1)', pipe)} % {stages})"
        for parity in (1, 0):
            with em.block(f"if ((({n} - 1) & 1) == {parity})" if parity else "else"):
                late_gemm(last, parity, parts.last_late)
        _wait_wgmmas(em, 0, parts.late_acc)
        release(f"({n} - 1)")


def _emit_overlapped_one_copy(em, pipe: low.MbarrierPipeline, counter: str, position: str,
                              n: str, buffers, parts: _OverlapParts, release) -> None:
    """The overlapped loop with one register copy of P: G2(j - 1) runs during iteration j's
    softmax and is waited for before P is refilled (passes/overlap_gemms.py's second
    schedule)."""
    stages = pipe.stages
    with em.block(f"if ({n} > 0)"):
        _first_iteration(em, pipe, counter, position, n, buffers, parts)
        em.line("#pragma unroll 1")
        with em.block(f"for (int {counter} = 1; {counter} < {n}; ++{counter})"):
            # Nothing is in flight here: O may be rescaled before G2(j - 1) joins it.
            em.body(parts.scale)
            stage = _enter_iteration(em, pipe, counter, position, n, buffers)
            em.body(parts.head)
            _address_stage(em, buffers, f"(({position} - 1) % {stages})")
            em.body((parts.late,))
            _wait_wgmmas(em, 1, parts.early_acc)
            _address_stage(em, buffers, stage)
            em.body(parts.middle)
            # G2(j - 1) has read P and V(j - 1): refill P, free the stage.
            _wait_wgmmas(em, 0, parts.late_acc)
            release(f"({counter} - 1)")
            em.body(parts.fill)
        em.body(parts.scale)
        _address_stage(em, buffers, f"({_ring_position(em, f'({n} - 1)', pipe)} % {stages})")
        em.body((parts.last_late,))
        _wait_wgmmas(em, 0, parts.late_acc)
        release(f"({n} - 1)")


# ----------------------------------------------------------------------------- wgmma


def _operand_offset(op: low.SmemOperand, mn: int, k: int) -> int:
    """Byte offset, from the start of its tile and before swizzling, of element (mn, k) of an
    operand region (which may start inside the tile: `op.origin`). Offsets are taken whole,
    not as sums, since a step along K may cross from one panel into the next."""
    row, col = op.origin
    if op.major is Major.K:
        return op.layout.byte_offset(row + mn, col + k)
    return op.layout.byte_offset(row + k, col + mn)


def _descriptor(em, op: low.SmemOperand, wg_index: str, wg_extent: int) -> str:
    """A descriptor for the operand block of warpgroup `wg_index` (its M or N offset is
    wg_index * wg_extent, a whole number of rows or of panels)."""
    buf = op.region.buffer
    base = f"reinterpret_cast<unsigned char*>({em.name(buf)})"
    stage = em.stage_expr.get(buf)
    if stage is not None:
        base += f" + ({stage}) * {buf.nbytes}"
    if buf.ndim > 2:   # the tile `buf[i, :, :]` of a buffer with leading dimensions
        lead = em.leading_index(buf, [em.expr(s) for s in op.region.starts[:-2]])
        base += f" + ({lead}) * {op.layout.tile_bytes}"
    row_moves, col_moves = op.moves
    if row_moves is not None:
        base += f" + ({em.expr(row_moves)}) * {op.layout.span}"
    if col_moves is not None:
        base += (f" + (({em.expr(col_moves)}) / {op.layout.panel_columns}) * "
                 f"{op.layout.panel_bytes}")
    # A warpgroup's block starts wg_extent rows (K-major) or whole panels (MN-major) on.
    step = _operand_offset(op, wg_extent, 0) - _operand_offset(op, 0, 0)
    if step:
        base += f" + {wg_index} * {step}"
    return f"jt::wgmma_desc({base}, {op.lbo}u, {op.sbo}u, {op.mode}u)"


def emit_wgmma_gemm(em, g: low.WgmmaGemm) -> None:
    s = g.tile
    em.comment_loc(g.loc)
    tid = em.tile_thread()
    acc = em.name(s.c.buffer)
    k = s.a.squeezed_shape()[0 if s.transpose_a else 1]
    row_blocks = g.m_per_wg // 64
    col_blocks = g.n_per_wg // g.inst_n
    with em.block(""):
        em.line(f"const int jt_wg = {tid} >> 7;")
        em.line(f"const int jt_wg_m = jt_wg % {g.wgs_along_m}; (void)jt_wg_m;")
        em.line(f"const int jt_wg_n = jt_wg / {g.wgs_along_m}; (void)jt_wg_n;")
        if g.a is not None:
            em.line(f"const unsigned long long jt_da = "
                    f"{_descriptor(em, g.a, 'jt_wg_m', g.m_per_wg)};")
        em.line(f"const unsigned long long jt_db = {_descriptor(em, g.b, 'jt_wg_n', g.n_per_wg)};")
        if g.a is None:
            # Every A fragment is packed before the fence, so the wgmmas issue back to back
            # (registers written between them would make ptxas fence each one).
            af = em.name(s.a.buffer)
            for kk in range(k // g.k_step):
                for mi in range(row_blocks):
                    base = 8 * (kk + (padded(k) // 16) * mi)
                    em.line(f"const unsigned jt_a{kk}_{mi}[4] = {{"
                            + ", ".join(f"jt::pack2({af}[{base + 2 * q}], {af}[{base + 2 * q + 1}])"
                                        for q in range(4)) + "};")
        if g.wait_turn:
            # Wait for this warpgroup's turn: the previous one has issued its wgmmas.
            em.line(f"jt::named_barrier_sync({TURN_BARRIER} + jt_wg, {2 * 128});")
        em.line("jt::wgmma_fence();")
        for kk in range(k // g.k_step):
            # The first k-step of a gemm from zero takes the wrapper that only writes d.
            zero_start = s.clear_accum and kk == 0
            for mi in range(row_blocks):
                if g.a is None:
                    a_arg = f"jt_a{kk}_{mi}"
                else:
                    a_arg = f"jt_da + {_operand_offset(g.a, mi * 64, kk * g.k_step) >> 4}"
                for ni in range(col_blocks):
                    b_off = _operand_offset(g.b, ni * g.inst_n, kk * g.k_step) >> 4
                    reg = mi * (padded(g.n_per_wg) // 2) + ni * (g.inst_n // 2)
                    d = f"&{acc}[{reg}]"
                    if s.c.dtype is DType.float16:  # .f16 accumulators: pairs of halves
                        d = f"reinterpret_cast<unsigned*>({d})"
                    if zero_start:
                        em.line(f"{g.function}{ZERO_START}({d}, {a_arg}, jt_db + {b_off});")
                    else:
                        em.line(f"{g.function}({d}, {a_arg}, jt_db + {b_off}, 1);")
        if not g.commit:
            return  # a later wgmma of the same loop body commits this one with it
        em.line("jt::wgmma_commit();")
        if g.pass_turn:
            _pass_turn(em)
        if g.wait is not None:
            # With groups still pending the accumulator may still be written: no hold yet.
            _wait_wgmmas(em, g.wait, [acc] if g.wait == 0 else [])
        if g.release_previous_stage:
            counter, stages, position = em.ring.counter, em.ring.stages, em.ring.position
            # Every wgmma of iteration counter - 1 has finished: its stage is free.
            with em.block(f"if ({counter} > 0)"):
                release_stage(em, f"({position} - 1) % {stages}")


def _pass_turn(em) -> None:
    """Hand the turn to the next warpgroup. The last warpgroup keeps its final turn, so every
    barrier phase has exactly one waiting and one arriving warpgroup when the loop ends."""
    ring = em.ring
    last = ring.turns - 1
    wg = f"({em.name(em.kernel.thread_var)} >> 7)"
    with em.block(f"if ({ring.counter} + 1 < {ring.extent} || {wg} != {last})"):
        em.line(f"jt::named_barrier_arrive({TURN_BARRIER} + ({wg} + 1) % {ring.turns}, "
                f"{2 * 128});")


def wgmma_functions(kernel) -> list:
    from jtile.ir.walk import statements

    names = []
    for s in statements(kernel.body):
        if isinstance(s, low.WgmmaGemm) and s.function not in names:
            names.append(s.function)
        if isinstance(s, low.WgmmaGemm) and s.tile.clear_accum and \
                s.function + ZERO_START not in names:
            names.append(s.function + ZERO_START)
    return names


def uses_async_proxy(kernel) -> bool:
    """Whether shared memory written by ordinary stores may next be read by wgmma or TMA."""
    return bool(kernel.attrs.get("panel_buffers"))

