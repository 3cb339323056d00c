"""The CUDA emitter: kernel signature, allocations and statements.

Tile ops are printed by their own modules (parallel, tile_copy, gemm, reduce, pipeline,
hopper); this one walks the statements, names things, renders element accesses and prints the
barriers plan_barriers placed (`__syncthreads()`, or the consumers' named barrier).
"""

from __future__ import annotations

import contextlib
import math
import re

from jtile.codegen import launch_prologue
from jtile.codegen.expr import ExprEmitter, const_text
from jtile.errors import JtileError, JtileTargetError, JtileTraceError
from jtile.ir import nodes as ir
from jtile.ir.affine import static_value
from jtile.ir.types import DType, MemorySpace
from jtile.codegen import hopper, thread_copy
from jtile.codegen.bounds import expr_range, unproven_bounds_condition
from jtile.codegen.wgmma_asm import wgmma_wrapper
from jtile.ir import lowered as low
from jtile.ir.walk import has_grid_barrier, statements

_SUFFIX = {MemorySpace.SHARED: "_smem", MemorySpace.SHARED_DYN: "_smem",
           MemorySpace.FRAGMENT: "_frag", MemorySpace.LOCAL: "_local", MemorySpace.VAR: "_var",
           MemorySpace.BARRIER: "_bar", MemorySpace.TMEM: "_tmem",
           MemorySpace.DESCRIPTOR: "_desc"}

_RESERVED = {"int", "float", "double", "char", "short", "long", "unsigned", "signed", "bool",
             "void", "if", "else", "for", "while", "do", "return", "const", "auto", "half",
             "switch", "case", "default", "break", "continue", "struct", "class", "new",
             "delete", "this", "template", "typename", "static", "extern", "inline", "volatile",
             "register", "union", "enum", "goto", "sizeof", "true", "false", "nullptr", "jt",
             "threadIdx", "blockIdx", "blockDim", "gridDim", "warpSize", "main"}


def c_identifier(name: str) -> str:
    """`name` made a valid C identifier (lambdas and partials have odd names). A reserved name
    takes TileLang's `_kernel` suffix: its kernels are routinely called `main`."""
    text = re.sub(r"[^A-Za-z0-9_]", "_", name) or "kernel"
    if text in _RESERVED:
        return text + "_kernel"
    return "k_" + text if text[0].isdigit() else text


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("jtile")
    except Exception:
        return "dev"


class ParallelContext:
    """Inside a T.Parallel loop: how loop variables and fragment elements are reached."""

    def __init__(self, loop, layout, reg_var: str):
        self.loop = loop
        self.layout = layout          # the driver fragment's layout, or None (strided loop)
        self.reg_var = reg_var        # the C loop counter over the driver's registers

    def loop_dim(self, index) -> int:
        for d, v in enumerate(self.loop.vars):
            if index is v:
                return d
        return -1


