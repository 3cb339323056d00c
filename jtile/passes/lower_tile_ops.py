"""Instruction selection: tile ops become the instructions the target offers.

Every T.gemm becomes the instruction layout inference chose for it: on sm_90a a `WgmmaGemm`
(operands read through shared-memory matrix descriptors, A optionally from registers), before
that an `MmaSyncGemm` (ldmatrix + mma.sync on a warp grid), and an `FmaGemm` for inputs no
tensor core takes. On sm_90a a global->shared T.copy into a wgmma operand tile inside a
T.Pipelined loop becomes a `TmaLoad` (one TMA box per 32/64/128-byte swizzle panel), and a
T.atomic_add of a whole shared tile into a global tile a `TmaReduce` (the shared tile then
takes the panel layout). Copies,
fills, reductions and element-wise loops stay tile ops, printed by the generic emitters.
"""

from __future__ import annotations

import dataclasses
import functools

from jtile.ir import lowered as low
from jtile.ir import nodes as ir
from jtile.ir.affine import static_value
from jtile.ir.types import DType, MemorySpace
from jtile.passes.issue_ahead import issuable_ahead
from jtile.passes.layout import WgmmaTiling
from jtile.passes.wgmma_selection import (instruction_n, k_step, operand_major, panel_layout,
                                          tile_origin)

# CUtensorMapDataType per element type.
TMA_DTYPE = {DType.uint8: 0, DType.int8: 0, DType.float8_e4m3: 0, DType.float8_e5m2: 0,
             DType.uint16: 1, DType.int16: 1, DType.uint32: 2, DType.int32: 3, DType.uint64: 4,
             DType.int64: 5, DType.float16: 6, DType.float32: 7, DType.float64: 8,
             DType.bfloat16: 9, DType.tfloat32: 7}  # tfloat32: float32 storage

_PTX_TYPE = {DType.float16: "f16", DType.bfloat16: "bf16", DType.float8_e4m3: "e4m3",
             DType.float8_e5m2: "e5m2", DType.int8: "s8", DType.uint8: "u8"}


def _smem_operand(region: ir.Region, major: low.Major) -> low.SmemOperand:
    layout = panel_layout(region.buffer)
    (row, row_moves), (col, col_moves) = tile_origin(region)
    # Swizzled, 8-row groups SBO apart. K-major: rows `span` bytes apart, LBO unused (16);
    # MN-major: LBO steps from one panel of MN columns to the next.
    lbo = 16 if major is low.Major.K else layout.panel_bytes
    return low.SmemOperand(region, layout, major, lbo=lbo, sbo=8 * layout.span,
                           origin=(row, col), moves=(row_moves, col_moves))


def wgmma_function_name(gemm: ir.Gemm, inst_n: int, a_regs: bool) -> str:
    ab = _PTX_TYPE[gemm.a.dtype]
    if gemm.b.dtype is not gemm.a.dtype:  # mixed 8-bit inputs: "s8_u8", "e4m3_e5m2"
        ab += "_" + _PTX_TYPE[gemm.b.dtype]
    kind = "rs" if a_regs else "ss"
    ta = "t" if gemm.transpose_a else "n"
    tb = "n" if gemm.transpose_b else "t"  # 't': B is N-major (wgmma's imm-trans-b = 1)
    half = "_f16acc" if gemm.c.dtype is DType.float16 else ""  # .f16 accumulators
    return f"jt_wgmma_m64n{inst_n}k{k_step(gemm.a.dtype)}_{ab}_{kind}_{ta}{tb}{half}"


def _lower_gemm(s: ir.Gemm, tiling: WgmmaTiling) -> low.WgmmaGemm:
    a_regs = s.a.buffer.space is MemorySpace.FRAGMENT
    a = None if a_regs else _smem_operand(s.a, operand_major(s, "a"))
    b = _smem_operand(s.b, operand_major(s, "b"))
    inst_n = instruction_n(tiling)
    return low.WgmmaGemm(
        tile=s, a=a, b=b, m_per_wg=tiling.m_per_wg, n_per_wg=tiling.n_per_wg,
        wgs_along_m=tiling.wgs_m, wgs_along_n=tiling.wgs_n, inst_n=inst_n,
        k_step=k_step(s.a.dtype), function=wgmma_function_name(s, inst_n, a_regs), wait=0,
        loc=s.loc)


