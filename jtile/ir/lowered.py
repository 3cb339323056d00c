"""The lowered level of the jtile IR: hardware instructions chosen by `lower_tile_ops` and the
passes after it, printed one-to-one by the CUDA emitter.

Each node keeps the tile-level statement it implements (`tile`), so walkers, barrier planning
and error messages still see which buffers it reads and writes and which user line it came
from. Analysis results (swizzles, descriptor strides, stages) are fields of these nodes, never
side tables.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Optional

from jtile.ir import nodes as ir
from jtile.ir.nodes import NO_LOC, SourceLoc, Stmt


class Major(enum.Enum):
    """Which dimension of a wgmma operand is contiguous in shared memory."""

    K = "k"     # the reduction dimension (A not transposed, B transposed)
    MN = "mn"   # the M or N dimension (needs a 16-bit type: wgmma transposes only those)


SWIZZLE_MODE = {128: 1, 64: 2, 32: 3}  # wgmma descriptor's swizzle field per span in bytes


@dataclass(frozen=True)
class PanelLayout:
    """A row-major shared tile (rows, cols) stored as column panels `span` bytes wide: panel p
    holds columns [p * span / eb, (p + 1) * span / eb) of every row, rows `span` bytes apart,
    16-byte chunks XOR-swizzled by address bits 7.. (PTX Swizzle<log2(span/16), 4, 3>). This is
    what TMA writes with CU_TENSOR_MAP_SWIZZLE_{span}B and what wgmma descriptors read."""

    rows: int
    cols: int
    element_bytes: int
    span: int  # 32, 64 or 128

    @property
    def panel_columns(self) -> int:
        return self.span // self.element_bytes

    @property
    def panel_bytes(self) -> int:
        return self.rows * self.span

    @property
    def tile_bytes(self) -> int:
        return self.rows * self.cols * self.element_bytes

    def byte_offset(self, row: int, col: int) -> int:
        """Unswizzled byte offset of element (row, col) (swizzling is applied on addresses)."""
        panel, within = divmod(col, self.panel_columns)
        return panel * self.panel_bytes + row * self.span + within * self.element_bytes


@dataclass(frozen=True, eq=False)
class SmemOperand:
    """A wgmma operand read from shared memory through a matrix descriptor."""

    region: ir.Region
    layout: PanelLayout
    major: Major
    lbo: int        # leading dimension byte offset (PTX "Major-ness supported by strides")
    sbo: int        # stride dimension byte offset
    origin: tuple = (0, 0)   # (row, column) of the region's first element in its tile
    # The parts of that start that move with loop indices (Exprs or None): whole 8-row groups
    # (or k-steps) and whole panels, added to the descriptor's base at run time.
    moves: tuple = (None, None)

    @property
    def mode(self) -> int:
        return SWIZZLE_MODE[self.layout.span]


@dataclass(frozen=True, eq=False)
class WgmmaGemm(Stmt):
    """T.gemm as warpgroup MMAs (sm_90a): each consumer warpgroup owns an (m_per_wg, n_per_wg)
    block of C, issued as m64 x inst_n x k_step instructions, then committed and waited on.

    a is None when A comes from registers (`a_fragment`), in the wgmma A-operand layout.
    """

    tile: ir.Gemm
    a: Optional[SmemOperand]
    b: SmemOperand
    m_per_wg: int
    n_per_wg: int
    wgs_along_m: int
    wgs_along_n: int
    inst_n: int
    k_step: int
    function: str           # the wrapper printed beside the kernel (codegen/wgmma_asm.py)
    # commit_group after issuing (False: a later wgmma of the same loop body commits these
    # with its own), then wait_group `wait` (None: no wait; a later wait covers the group).
    commit: bool = True
    wait: Optional[int] = 0
    # In a ring with deferred release: this wgmma's wait is the first of the iteration to
    # cover every wgmma of the previous one, so the previous stage is freed right after it.
    release_previous_stage: bool = False
    loc: SourceLoc = NO_LOC
    # The consumer warpgroups take turns issuing their gemms (ping-pong, see
    # `MbarrierPipeline.turns`): each waits for its turn before issuing this wgmma
    # (`wait_turn`) and hands the turn on once the group of a `pass_turn` wgmma is committed
    # (the same one, or, overlapped, the iteration's second gemm).
    wait_turn: bool = False
    pass_turn: bool = False


@dataclass(frozen=True, eq=False)
class WgmmaWait(Stmt):
    """wgmma.wait_group `pending`: the wgmma groups committed before the last `pending` ones
    have finished, so their `accumulators` (and register A operands) may be used again."""

    pending: int
    accumulators: tuple = ()   # Buffers the finished groups wrote
    loc: SourceLoc = NO_LOC


@dataclass(frozen=True)
class TmaBox:
    """One cp.async.bulk.tensor of a TmaLoad or a TMA-stored StagedStore: the bytes of the
    shared tile it moves and its coordinates in the tensor."""

    smem_byte_offset: int
    coords: tuple           # Exprs, innermost dimension first


@dataclass(frozen=True, eq=False)
class TmaLoad(Stmt):
    """A global->shared T.copy done by the TMA engine into a PanelLayout tile: one box per
    panel, completing on the stage's full barrier."""

    tile: ir.Copy
    map_index: int          # which CUtensorMap parameter (GeneratedKernel.tensor_maps)
    boxes: tuple            # TmaBox per panel
    bytes: int              # transaction bytes the barrier must expect
    loc: SourceLoc = NO_LOC
    # Cluster multicast: the `multicast` CTAs of a thread-block cluster all load this box;
    # CTA r issues its rows [r * rows / multicast, (r + 1) * rows / multicast) to every one of
    # them, so the tile leaves L2 once per cluster. `row_coord` is the index of the rows
    # among the coordinates (innermost first).
    multicast: int = 1
    row_coord: int = 1

    # What its tensor map describes (jtile.codegen.hopper.tensor_map_specs).
    @property
    def smem_buffer(self) -> ir.Buffer:
        return self.tile.dst.buffer

    @property
    def global_extents(self) -> tuple:
        return tuple(self.tile.src.extents)