class CudaEmitter:
    def __init__(self, kernel: ir.Kernel, target, batch: int, batched):
        self.kernel = kernel
        self.target = target
        self.batch = batch
        self.batched = batched
        self.layouts = kernel.attrs["layouts"]
        self.plan = kernel.attrs["shared"]
        self.lines: list[str] = []
        self.depth = 0
        self.names: dict = {}
        self.used_names: set = set()
        self.var_override: dict = {}
        self.stage_expr: dict = {}
        self.parallel: ParallelContext | None = None
        # mbarrier rings entered more than once count their iterations across passes.
        self.ring_counters = hopper.repeated_ring_counters(kernel.body)
        self.async_pending = False
        # (thread index name, threads, named barrier id) inside a T.ws region
        self.tile_scope = None
        self.temp_count = 0
        self.exprs = ExprEmitter(self.var_name, self.render_load, lambda e: expr_range(self, e))
        self.kernel_name = c_identifier(kernel.name)
        self.var_ranges: dict = {}
        self.ring = None  # hopper.RingPosition of the mbarrier ring being printed
        # How many vmap instances each grid axis carries (fold_batch).
        self.folds = fold_batch(kernel, batch)
        # A persistent kernel runs its tiles in a loop; the batch may fold into z only.
        self.persistent = bool(kernel.attrs.get("persistent")) and self.folds[:2] == (1, 1)
        # CTAs of a cluster that multicast into each other's stage rings.
        self.cluster_consumers = max((s.cluster_consumers for s in statements(kernel.body)
                                      if isinstance(s, low.MbarrierPipeline)), default=1)
        self.roles = kernel.attrs.get("warp_roles")
        self.panel_buffers = kernel.attrs.get("panel_buffers", frozenset())
        self.async_proxy = hopper.uses_async_proxy(kernel)

    # ------------------------------------------------------------------ text
    def line(self, text: str = "") -> None:
        self.lines.append("  " * self.depth + text if text else "")

    @contextlib.contextmanager
    def block(self, header: str):
        self.line(f"{header} {{" if header else "{")
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1
            self.line("}")

    @contextlib.contextmanager
    def strided_loop(self, var: str, total: int):
        """`var` runs over 0..total-1 spread over the block's threads: a loop with a constant
        trip count (so it unrolls) and a tail guard only when threads do not divide total."""
        threads = self.tile_threads()
        tid = self.tile_thread()
        trips = -(-total // threads)
        step = self.temp("u")
        self.line("#pragma unroll" if trips <= 64 else "#pragma unroll 4")
        with self.block(f"for (int {step} = 0; {step} < {trips}; ++{step})"):
            self.line(f"const int {var} = {step} * {threads} + {tid};")
            if total % threads:
                with self.block(f"if ({var} < {total})"):
                    yield
            else:
                yield

    def temp(self, base: str) -> str:
        self.temp_count += 1
        return f"jt_{base}{self.temp_count}"

    def comment_loc(self, loc) -> None:
        if loc is not None and loc.line:
            self.line(f"// {loc}")

    # ------------------------------------------------------------------ names
    def _unique(self, base: str) -> str:
        name = base if base not in _RESERVED else base + "_"
        while name in self.used_names:
            name += "_"
        self.used_names.add(name)
        return name

    def name(self, thing) -> str:
        if isinstance(thing, ir.Buffer) and thing.view_of is not None \
                and thing.space is MemorySpace.FRAGMENT:
            return self.name(thing.view_of)   # T.reshape of a fragment: the same registers
        if thing not in self.names:
            if isinstance(thing, ir.Buffer):
                base = thing.name + ("" if thing.space is MemorySpace.GLOBAL else
                                     "_red" if thing.reducer_op else _SUFFIX[thing.space])
            else:
                base = thing.name
            self.names[thing] = self._unique(base)
        return self.names[thing]

    def var_name(self, v: ir.Var) -> str:
        if v in self.var_override:
            return self.var_override[v]
        return self.name(v)

    def expr(self, e) -> str:
        return self.exprs(ir.as_expr(e))

    def typed(self, e, dtype: DType) -> str:
        return self.exprs.typed(ir.as_expr(e), dtype)

    @property
    def block_index_type(self) -> str:
        """`long long` when a parameter holds 2**31 elements or more: an index like
        `bx * tile + i` into it must not wrap in 32-bit arithmetic before `flat_index` widens
        it; `int` otherwise (the cheaper arithmetic)."""
        wide = any(buf.size >= 2**31 for buf in self.kernel.params)
        return "long long" if wide else "int"

    # ------------------------------------------------------------------ element access
    def flat_index(self, buf: ir.Buffer, idx: list) -> str:
        """Row-major offset of idx (C expressions) in buf."""
        wide = buf.size >= 2**31
        text = None
        for d, i in enumerate(idx):
            i = f"(long long)({i})" if wide and text is None else f"({i})"
            text = i if text is None else f"({text}) * {buf.shape[d]} + {i}"
        return text if text is not None else "0"

    def shared_offset(self, buf: ir.Buffer, idx: list) -> str:
        """Element offset inside a shared buffer, with its stage and swizzle applied."""
        if buf in getattr(self, "panel_buffers", ()):
            offset = self.panel_offset(buf, idx)
        elif buf in self.plan.swizzled and len(idx) >= 2:
            inner = buf.shape[-1]
            chunk = 16 // buf.dtype.bytes
            chunks = inner // chunk
            span = min(chunks, 8)
            rows_per = max(1, 8 // chunks)
            row = self.flat_index(ir.Buffer(buf.name, buf.shape[:-1], buf.dtype, buf.space),
                                  idx[:-1])
            col = f"({idx[-1]})"
            swz = f"(({row}) / {rows_per} % {span})" if rows_per > 1 else f"(({row}) % {span})"
            offset = f"({row}) * {inner} + ((({col}) / {chunk}) ^ {swz}) * {chunk} + ({col}) % {chunk}"
        else:
            offset = self.flat_index(buf, idx)
        stage = self.stage_expr.get(buf)
        if stage is not None:
            offset = f"({stage}) * {buf.size} + {offset}"
        return offset

    def panel_offset(self, buf: ir.Buffer, idx: list) -> str:
        """Element offset in a TMA/wgmma panel tile (jtile.ir.lowered.PanelLayout): panels of
        `span`-byte rows, 16-byte chunks XOR-swizzled by address bits 7 and up."""
        from jtile.passes.wgmma_selection import panel_layout

        layout = panel_layout(buf)
        eb, cols = buf.dtype.bytes, layout.panel_columns
        row, col = f"({idx[-2]})", f"({idx[-1]})"
        raw = f"({col} / {cols}) * {layout.panel_bytes} + {row} * {layout.span} + " \
            f"({col} % {cols}) * {eb}"
        mask = layout.span // 16 - 1
        offset = f"jt::swizzle_bytes<{mask}>({raw}) / {eb}"
        if buf.ndim > 2:   # one whole tile per leading index
            offset = f"({self.leading_index(buf, idx[:-2])}) * {layout.tile_bytes // eb} + " \
                f"{offset}"
        return offset

    def leading_index(self, buf: ir.Buffer, idx: list) -> str:
        """The flat index of `idx` over the leading dimensions of a shared buffer of panel
        tiles (all but its last two): which tile."""
        return self.flat_index(ir.Buffer(buf.name, buf.shape[:-2], buf.dtype, buf.space), idx)

    def element(self, buf: ir.Buffer, idx: list) -> str:
        """An lvalue for buf[idx] with idx given as C expressions (not for tiled fragments)."""
        n = self.name(buf)
        if buf.space is MemorySpace.GLOBAL:
            return f"{n}[{self.flat_index(buf, idx)}]"
        if buf.space.is_shared:
            return f"{n}[{self.shared_offset(buf, idx)}]"
        if buf.space is MemorySpace.VAR:
            return n
        if buf.space in (MemorySpace.LOCAL, MemorySpace.FRAGMENT):
            return f"{n}[{self.flat_index(buf, idx)}]"
        if buf.space is MemorySpace.BARRIER:
            return f"{n}[{idx[0]}]"
        raise JtileError(f"jtile internal: no element access for {buf.describe()}")

    def is_tiled_fragment(self, buf) -> bool:
        return buf.space is MemorySpace.FRAGMENT and buf.reducer_op is None

    def fragment_access(self, buf: ir.Buffer, indices: tuple, loc=None) -> str:
        from jtile.codegen.parallel import fragment_register, replicated_register
        from jtile.passes.fragment_access import is_replicated, is_scalar_fragment

        if self.parallel is None and is_scalar_fragment(buf):
            return f"{self.name(buf)}[0]"   # every thread holds the one element
        if self.parallel is None and is_replicated(self.layouts[buf]):
            # Named outside T.Parallel: infer_layouts gave every thread all of it.
            return f"{self.name(buf)}[{replicated_register(self, buf, indices)}]"
        if self.parallel is None:
            # infer_layouts replicates every fragment named here; this is an internal error.
            where = f"{loc}: " if loc is not None else ""
            raise JtileTraceError(
                f"{self.kernel.name} ({self.kernel.loc}): {where}fragment {buf.describe()} is "
                "indexed outside a T.Parallel loop over it; fragments are spread over threads, so "
                "element access needs T.Parallel (or use T.alloc_local / T.alloc_var)")
        return f"{self.name(buf)}[{fragment_register(self, buf, indices, loc)}]"

    def render_load(self, load: ir.Load) -> str:
        if self.is_tiled_fragment(load.buffer):
            return self.fragment_access(load.buffer, load.indices)
        access = self.element(load.buffer, [self.expr(i) for i in load.indices])
        guard = unproven_bounds_condition(self, load.buffer, load.indices)
        if guard is None:
            return access
        # Outside the tensor a global read gives 0, as in interpret mode (and TileLang).
        return f"(({guard}) ? {access} : {const_text(0, load.buffer.dtype)})"

    # ------------------------------------------------------------------ barriers
    def block_barrier(self) -> str:
        """The barrier over every thread that runs the kernel body: the block, or, in a
        warp-specialised kernel, the consumers' named barrier (the producer warpgroup never
        reaches the body's barriers)."""
        if self.tile_scope is not None:   # a T.ws region's threads meet alone
            return f"jt::named_barrier_sync({self.tile_scope[2]}, {self.tile_scope[1]});"
        if self.roles is not None:
            return f"jt::named_barrier_sync(1, {self.roles.consumer_threads});"
        return "__syncthreads();"

    def emit_barrier(self, b: low.Barrier) -> None:
        """A Barrier plan_barriers placed (cp.async copies still in flight land first)."""
        if b.from_user:
            self.comment_loc(b.loc)
        if self.async_pending or b.wait_thread_copies:
            self.line("jt::cp_async_wait_all();")
            self.async_pending = False
        if b.drain_bulk_reads:
            # TMA reduces may still read shared tiles the threads overwrite after this barrier:
            # their issuer waits (a thread with none in flight passes at once).
            self.line("jt::tma_store_wait_read<0>();")
        if b.fence_async:
            # Ordinary stores that wgmma or TMA may read next: order them for the async proxy.
            self.line("jt::fence_proxy_async_shared();")
        if b.partial is not None:
            # Only the threads of a branch on the thread index run this: they meet alone.
            self.line(f"jt::named_barrier_sync({b.partial[0]}, {b.partial[1]});")
            return
        if b.grid:
            if self.target.has_tma:
                # TMA stores and reduces write global memory asynchronously: the other blocks
                # read it after the barrier, so their writes complete first.
                self.line("jt::tma_store_wait<0>();")
            self.line("jt::grid_sync();")
            return
        self.line(self.block_barrier())

    # ------------------------------------------------------------------ statements
    def body(self, stmts) -> None:
        for s in stmts:
            self.stmt(s)

    def stmt(self, s) -> None:
        from jtile.codegen import gemm, parallel, pipeline, reduce, scan_im2col, tile_copy

        if isinstance(s, ir.ParallelFor):
            parallel.emit_parallel(self, s)
        elif isinstance(s, low.CpAsyncPipeline):
            pipeline.emit_pipelined(self, s)
        elif isinstance(s, ir.For):
            self.emit_for(s)
        elif isinstance(s, ir.IfThenElse):
            self.emit_if(s)
        elif isinstance(s, ir.While):
            self.emit_while(s)
        elif isinstance(s, ir.Store):
            self.emit_store(s)
        elif isinstance(s, ir.Copy):
            tile_copy.emit_copy(self, s)
        elif isinstance(s, ir.Fill):
            tile_copy.emit_fill(self, s)
        elif isinstance(s, ir.AtomicAdd):
            tile_copy.emit_atomic_add(self, s)
        elif isinstance(s, low.MmaSyncGemm):
            gemm.emit_mma_sync_gemm(self, s)
        elif isinstance(s, low.FmaGemm):
            gemm.emit_fma_gemm(self, s)
        elif isinstance(s, ir.Reduce):
            reduce.emit_reduce(self, s)
        elif isinstance(s, ir.FinalizeReducer):
            reduce.emit_finalize_reducer(self, s)
        elif isinstance(s, low.Barrier):
            self.emit_barrier(s)
        elif isinstance(s, low.StagedStore):
            tile_copy.emit_staged_store(self, s)
        elif isinstance(s, low.TmaReduce):
            hopper.emit_tma_reduce(self, s)
        elif isinstance(s, low.DrainBulkReads):
            self.line("jt::tma_store_wait_read<0>();  // the TMA engine has read the tiles it stores")
        elif isinstance(s, ir.SyncThreads):
            # plan_barriers turned every other one into a Barrier.
            raise JtileTraceError(f"{self.kernel.name} ({self.kernel.loc}): {s.loc}: "
                                  "T.sync_threads inside T.Parallel would deadlock threads "
                                  "that run different iteration counts; move it out")
        elif isinstance(s, low.WgmmaGemm):
            hopper.emit_wgmma_gemm(self, s)
        elif isinstance(s, low.WgmmaWait):
            hopper.emit_wgmma_wait(self, s)
        elif isinstance(s, low.MbarrierPipeline):
            hopper.emit_pipeline(self, s)
        elif isinstance(s, ir.SetMaxNreg):
            self.comment_loc(s.loc)
            self.line(f"jt::setmaxnreg_{'inc' if s.increase else 'dec'}<{s.count}>();")
        elif isinstance(s, ir.FenceProxyAsync):
            self.comment_loc(s.loc)
            if self.async_pending:   # cp.async writes must land before they are fenced
                self.line("jt::cp_async_wait_all();")
                self.async_pending = False
            self.line("jt::fence_proxy_async_shared();")
        elif isinstance(s, ir.BarrierOp):
            self.emit_barrier_op(s)
        elif isinstance(s, ir.ThreadCopy):
            thread_copy.emit_thread_copy(self, s)
        elif isinstance(s, ir.AsyncCopyGroup):
            thread_copy.emit_async_copy_group(self, s)
        elif isinstance(s, ir.Scan):
            scan_im2col.emit_scan(self, s)
        elif isinstance(s, ir.Im2Col):
            scan_im2col.emit_im2col(self, s)
        elif isinstance(s, ir.UseSwizzle):
            pass  # applied to the block indices in the prologue (launch_prologue)
        else:
            raise JtileError(f"jtile internal: no CUDA lowering for {type(s).__name__}")

    def emit_for(self, s: ir.For) -> None:
        self.comment_loc(s.loc)
        counter = self.name(s.var)
        if s.kind is ir.LoopKind.UNROLL:
            self.line("#pragma unroll")
        extent = static_value(s.extent)
        if extent is not None:
            self.var_ranges[s.var] = (0, max(0, extent - 1))
        with self.block(f"for (int {counter} = 0; {counter} < {self.expr(s.extent)}; ++{counter})"):
            self.body(s.body)

    def emit_while(self, s: ir.While) -> None:
        self.comment_loc(s.loc)
        with self.block(f"while ({self.expr(s.cond)})"):
            self.body(s.body)

    def emit_if(self, s: ir.IfThenElse) -> None:
        self.comment_loc(s.loc)
        with self.block(f"if ({self.expr(s.cond)})"):
            if s.threads is not None:
                self._emit_region(s)
            else:
                self.body(s.then_body)
        if s.else_body:
            with self.block("else"):
                self.body(s.else_body)

    def _emit_region(self, s: ir.IfThenElse) -> None:
        """A T.ws region's body: its tile operations index the region's threads from 0."""
        from jtile.passes.plan_barriers import region_barrier_id

        first, count = s.threads
        tid = self.temp("wtid")
        self.line(f"const int {tid} = {self.name(self.kernel.thread_var)} - {first}; "
                  f"(void){tid};")
        saved = self.tile_scope
        self.tile_scope = (tid, count, region_barrier_id(first), first)
        try:
            self.body(s.then_body)
        finally:
            self.tile_scope = saved

    def tile_thread(self) -> str:
        """The thread index tile operations divide their work by: the block's, or inside a
        T.ws region the region's own (from 0)."""
        return self.tile_scope[0] if self.tile_scope else self.name(self.kernel.thread_var)

    def tile_first(self) -> int:
        """The block thread index of the first thread sharing a tile operation here (0, or a
        T.ws region's first thread)."""
        return self.tile_scope[3] if self.tile_scope else 0

    def tile_threads(self) -> int:
        """How many threads share a tile operation here (the block's, or a T.ws region's)."""
        return self.tile_scope[1] if self.tile_scope else self.kernel.threads

    def emit_store(self, s: ir.Store) -> None:
        from jtile.codegen.parallel import guard_replicas

        buf = s.buffer
        value = self.typed(s.value, buf.dtype)
        if self.is_tiled_fragment(buf):
            target = self.fragment_access(buf, s.indices, s.loc)
        else:
            target = self.element(buf, [self.expr(i) for i in s.indices])
        needs_guard = not self.is_tiled_fragment(buf) and buf.space is not MemorySpace.VAR \
            and buf.space is not MemorySpace.LOCAL
        bounds = unproven_bounds_condition(self, buf, s.indices)
        with guard_replicas(self, needs_guard):
            # Outside the tensor a global write is dropped, as in interpret mode (and TileLang).
            self.line(f"if ({bounds}) {target} = {value};" if bounds else
                      f"{target} = {value};")

    def emit_barrier_op(self, s: ir.BarrierOp) -> None:
        self.comment_loc(s.loc)
        bar = f"&{self.name(s.barrier)}[{self.expr(s.index)}]"
        if s.op == "arrive":
            self.line(f"jt::mbarrier_arrive({bar});")
        elif s.op == "arrive_after_copies":
            self.line(f"jt::cp_async_mbarrier_arrive_noinc({bar});")
        elif s.op == "wait":
            self.line(f"jt::mbarrier_wait_parity({bar}, (unsigned)({self.expr(s.arg)}));")
        else:
            self.line(f"jt::mbarrier_expect_tx({bar}, (unsigned)({self.expr(s.arg)}));")

    # ------------------------------------------------------------------ kernel
    def emit_kernel(self) -> str:
        k = self.kernel
        params = []
        for index, buf in enumerate(k.params):
            const = "const " if index < k.num_inputs else ""
            params.append(f"{const}{buf.dtype.c_name}* __restrict__ {self.name(buf)}")
        # The source file's base name only: generated code must not depend on where it lives.
        self.line(f"// jtile kernel {self.kernel_name} from {k.loc}")
        self.line(f"// target {self.target.arch}, jtile {_version()}")
        self.line('#include "jtile/device.cuh"')
        if has_grid_barrier(k.body):
            self.line('#include "jtile/grid.cuh"  // T.sync_grid')
        self.line()
        for function in hopper.wgmma_functions(k):
            self.lines.extend(wgmma_wrapper(function).splitlines())
            self.line()
        params += hopper.tensor_map_params(self)
        bounds = f"{k.threads}"
        if self.roles is not None:
            # One block per SM: setmaxnreg needs a register cap at entry.
            bounds = f"{self.roles.consumer_threads + self.roles.producer_threads}, 1"
        elif any(isinstance(s, ir.SetMaxNreg) for s in statements(k.body)):
            bounds = f"{k.threads}, 1"   # the kernel's own T.set_max_nreg, likewise
        signature = f"extern \"C\" __global__ void __launch_bounds__({bounds}) {self.kernel_name}(" + \
            ", ".join(params) + ")"
        with self.block(signature):
            self.emit_prologue()
            if self.roles is None:
                self.body(k.body)
            else:
                self.emit_warp_roles()
            if self.cluster_consumers > 1:
                # No CTA leaves while another may still multicast into it or arrive on its
                # barriers.
                self.line("jt::cluster_sync();")
            self.emit_epilogue()
        return "\n".join(self.lines) + "\n"

    def emit_warp_roles(self) -> None:
        """The producer warpgroup's branch, then the consumers' (the whole kernel body)."""
        roles, tid = self.roles, self.name(self.kernel.thread_var)
        pipe = next(s for s in self.kernel.body if isinstance(s, low.MbarrierPipeline))
        with self.block(f"if ({tid} >= {roles.consumer_threads})"):
            if roles.producer_registers:
                self.line(f"jt::setmaxnreg_dec<{roles.producer_registers}>();")
            hopper.emit_producer(self, pipe)
        with self.block("else"):
            if roles.consumer_registers:
                self.line(f"jt::setmaxnreg_inc<{roles.consumer_registers}>();")
            if self.persistent:
                body = tuple(self.kernel.body)
                # The engine's reads of the last tile's stores are awaited once, at the exit.
                drain = body[-1:] if body and isinstance(body[-1], low.DrainBulkReads) else ()
                with self.tile_loop():
                    self.body(body[:len(body) - len(drain)])
                self.body(drain)
            else:
                self.body(self.kernel.body)

    @contextlib.contextmanager
    def tile_loop(self):
        """A persistent kernel's loop over its grid's tiles (x fastest), with the block indices
        (and their T.use_swizzle remap) of each; `jt_ring` counts the stage ring's iterations
        across tiles, so stages and phases run on from one tile to the next. A vmap batch
        stays on blockIdx.z."""
        k = self.kernel
        grid = tuple(k.grid) + (1,) * (3 - len(k.grid))
        self.line("int jt_ring = 0;")
        for var in k.block_vars:
            self.var_override.pop(var, None)  # the other role's loop remapped them
        with self.block(f"for (int jt_tile = blockIdx.x; jt_tile < {grid[0] * grid[1] * grid[2]}; "
                        "jt_tile += gridDim.x)"):
            stride = 1
            for axis, var in enumerate(k.block_vars):
                self.line(f"const {self.block_index_type} {self.name(var)} = "
                          f"jt_tile / {stride} % {grid[axis]};")
                stride *= grid[axis]
            launch_prologue.remap_block_indices(self)
            yield

    def emit_prologue(self) -> None:
        k = self.kernel
        self.line("extern __shared__ __align__(1024) unsigned char jt_smem[];")
        self.line(f"const int {self.name(k.thread_var)} = threadIdx.x;")
        axes = "xyz"
        grid = tuple(k.grid) + (1,) * (3 - len(k.grid))
        folds = self.folds
        for axis, var in enumerate(k.block_vars):
            if self.persistent:
                continue  # set per tile by tile_loop
            index = self.block_index_type
            if folds[axis] > 1:
                self.line(f"const {index} {self.name(var)} = blockIdx.{axes[axis]} % {grid[axis]};")
            else:
                self.line(f"const {index} {self.name(var)} = blockIdx.{axes[axis]};")
        if self.batch > 1:
            fx, fy, fz = folds
            # A persistent kernel's grid is (blocks, 1, batch): its tiles cover the whole grid.
            instance = "blockIdx.z" if self.persistent else f"blockIdx.z / {grid[2]}"
            if fy > 1 or fx > 1:
                # The batch spills from z into y (and x): z is its fastest digit.
                instance = f"(long long)(blockIdx.x / {grid[0]}) * {fy * fz}LL + " \
                    f"(blockIdx.y / {grid[1]}) * {fz}LL + {instance}"
            self.line(f"const long long jt_batch = {instance};")
            if fx * fy * fz > self.batch:
                # The folded grid rounds the batch up; the spare blocks have no instance.
                self.line(f"if (jt_batch >= {self.batch}LL) return;")
            for index, buf in enumerate(k.params):
                if self.batched[index]:
                    self.line(f"{self.name(buf)} += jt_batch * {buf.size}LL;")
        if not self.persistent:
            launch_prologue.remap_block_indices(self)
        for buf in k.allocations:
            self.declare(buf)
        launch_prologue.declare_views(self)
        barriers = [b for b in k.allocations if b.space is MemorySpace.BARRIER]
        rings = [s for s in statements(k.body) if isinstance(s, low.MbarrierPipeline)]
        for ring in rings:
            hopper.declare_ring(self, ring)
        for counter in self.ring_counters.values():
            self.line(f"int {counter} = 0;")
        if barriers or rings:
            with self.block(f"if ({self.name(k.thread_var)} == 0)"):
                for b in barriers:
                    for i, count in enumerate(b.arrive_counts):
                        self.line(f"jt::mbarrier_init(&{self.name(b)}[{i}], {count});")
                for ring in rings:
                    hopper.init_ring(self, ring)
                self.line("jt::fence_barrier_init();")
            if self.cluster_consumers > 1:
                # The other CTAs' multicasts and arrivals need this CTA's barriers ready.
                self.line("const unsigned jt_cta_rank = jt::cluster_ctarank();")
                self.line("jt::cluster_sync();")
            else:
                self.line("__syncthreads();")

    def declare(self, buf: ir.Buffer) -> None:
        n, c = self.name(buf), buf.dtype.c_name
        if buf.space.is_shared:
            self.line(f"{c}* {n} = reinterpret_cast<{c}*>(jt_smem + {self.plan.offsets[buf]});")
        elif buf.space is MemorySpace.FRAGMENT and buf.reducer_op is None:
            # (A float16 gemm accumulator's pairs are read as 32-bit registers.)
            align = "alignas(4) " if buf.dtype is DType.float16 and any(
                g.c.buffer is buf for g in self.kernel.attrs.get("mma", {})) else ""
            self.line(f"{align}{c} {n}[{self.layouts[buf].num_registers}];")
        elif buf.space in (MemorySpace.LOCAL, MemorySpace.FRAGMENT):
            self.line(f"{c} {n}[{buf.size}];")
        elif buf.space is MemorySpace.VAR:
            init = self.typed(buf.init, buf.dtype) if buf.init is not None else \
                const_text(0, buf.dtype)
            self.line(f"{c} {n} = {init};")
        elif buf.space is MemorySpace.BARRIER:
            self.line(f"__shared__ __align__(8) unsigned long long {n}[{buf.shape[0]}];")
        elif buf.space is MemorySpace.DESCRIPTOR:
            self.line(f"{c} {n} = 0;")
        elif buf.space is MemorySpace.TMEM:
            from jtile.codegen.tmem import declare_tmem

            declare_tmem(self, buf)

    def emit_epilogue(self) -> None:
        from jtile.codegen.tmem import release_tmem

        for buf in self.kernel.allocations:
            if buf.space is MemorySpace.TMEM:
                release_tmem(self, buf)


# CUDA's limits on gridDim.x, .y and .z.
GRID_LIMITS = (2**31 - 1, 65535, 65535)


def fold_batch(kernel: ir.Kernel, batch: int) -> tuple:
    """How many vmap instances each grid axis carries, `(fx, fy, fz)`.

    The batch folds into gridDim.z while it fits (one launch, unchanged block indices), then
    spills into y and x so the launch stays inside `GRID_LIMITS`; the factors are balanced so
    their product exceeds `batch` by as little as possible, and the spare blocks return.

    Raises:
        JtileTargetError: the kernel's own grid, or the batch spread over all three axes,
            exceeds CUDA's launch limits.
    """
    grid = tuple(kernel.grid) + (1,) * (3 - len(kernel.grid))
    for axis, (size, limit) in enumerate(zip(grid, GRID_LIMITS)):
        if size > limit:
            raise JtileTargetError(
                f"{kernel.name} ({kernel.loc}): T.Kernel grid {tuple(kernel.grid)} has "
                f"{size} blocks along {'xyz'[axis]}; CUDA launches at most {limit} there "
                "(2**31 - 1 along x, 65535 along y and z): put the largest extent first")
    room = [limit // size for size, limit in zip(grid, GRID_LIMITS)]
    fx = -(-batch // (room[2] * room[1]))
    if fx > room[0]:
        raise JtileTargetError(
            f"{kernel.name} ({kernel.loc}): a vmap batch of {batch} over the grid "
            f"{tuple(kernel.grid)} needs more blocks than one CUDA launch allows "
            f"({GRID_LIMITS[0]} x {GRID_LIMITS[1]} x {GRID_LIMITS[2]}); split the batch "
            "with jax.lax.map over chunks, or give the kernel a smaller grid")
    fy = -(-batch // (fx * room[2]))
    fz = -(-batch // (fx * fy))
    return fx, fy, fz


def generate_cuda(kernel: ir.Kernel, target, *, batch: int = 1, batched=None):
    from jtile.codegen import GeneratedKernel

    if batched is None:
        batched = tuple(True for _ in kernel.params)
    batched = tuple(bool(b) for b in batched[: kernel.num_inputs]) + \
        tuple(batch > 1 for _ in kernel.outputs)
    emitter = CudaEmitter(kernel, target, batch, batched)
    source = emitter.emit_kernel()
    kernel_name = emitter.kernel_name
    grid = tuple(kernel.grid) + (1,) * (3 - len(kernel.grid))
    grid = tuple(g * f for g, f in zip(grid, emitter.folds))
    if emitter.persistent:
        # About one block per SM when the GPU is known (each loops over tiles, and a vmap
        # batch shares the SMs); else one block per tile, running the same code.
        tiles = math.prod(kernel.grid)
        instances = emitter.folds[2]
        per_instance = max(1, target.sm_count // instances) if target.sm_count else tiles
        grid = (min(tiles, per_instance), 1, instances)
    plan = kernel.attrs["shared"]
    roles = kernel.attrs.get("warp_roles")
    threads = kernel.threads + (roles.producer_threads if roles is not None else 0)
    return GeneratedKernel(source=source, kernel_name=kernel_name, grid=grid,
                           block=(threads, 1, 1), tensor_maps=hopper.tensor_map_specs(emitter),
                           cluster=tuple(kernel.attrs.get("cluster_dims", (1, 1, 1))),
                           shared_memory_bytes=plan.dynamic_bytes,
                           cooperative=has_grid_barrier(kernel.body))
