"""A stable text form of the IR, for golden tests and `debug=True`."""

from __future__ import annotations

from jtile.ir import nodes as ir

_SYMBOLS = {"add": "+", "sub": "-", "mul": "*", "div": "/", "floordiv": "//", "mod": "%",
            "lt": "<", "le": "<=", "gt": ">", "ge": ">=", "eq": "==", "ne": "!=", "and": "&&",
            "or": "||", "xor": "^", "shl": "<<", "shr": ">>", "bitand": "&", "bitor": "|"}


def expr_text(e) -> str:
    if isinstance(e, ir.Const):
        return repr(e.value) if e.dtype.name in ("int32", "bool", "float32") \
            else f"{e.dtype}({e.value!r})"
    if isinstance(e, ir.Var):
        return e.name
    if isinstance(e, ir.BinOp):
        if e.op in _SYMBOLS:
            return f"({expr_text(e.a)} {_SYMBOLS[e.op]} {expr_text(e.b)})"
        return f"{e.op}({expr_text(e.a)}, {expr_text(e.b)})"
    if isinstance(e, ir.UnOp):
        return f"({'-' if e.op == 'neg' else '!'}{expr_text(e.a)})"
    if isinstance(e, ir.Call):
        return f"{e.fn}({', '.join(expr_text(a) for a in e.args)})"
    if isinstance(e, ir.Cast):
        return f"{e.dtype}({expr_text(e.value)})"
    if isinstance(e, ir.Select):
        return f"select({expr_text(e.cond)}, {expr_text(e.a)}, {expr_text(e.b)})"
    if isinstance(e, ir.Load):
        return f"{e.buffer.name}[{', '.join(expr_text(i) for i in e.indices)}]"
    return repr(e)


def region_text(r) -> str:
    if isinstance(r, ir.Load):
        return expr_text(r)
    parts = []
    for start, extent in zip(r.starts, r.extents):
        s = expr_text(start)
        parts.append(s if extent == 1 else f"{s}:{s}+{extent}" if s != "0" else f":{extent}")
    return f"{r.buffer.name}[{', '.join(parts)}]"