@dataclass(frozen=True, eq=False)
class TmaReduce(Stmt):
    """A tile T.atomic_add of a shared PanelLayout tile into a global tile done by the TMA
    engine (cp.reduce.async.bulk.tensor .add, one box per panel): one thread issues it after the
    barrier that orders the tile's stores, and it runs on while the threads go on. The tile's
    bytes are read asynchronously: a barrier with `drain_bulk_reads` must pass before anything
    overwrites them (plan_barriers), and the block waits for the reads before it exits."""

    tile: ir.AtomicAdd
    map_index: int          # which CUtensorMap parameter (GeneratedKernel.tensor_maps)
    boxes: tuple            # TmaBox per panel
    loc: SourceLoc = NO_LOC

    # What its tensor map describes (jtile.codegen.hopper.tensor_map_specs), as for TmaLoad.
    @property
    def smem_buffer(self) -> ir.Buffer:
        return self.tile.value.buffer

    @property
    def global_extents(self) -> tuple:
        return tuple(self.tile.dst.extents)

    multicast = 1
    row_coord = None


class _RingLoop:
    """The loop a stage ring runs: its index and trip count are the T.Pipelined loop's."""

    @property
    def var(self):
        return self.tile.var

    @property
    def extent(self):
        return self.tile.extent


@dataclass(frozen=True, eq=False)
class MbarrierPipeline(_RingLoop, Stmt):
    """T.Pipelined over TMA loads: a ring of `stages` shared buffers with a full barrier
    (the TMA's bytes arrived) and an empty barrier (every consumer is done) per stage; the
    phase of stage s at iteration k is (k / stages) & 1.

    `producer_threads` > 0 means warp-specialised: the last warpgroup issues the loads and the
    `consumer_threads` before it run `body`; 0 means thread 0 issues loads inline.
    """

    tile: ir.For
    loads: tuple            # TmaLoads, in program order
    body: tuple             # the rest of the loop body
    stages: int
    consumer_threads: int
    producer_threads: int = 0
    # The body is wgmmas only: each iteration waits for the previous one's group
    # (wgmma.wait_group 1) and frees that stage, so the tensor cores never drain.
    deferred_release: bool = False
    loc: SourceLoc = NO_LOC
    # CTAs of the cluster whose loads write into each other's stages (multicast): a stage is
    # refilled only once the consumers of all of them have freed it.
    cluster_consumers: int = 1
    # The barrier plan_barriers places on entry, when the ring's tiles (or what the body reads)
    # were touched since the last barrier.
    entry_barrier: Optional["Barrier"] = None
    # The consumers' loop stays rolled (`#pragma unroll 1`): fully unrolled, a short static
    # ring of wgmmas reads its accumulators on divergent paths, and ptxas then serializes
    # every wgmma (C7519).
    rolled: bool = False
    # Consumer warpgroups that take turns at the body's `wait_turn` wgmma (0: none): while one
    # group's tensor-core work runs, the others run the element-wise code between their gemms
    # (attention's softmax), instead of all of them contending for the tensor cores at once.
    turns: int = 0
    # (first gemm, tail start) body indices when the second gemm of each iteration runs
    # overlapped with the next iteration's work (passes/overlap_gemms.py), else None; then
    # `overlap_split` holds the tail's body indices that fill the second gemm's A fragment
    # (into one of two register copies by parity) and those that touch its accumulator (run
    # in the next iteration, before that gemm is issued).
    overlap: Optional[tuple] = None
    overlap_split: Optional[tuple] = None
    # Register copies of the second gemm's A fragment in the overlapped schedule: 2, filled by
    # parity while the other is read; 1, filled once the gemm reading it is done.
    overlap_copies: int = 2

    @property
    def transaction_bytes(self) -> int:
        return sum(load.bytes for load in self.loads)