def tma_boxes(tile: ir.Region, smem: ir.Buffer, params: tuple):
    """`(parameter index, TmaBox per panel)` when the TMA engine can move the shared panel
    tile `smem` to or from the global `tile` (loads and stores alike), else None."""
    if tile.buffer.space is not MemorySpace.GLOBAL or tile.dtype is not smem.dtype \
            or tile.dtype not in TMA_DTYPE:
        return None
    layout = panel_layout(smem)
    if layout is None or smem.ndim != 2:
        return None
    rows, cols = smem.shape
    extents = tuple(tile.extents)
    shape = tuple(tile.buffer.shape)
    if len(shape) > 5 or extents[-1] != cols or any(e > n for e, n in zip(extents, shape)):
        return None  # (a tile larger than the tensor is clipped by guarded copies instead)
    outer = [e for e in extents[:-1] if e != 1]
    if (outer and outer != [rows]) or (not outer and rows != 1):
        return None
    # TMA needs 16-byte multiples for every global stride; a box side is at most 256.
    if (shape[-1] * tile.dtype.bytes) % 16 or rows > 256 or layout.panel_columns > 256:
        return None
    param = next((i for i, p in enumerate(params) if p is tile.buffer), None)
    if param is None:
        return None  # a view of a parameter: its tensor map would need the view's strides
    starts = tuple(reversed(tile.starts))  # innermost first
    boxes = []
    for panel in range(cols // layout.panel_columns):
        coords = (starts[0] + panel * layout.panel_columns,) + starts[1:] \
            if panel else starts
        boxes.append(low.TmaBox(panel * layout.panel_bytes, coords))
    return param, tuple(boxes)


def tma_load_for(copy: ir.Copy, params: tuple, panel_buffers: set, read_only: frozenset):
    """A TmaLoad for `copy` when the TMA engine can do it, else None."""
    src, dst = copy.src, copy.dst
    if dst.buffer not in panel_buffers or getattr(copy, "disable_tma", False):
        return None
    if not all(static_value(x) == 0 for x in dst.starts) or \
            tuple(dst.extents) != tuple(dst.buffer.shape):
        return None
    if not all(issuable_ahead(start, read_only) for start in src.starts):
        return None
    found = tma_boxes(src, dst.buffer, params)
    if found is None:
        return None
    param, boxes = found
    return low.TmaLoad(tile=copy, map_index=-1, boxes=boxes, bytes=dst.buffer.nbytes,
                       loc=copy.loc), param


def _tma_reduce_boxes(kernel: ir.Kernel, s: ir.AtomicAdd, target, non_panel: set,
                     read: set) -> tuple:
    """`(TmaBox per panel, None)` when the TMA engine can do the tile atomic add `s` (a shared
    tile added into a global one), else `(None, why not)`. `read`: the buffers the kernel
    reads anywhere."""
    from jtile.language.atomic import tma_reduce_operand_problem

    value, dst = s.value, s.dst
    if s.op != "add":
        return None, f"it adds; T.atomic_{s.op} is not a TMA reduce"
    problem = tma_reduce_operand_problem(value.buffer, dst.buffer)
    if problem is not None:
        return None, f"it {problem}"
    if not target.has_tma:
        return None, f"the TMA engine arrived with sm_90; the target is {target.arch}"
    buf = value.buffer
    if buf.view_of is not None or tuple(value.extents) != tuple(buf.shape) \
            or not all(static_value(x) == 0 for x in value.starts):
        return None, f"it reads a whole shared buffer, not a part or view of {buf.describe()}"
    if panel_layout(buf) is None:
        return None, (f"{buf.describe()} must be 2-D with rows of 32, 64 or a multiple of 128 "
                      "bytes and a multiple of 8 rows (the TMA swizzle panels)")
    if any(v.view_of is buf for v in kernel.attrs.get("views", ())):
        return None, f"a T.view of {buf.describe()} addresses it row-major"
    if buf in non_panel:
        return None, f"{buf.describe()} also feeds an mma.sync gemm, which needs another layout"
    if dst.buffer in read:
        return None, (f"the kernel reads {dst.buffer.describe()}, which the asynchronous update "
                      "would race with")
    found = tma_boxes(dst, buf, kernel.params)
    if found is None:
        return None, (f"the TMA engine cannot address the tile of {dst.buffer.describe()} (a "
                      "kernel parameter, at most 5-D, the tile's last dimension the shared "
                      "rows, other dimensions 1 but one of the shared tile's rows, 16-byte row "
                      "strides)")
    return found[1], None


def lower_tile_ops(kernel: ir.Kernel, target) -> ir.Kernel:
    tilings = kernel.attrs.get("mma", {})
    wgmma = {s: t for s, t in tilings.items() if isinstance(t, WgmmaTiling)}
    panel_buffers = set()
    for s in wgmma:
        for region in (s.a, s.b):
            if region.buffer.space.is_shared:
                panel_buffers.add(region.buffer)
    non_panel = {r.buffer for s in tilings if s not in wgmma for r in (s.a, s.b)}
    read_only = kernel.attrs.get("read_only_inputs", frozenset())

    @functools.cache
    def read_anywhere() -> frozenset:
        """The buffers the kernel reads (walked only for a kernel with a tile atomic add)."""
        from jtile.ir.walk import deep_buffers_read

        return frozenset().union(*(deep_buffers_read(x) for x in kernel.body))

    def lower_atomic(s: ir.AtomicAdd):
        """A shared tile added into a global one: a TmaReduce when the TMA engine can do it;
        use_tma=True demands it. (verify refuses tile atomics under a branch on the thread
        index, so the one thread that issues it is always there.)"""
        if not isinstance(s.value, ir.Region) or not s.value.buffer.space.is_shared:
            return s
        boxes, obstacle = _tma_reduce_boxes(kernel, s, target, non_panel, read_anywhere())
        if obstacle is not None:
            if s.use_tma:
                from jtile.errors import JtileTargetError

                raise JtileTargetError(
                    f"{kernel.name} ({kernel.loc}): {s.loc}: T.atomic_add(..., use_tma=True) of "
                    f"{s.value.buffer.describe()} into {s.dst.buffer.describe()}: the TMA "
                    f"engine cannot do this update: {obstacle}. Drop use_tma (jtile then adds "
                    "element by element)")
            return s
        panel_buffers.add(s.value.buffer)
        return low.TmaReduce(tile=s, map_index=-1, boxes=boxes, loc=s.loc)

    def lower_body(body, in_pipeline):
        out = []
        for s in body:
            if isinstance(s, ir.AtomicAdd):
                out.append(lower_atomic(s))
            elif isinstance(s, ir.Gemm) and s in wgmma:
                out.append(_lower_gemm(s, wgmma[s]))
            elif isinstance(s, ir.Gemm):
                # mma.sync on the warp grid layout inference chose, or FMAs for inputs no
                # tensor-core instruction takes.
                tiling = tilings.get(s)
                out.append(low.FmaGemm(tile=s, loc=s.loc) if tiling is None else
                           low.MmaSyncGemm(tile=s, tiling=tiling, loc=s.loc))
            elif isinstance(s, ir.Copy) and in_pipeline:
                found = tma_load_for(s, kernel.params, panel_buffers, read_only)
                if found is None:
                    out.append(s)
                    continue
                load, _ = found
                out.append(load)
            elif isinstance(s, ir.For):
                pipelined = s.kind is ir.LoopKind.PIPELINED and s.num_stages >= 2
                out.append(dataclasses.replace(s, body=tuple(lower_body(s.body, pipelined))))
            elif isinstance(s, ir.IfThenElse):
                out.append(dataclasses.replace(s, then_body=tuple(lower_body(s.then_body, False)),
                                    else_body=tuple(lower_body(s.else_body, False))))
            elif isinstance(s, ir.While):
                # A gemm given a wgmma tiling inside a traced `while` is lowered like any other.
                out.append(dataclasses.replace(s, body=tuple(lower_body(s.body, False))))
            else:
                out.append(s)
        return out

    body = tuple(lower_body(kernel.body, False))
    _check_no_gemm_left(kernel, body)
    attrs = dict(kernel.attrs)
    if panel_buffers:
        attrs.update(panel_buffers=frozenset(panel_buffers))
    return number_tensor_maps(kernel.replace(body=body, attrs=attrs))


def number_tensor_maps(kernel: ir.Kernel) -> ir.Kernel:
    """One CUtensorMap per distinct (tensor, box): every TmaLoad gets its map's index, and
    `kernel.attrs["tma_maps"]` lists (parameter index, a load using the map) in map order."""
    maps = []  # (key, param, load)

    def numbered(load):
        """A TmaLoad or TmaReduce with its map's index (one map serves both)."""
        tensor = load.tile.dst if isinstance(load, low.TmaReduce) else load.tile.src
        param = next(i for i, p in enumerate(kernel.params) if p is tensor.buffer)
        key = (param, load.smem_buffer.shape, tuple(tensor.extents), load.multicast)
        for index, (existing, _, _) in enumerate(maps):
            if existing == key:
                return dataclasses.replace(load, map_index=index)
        maps.append((key, param, load))
        return dataclasses.replace(load, map_index=len(maps) - 1)

    def walk(body):
        out = []
        for s in body:
            if isinstance(s, (low.TmaLoad, low.TmaReduce)):
                s = numbered(s)
            elif isinstance(s, low.MbarrierPipeline):
                s = dataclasses.replace(s, loads=tuple(numbered(x) for x in s.loads),
                                        body=tuple(walk(s.body)))
            elif isinstance(s, ir.For):
                s = dataclasses.replace(s, body=tuple(walk(s.body)))
            elif isinstance(s, ir.IfThenElse):
                s = dataclasses.replace(s, then_body=tuple(walk(s.then_body)),
                                        else_body=tuple(walk(s.else_body)))
            elif isinstance(s, ir.While):
                s = dataclasses.replace(s, body=tuple(walk(s.body)))
            out.append(s)
        return out

    body = tuple(walk(kernel.body))
    attrs = dict(kernel.attrs)
    if maps or "tma_maps" in attrs:
        attrs["tma_maps"] = tuple((param, load) for _, param, load in maps)
    return kernel.replace(body=body, attrs=attrs)


def _check_no_gemm_left(kernel: ir.Kernel, body: tuple) -> None:
    """Every T.gemm has an instruction after this pass (copies, fills, reductions and loops
    are still printed from their tile form)."""
    from jtile.errors import JtileError
    from jtile.ir.walk import statements

    left = [s for s in statements(body) if isinstance(s, ir.Gemm)]
    if left:
        raise JtileError(f"jtile internal: {kernel.name}: T.gemm at {left[0].loc} was not "
                         "lowered to an instruction (a gemm inside a construct lower_tile_ops "
                         "does not walk)")