def _stmt_lines(s, depth: int) -> list:
    pad = "  " * depth
    if isinstance(s, ir.Store):
        idx = ", ".join(expr_text(i) for i in s.indices)
        return [f"{pad}{s.buffer.name}[{idx}] = {expr_text(s.value)}"]
    if isinstance(s, ir.ParallelFor):
        head = f"{pad}parallel ({', '.join(v.name for v in s.vars)}) in {tuple(s.extents)}:"
        return [head] + _body(s.body, depth + 1)
    if isinstance(s, ir.For):
        stages = f", stages={s.num_stages}" if s.kind is ir.LoopKind.PIPELINED else ""
        head = (f"{pad}{s.kind.value} {s.var.name} in range({expr_text(s.extent)}{stages})"
                f"{' * ' + str(s.step) if s.step != 1 else ''}"
                f"{' + ' + expr_text(s.start) if not (isinstance(s.start, ir.Const) and s.start.value == 0) else ''}:")
        return [head] + _body(s.body, depth + 1)
    if isinstance(s, ir.While):
        return [f"{pad}while {expr_text(s.cond)}:"] + _body(s.body, depth + 1)
    if isinstance(s, ir.IfThenElse):
        lines = [f"{pad}if {expr_text(s.cond)}:"] + _body(s.then_body, depth + 1)
        if s.else_body:
            lines += [f"{pad}else:"] + _body(s.else_body, depth + 1)
        return lines
    if isinstance(s, ir.Copy):
        opts = "".join([" disable_tma" if s.disable_tma else "",
                        f" {s.eviction_policy}" if s.eviction_policy else ""])
        return [f"{pad}copy {region_text(s.src)} -> {region_text(s.dst)}{opts}"]
    if isinstance(s, ir.Fill):
        return [f"{pad}fill {region_text(s.dst)} = {expr_text(s.value)}"]
    if isinstance(s, ir.Gemm):
        flags = "".join([" transpose_A" if s.transpose_a else "", " transpose_B" if s.transpose_b
                         else "", " clear_accum" if s.clear_accum else "",
                         f" policy={s.policy}" if s.policy != "square" else ""])
        return [f"{pad}gemm {region_text(s.a)} @ {region_text(s.b)} -> {region_text(s.c)}{flags}"]
    if isinstance(s, ir.Reduce):
        return [f"{pad}reduce_{s.op} {s.src.name} -> {s.dst.name} dim={s.dim}"
                f"{'' if s.clear else ' accumulate'}"]
    if isinstance(s, ir.AtomicAdd):
        value = region_text(s.value) if isinstance(s.value, ir.Region) else expr_text(s.value)
        dst = region_text(s.dst) if isinstance(s.dst, ir.Region) else expr_text(s.dst)
        prev = f"{s.prev.name} = " if s.prev is not None else ""
        return [f"{pad}{prev}atomic_{s.op} {dst} <- {value}"]
    if isinstance(s, ir.Scan):
        return [f"{pad}cum{s.op} {region_text(s.src)} -> {region_text(s.dst)} dim={s.dim}"
                f"{' reverse' if s.reverse else ''}"]
    if isinstance(s, ir.Im2Col):
        return [f"{pad}im2col {s.img.name} -> {region_text(s.col)} nhw_step="
                f"{expr_text(s.nhw_step)} c_step={expr_text(s.c_step)} kernel={s.kernel} "
                f"stride={s.stride} dilation={s.dilation} pad={s.pad}"]
    if isinstance(s, ir.UseSwizzle):
        return [f"{pad}use_swizzle panel={s.panel_size} order={s.order}"]
    if isinstance(s, ir.FinalizeReducer):
        return [f"{pad}finalize_reducer {s.reducer.name}"]
    if isinstance(s, ir.ThreadCopy):
        guard = f" if {expr_text(s.predicate)}" if s.predicate is not None else ""
        return [f"{pad}thread_cp_async {region_text(s.src)} -> {region_text(s.dst)}{guard}"]
    if isinstance(s, ir.AsyncCopyGroup):
        return [f"{pad}cp_async_{s.op}_group" + (f" {s.pending}" if s.op == "wait" else "")]
    if isinstance(s, ir.SyncThreads):
        if s.grid:
            return [f"{pad}sync_grid"]
        named = f" id={s.named[0]} count={s.named[1]}" if s.named is not None else ""
        return [f"{pad}sync_threads{named}"]
    if isinstance(s, ir.FenceProxyAsync):
        return [f"{pad}fence_proxy_async"]
    if isinstance(s, ir.SetMaxNreg):
        return [f"{pad}set_max_nreg {s.count} {'inc' if s.increase else 'dec'}"]
    if isinstance(s, ir.BarrierOp):
        arg = f", {expr_text(s.arg)}" if s.arg is not None else ""
        return [f"{pad}mbarrier_{s.op} {s.barrier.name}[{expr_text(s.index)}]{arg}"]
    lowered = _lowered_lines(s, pad, depth)
    if lowered is not None:
        return lowered
    return [f"{pad}{s!r}"]