@dataclass(frozen=True)
class WarpRoles:
    """Warp specialisation of a whole kernel: consumers are threads [0, consumer_threads), the
    producer warpgroup follows; setmaxnreg moves registers from the producer to consumers
    (0 = leave the allocation alone)."""

    consumer_threads: int
    producer_threads: int
    producer_registers: int
    consumer_registers: int


@dataclass(frozen=True, eq=False)
class MmaSyncGemm(Stmt):
    """T.gemm as warp-level tensor-core MMAs (sm_80+): ldmatrix from XOR-swizzled shared tiles
    (or A from registers in the m16n8k16 A layout) and mma.sync.m16n8k16, on the warp grid of
    `tiling` (a jtile.passes.layout.MmaTiling)."""

    tile: ir.Gemm
    tiling: object
    loc: SourceLoc = NO_LOC


@dataclass(frozen=True, eq=False)
class FmaGemm(Stmt):
    """T.gemm in float32 fused multiply-adds: each thread computes the accumulator elements it
    holds (no tensor-core instruction takes these inputs)."""

    tile: ir.Gemm
    loc: SourceLoc = NO_LOC


@dataclass(frozen=True, eq=False)
class CpAsyncPipeline(_RingLoop, Stmt):
    """T.Pipelined over cp.async copies (sm_80+): the copies of iterations 0..stages-2 are
    issued before the loop; iteration k waits for its own group, passes one block barrier and
    issues iteration k + stages - 1's copies into the stage iteration k - 1 read."""

    tile: ir.For
    copies: tuple           # the global->shared Copies issued ahead, in program order
    body: tuple             # the rest of the loop body
    stages: int
    loc: SourceLoc = NO_LOC
    entry_barrier: Optional["Barrier"] = None   # placed by plan_barriers


@dataclass(frozen=True, eq=False)
class Barrier(Stmt):
    """Every thread that runs the kernel body meets here (`__syncthreads()`, or the consumers'
    named barrier in a warp-specialised kernel), placed by plan_barriers. `fence_async`: ordinary
    shared-memory stores since the last barrier may next be read by wgmma or TMA, so they are
    ordered for the async proxy first. A barrier the user wrote (T.sync_threads) keeps its
    source line in `loc`."""

    fence_async: bool = False
    loc: SourceLoc = NO_LOC
    from_user: bool = False
    # (named barrier id, thread count) when only the threads of a branch on the thread index
    # meet here (`if tx < 128:`): bar.sync id, count.
    partial: Optional[tuple] = None
    # A TmaReduce may still be reading shared memory: its issuing thread waits for the reads
    # (cp.async.bulk.wait_group.read 0) before the barrier, so what follows may overwrite them.
    drain_bulk_reads: bool = False
    # T.sync_grid: every block of the launch meets here (cooperative groups' grid sync), after
    # the TMA stores and reduces in flight have written global memory.
    grid: bool = False
    # What follows reads or overwrites bytes a T.ptx_cp_async may still be writing: the threads
    # wait for their copies to land (cp.async.wait_all) first.
    wait_thread_copies: bool = False


@dataclass(frozen=True, eq=False)
class DrainBulkReads(Stmt):
    """The end of a kernel that issued TmaReduces or panel-ring TMA stores: their issuing
    thread waits until the TMA engine has read their shared tiles, which the block's exit would
    free."""

    loc: SourceLoc = NO_LOC


@dataclass(frozen=True, eq=False)
class StagedStore(Stmt):
    """A fragment -> global T.copy through the shared tile `stage` (plan_shared_memory's
    staging): fragment -> stage, a barrier, stage -> global in 16-byte vectors. plan_barriers
    decides the barrier before it (the stage may reuse bytes still in use) and whether the
    middle one fences."""

    tile: ir.Copy
    stage: ir.Buffer
    middle: Barrier
    entry_barrier: Optional[Barrier] = None
    loc: SourceLoc = NO_LOC
    # The tensor map a TMA store of the stage uses, and its box per panel (`stage` then has the
    # TMA panel layout and `middle` fences for the async proxy); None: the threads store the
    # stage themselves.
    tma_map: Optional[int] = None
    boxes: tuple = ()
    # True: `stage` holds two panels of the tile, stored one panel at a time in turn
    # (plan_shared_memory.panel_ring); `boxes` are the whole tile's, one per panel.
    panel_ring: bool = False

    # What a tensor map describes (jtile.codegen.hopper.tensor_map_specs), as for TmaLoad.
    @property
    def smem_buffer(self) -> ir.Buffer:
        return self.stage

    @property
    def global_extents(self) -> tuple:
        return tuple(self.tile.dst.extents)

    multicast = 1
    row_coord = None