def _lowered_lines(s, pad: str, depth: int):
    """Lowered instructions, one line each (their tile op's line first for context)."""
    from jtile.ir import lowered as low

    if isinstance(s, low.MbarrierPipeline):
        roles = (f" producer={s.producer_threads} consumers={s.consumer_threads}"
                 if s.producer_threads else "")
        if s.entry_barrier is not None:
            roles += " (barrier on entry)"
        release = " deferred_release" if s.deferred_release else ""
        head = (f"{pad}mbarrier_ring {s.var.name} in range({expr_text(s.extent)}), "
                f"stages={s.stages}, tx_bytes={s.transaction_bytes}{roles}{release}:")
        return [head] + _body(s.loads, depth + 1) + _body(s.body, depth + 1)
    if isinstance(s, low.CpAsyncPipeline):
        head = (f"{pad}cp_async_pipeline {s.var.name} in range({expr_text(s.extent)}), "
                f"stages={s.stages}:")
        copies = [f"{pad}  cp.async {region_text(c.src)} -> {region_text(c.dst)}"
                  for c in s.copies]
        return [head] + copies + _body(s.body, depth + 1)
    if isinstance(s, (low.MmaSyncGemm, low.FmaGemm)):
        g = s.tile
        how = (f"mma.sync m16n8k16 warps {s.tiling.wm}x{s.tiling.wn}"
               if isinstance(s, low.MmaSyncGemm) else "fma")
        flags = "".join([" transpose_A" if g.transpose_a else "",
                         " transpose_B" if g.transpose_b else "",
                         " clear_accum" if g.clear_accum else ""])
        return [f"{pad}{how} {region_text(g.a)} @ {region_text(g.b)} -> {region_text(g.c)}"
                f"{flags}"]
    if isinstance(s, low.Barrier):
        return [f"{pad}barrier{' fence_async' if s.fence_async else ''}"]
    if isinstance(s, low.StagedStore):
        before = "barrier, " if s.entry_barrier is not None else ""
        return [f"{pad}staged_store {region_text(s.tile.src)} -> {s.stage.name} -> "
                f"{region_text(s.tile.dst)} ({before}barrier between)"]
    if isinstance(s, low.TmaLoad):
        boxes = "; ".join(f"+{b.smem_byte_offset}B @({', '.join(expr_text(c) for c in b.coords)})"
                          for b in s.boxes)
        return [f"{pad}tma_load map{s.map_index} {region_text(s.tile.src)} -> "
                f"{region_text(s.tile.dst)} [{boxes}]"]
    if isinstance(s, low.WgmmaGemm):
        def operand(op, region):
            if op is None:
                return f"{region_text(region)} (registers)"
            return (f"{region_text(region)} ({op.major.value}-major, swizzle {op.layout.span}B,"
                    f" lbo {op.lbo}, sbo {op.sbo})")
        g = s.tile
        return [f"{pad}wgmma m64n{s.inst_n}k{s.k_step} {operand(s.a, g.a)} @ "
                f"{operand(s.b, g.b)} -> {region_text(g.c)} warpgroups "
                f"{s.wgs_along_m}x{s.wgs_along_n} of {s.m_per_wg}x{s.n_per_wg}"
                f"{' clear_accum' if g.clear_accum else ''}"
                f"{' commit' if s.commit else ''}"
                f"{'' if s.wait is None else f' wait_group {s.wait}'}"
                f"{' then frees the previous stage' if s.release_previous_stage else ''}"]
    return None


def _body(stmts, depth: int) -> list:
    out = []
    for s in stmts:
        out.extend(_stmt_lines(s, depth))
    return out or ["  " * depth + "pass"]


def _buffer_line(b: ir.Buffer) -> str:
    extra = []
    if b.init is not None:
        extra.append(f"init={expr_text(b.init)}")
    if b.reducer_op:
        extra.append(f"reducer={b.reducer_op}")
    if b.arrive_counts:
        extra.append(f"arrive={list(b.arrive_counts)}")
    if b.descriptor_kind:
        extra.append(f"kind={b.descriptor_kind}")
    tail = (" " + " ".join(extra)) if extra else ""
    return f"  alloc {b.name}: {b.space.value} {b.dtype}{list(b.shape)}{tail}"


def kernel_text(k: ir.Kernel) -> str:
    """The kernel as indented text; identical kernels print identically."""
    params = ", ".join(f"{b.name}: {b.dtype}{list(b.shape)}" for b in k.inputs)
    outs = ", ".join(f"{b.name}: {b.dtype}{list(b.shape)}" for b in k.outputs)
    blocks = ", ".join(v.name for v in k.block_vars)
    lines = [f"kernel {k.name}({params}) -> ({outs})",
             f"  grid={list(k.grid)} threads={k.threads} blocks=({blocks})"]
    if k.attrs.get("cluster_dims"):
        lines[-1] += f" cluster={list(k.attrs['cluster_dims'])}"
    lines += [_buffer_line(b) for b in k.allocations]
    lines += [f"  view {v.name}: {v.dtype}{list(v.shape)} = {v.view_of.name}"
              for v in k.attrs.get("views", ())]
    lines += _body(k.body, 1)
    return "\n".join(lines) + "\n"
