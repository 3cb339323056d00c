"""T.copy, T.fill and T.atomic_add on tiles.

- Into or out of a fragment: each thread moves the elements it holds, in 16-byte vectors
  where the layout keeps them contiguous and the addresses are provably aligned.
- Between global and shared memory: the block's threads stride over 16-byte chunks; global to
  shared becomes cp.async on sm_80+ (zero-filled past the end of the global buffer).
- Thread-private buffers (T.alloc_local, T.alloc_var): every thread moves the whole tile.
Reads past the end of a global buffer give zero and writes past it are dropped.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math

from jtile.codegen.bounds import bounds_condition, region_in_bounds, unproven_bounds_condition
from jtile.codegen.expr import const_text
from jtile.codegen.padding import inside, vector_dividing
from jtile.codegen.parallel import guard_replicas, index_expr, unflatten
from jtile.errors import JtileTraceError
from jtile.ir import nodes as ir
from jtile.ir.affine import aligned_vector_width
from jtile.ir.types import MemorySpace

VECTOR_BYTES = 16


def _fail(em, loc, message):
    return JtileTraceError(f"{em.kernel.name} ({em.kernel.loc}): {loc}: {message}")


def region_index(em, region: ir.Region, tile: list) -> list:
    """Buffer indices (C) of the tile element whose squeezed indices are `tile`."""
    out, k = [], 0
    for start, extent in zip(region.starts, region.extents):
        s = em.expr(start)
        if extent == 1:
            out.append(s)
            continue
        out.append(tile[k] if s == "0" else f"{s} + {tile[k]}")
        k += 1
    return out


def _is_private(buf: ir.Buffer) -> bool:
    return buf.space in (MemorySpace.LOCAL, MemorySpace.VAR) or \
        (buf.space is MemorySpace.FRAGMENT and buf.reducer_op is not None)


def _whole_fragment(em, region: ir.Region, loc) -> None:
    buf = region.buffer
    if tuple(region.extents) != tuple(buf.shape):
        raise _fail(em, loc, f"T.copy on part of the fragment {buf.describe()} (tile "
                    f"{tuple(region.extents)}); fragments are copied whole")


def _contiguous_vector(em, layout, frag: ir.Buffer, other: ir.Region) -> int:
    """How many consecutive registers can move as one vector to/from `other`."""
    width = 1 << layout.contiguous_bits(frag.ndim - 1)
    buf = other.buffer
    if buf.space not in (MemorySpace.GLOBAL, MemorySpace.SHARED, MemorySpace.SHARED_DYN):
        return 1
    if other.extents[-1] == 1 and frag.shape[-1] != 1:
        return 1  # the fragment's last dim does not run along memory's contiguous dim
    bytes_ = max(buf.dtype.bytes, frag.dtype.bytes)
    width = aligned_vector_width(other, min(width, VECTOR_BYTES // bytes_, frag.shape[-1]))
    # A vector that starts inside a padded row must end inside it.
    return vector_dividing(width, frag.shape[-1])


def _fragment_tile(em, layout, frag, reg: str) -> list:
    tid = em.tile_thread()
    return [index_expr(layout, d, tid, reg) for d in range(frag.ndim) if frag.shape[d] != 1] or \
        ["0"]


def _copy_into_fragment(em, src: ir.Region, dst: ir.Region, loc) -> None:
    frag = dst.buffer
    _whole_fragment(em, dst, loc)
    layout = em.layouts[frag]
    width = _contiguous_vector(em, layout, frag, src)
    guard = src.buffer.space is MemorySpace.GLOBAL and not region_in_bounds(em, src)
    reg = em.temp("r")
    em.line("#pragma unroll")
    with em.block(f"for (int {reg} = 0; {reg} < {layout.num_registers}; {reg} += {width})"):
        tile = _fragment_tile(em, layout, frag, reg)
        idx = region_index(em, src, tile)
        elem = em.element(src.buffer, idx)
        dname, sdt, ddt = em.name(frag), src.buffer.dtype, frag.dtype
        zero = const_text(0, ddt)
        conds = inside(em, frag, reg) + ([bounds_condition(src.buffer, idx)] if guard else [])
        if width == 1:
            value = f"jt::cast<{ddt.c_name}>({elem})"
            if conds:
                value = f"({' && '.join(conds)}) ? {value} : {zero}"
            em.line(f"{dname}[{reg}] = {value};")
            return
        vec = em.temp("v")
        em.line(f"jt::vec<{sdt.c_name}, {width}> {vec};")
        load = f"{vec} = *reinterpret_cast<const jt::vec<{sdt.c_name}, {width}>*>(&{elem});"
        if conds:
            with em.block(f"if ({' && '.join(conds)})"):
                em.line(load)
            with em.block("else"):
                em.line("#pragma unroll")
                em.line(f"for (int u = 0; u < {width}; ++u) {vec}.v[u] = "
                        f"{const_text(0, sdt)};")
        else:
            em.line(load)
        em.line("#pragma unroll")
        em.line(f"for (int u = 0; u < {width}; ++u) {dname}[{reg} + u] = "
                f"jt::cast<{ddt.c_name}>({vec}.v[u]);")


def _copy_from_fragment(em, src: ir.Region, dst: ir.Region, loc) -> None:
    frag = src.buffer
    _whole_fragment(em, src, loc)
    layout = em.layouts[frag]
    width = _contiguous_vector(em, layout, frag, dst)
    guard = dst.buffer.space is MemorySpace.GLOBAL and not region_in_bounds(em, dst)
    reg = em.temp("r")
    em.line("#pragma unroll")
    with em.block(f"for (int {reg} = 0; {reg} < {layout.num_registers}; {reg} += {width})"):
        tile = _fragment_tile(em, layout, frag, reg)
        idx = region_index(em, dst, tile)
        elem = em.element(dst.buffer, idx)
        sname, ddt = em.name(frag), dst.buffer.dtype
        conds = inside(em, frag, reg)
        if layout.replicated_thread_mask:
            conds.append(f"({em.tile_thread()} & {layout.replicated_thread_mask}) == 0")
        if guard:
            conds.append(bounds_condition(dst.buffer, idx))
        if width == 1:
            stmt = f"{elem} = jt::cast<{ddt.c_name}>({sname}[{reg}]);"
        else:
            vec = em.temp("v")
            em.line(f"jt::vec<{ddt.c_name}, {width}> {vec};")
            em.line("#pragma unroll")
            em.line(f"for (int u = 0; u < {width}; ++u) {vec}.v[u] = "
                    f"jt::cast<{ddt.c_name}>({sname}[{reg} + u]);")
            stmt = f"*reinterpret_cast<jt::vec<{ddt.c_name}, {width}>*>(&{elem}) = {vec};"
        if conds:
            with em.block(f"if ({' && '.join(conds)})"):
                em.line(stmt)
        else:
            em.line(stmt)


def _cooperative_width(em, src: ir.Region, dst: ir.Region) -> int:
    if src.extents[-1] == 1 or dst.extents[-1] == 1:
        return 1
    width = VECTOR_BYTES // max(src.dtype.bytes, dst.dtype.bytes)
    # Every condition that holds at a width holds at its halves: the widest for both sides.
    width = min(aligned_vector_width(src, width), aligned_vector_width(dst, width))
    while width > 1 and src.extents[-1] % width:
        width //= 2
    return width


def emit_cooperative_copy(em, src: ir.Region, dst: ir.Region, *, use_async=True,
                          src_guard=None) -> None:
    """The block's threads stride over the tile in vectors (cp.async global->shared)."""
    shape = src.squeezed_shape() or (1,)
    width = _cooperative_width(em, src, dst)
    total = math.prod(shape)
    chunks = total // width
    src_guard = (src.buffer.space is MemorySpace.GLOBAL and not region_in_bounds(em, src)) \
        if src_guard is None else src_guard
    dst_guard = dst.buffer.space is MemorySpace.GLOBAL and not region_in_bounds(em, dst)
    async_ok = use_async and em.target.has_cp_async and src.buffer.space is MemorySpace.GLOBAL \
        and dst.buffer.space.is_shared and src.dtype is dst.dtype \
        and width * src.dtype.bytes in (4, 8, 16)
    e = em.temp("c")
    with em.strided_loop(e, chunks):
        tile = unflatten(f"({e} * {width})" if width > 1 else e, shape)
        sidx, didx = region_index(em, src, tile), region_index(em, dst, tile)
        selem, delem = em.element(src.buffer, sidx), em.element(dst.buffer, didx)
        scond = bounds_condition(src.buffer, sidx) if src_guard else None
        if async_ok and not dst_guard:
            nbytes = width * src.dtype.bytes
            if scond and nbytes == 16:
                em.line(f"jt::cp_async_16_zfill(&{delem}, &{selem}, {scond});")
            elif scond:
                with em.block(f"if ({scond})"):
                    em.line(f"jt::cp_async_{nbytes}(&{delem}, &{selem});")
                with em.block("else"):
                    _store_zero(em, dst.dtype, delem, width)
            else:
                em.line(f"jt::cp_async_{nbytes}(&{delem}, &{selem});")
            em.async_pending = True
            return
        sdt, ddt = src.dtype, dst.dtype
        if width == 1:
            value = f"jt::cast<{ddt.c_name}>({selem})"
            if scond:
                value = f"({scond}) ? {value} : {const_text(0, ddt)}"
            stmt = [f"{delem} = {value};"]
        else:
            vec_s, vec_d = em.temp("v"), em.temp("v")
            stmt = [f"jt::vec<{sdt.c_name}, {width}> {vec_s};"]
            load = f"{vec_s} = *reinterpret_cast<const jt::vec<{sdt.c_name}, {width}>*>(&{selem});"
            if scond:
                stmt.append(f"if ({scond}) {load} else {{ for (int u = 0; u < {width}; ++u) "
                            f"{vec_s}.v[u] = {const_text(0, sdt)}; }}")
            else:
                stmt.append(load)
            stmt.append(f"jt::vec<{ddt.c_name}, {width}> {vec_d};")
            stmt.append(f"for (int u = 0; u < {width}; ++u) {vec_d}.v[u] = "
                        f"jt::cast<{ddt.c_name}>({vec_s}.v[u]);")
            stmt.append(f"*reinterpret_cast<jt::vec<{ddt.c_name}, {width}>*>(&{delem}) = {vec_d};")
        if dst_guard:
            with em.block(f"if ({bounds_condition(dst.buffer, didx)})"):
                for text in stmt:
                    em.line(text)
        else:
            for text in stmt:
                em.line(text)


def _store_zero(em, dtype, elem, width):
    if width == 1:
        em.line(f"{elem} = {const_text(0, dtype)};")
    else:
        em.line(f"for (int u = 0; u < {width}; ++u) (&{elem})[u] = {const_text(0, dtype)};")


def _per_thread_copy(em, src: ir.Region, dst: ir.Region) -> None:
    """Every thread copies the whole tile (a thread-private buffer is involved)."""
    shape = src.squeezed_shape() or (1,)
    total = math.prod(shape)
    e = em.temp("p")
    guard = src.buffer.space is MemorySpace.GLOBAL and not region_in_bounds(em, src)
    dguard = dst.buffer.space is MemorySpace.GLOBAL and not region_in_bounds(em, dst)
    with _private_or_strided(em, e, total, private=True):
        tile = unflatten(e, shape)
        sidx, didx = region_index(em, src, tile), region_index(em, dst, tile)
        value = f"jt::cast<{dst.dtype.c_name}>({em.element(src.buffer, sidx)})"
        if guard:
            value = f"({bounds_condition(src.buffer, sidx)}) ? {value} : {const_text(0, dst.dtype)}"
        stmt = f"{em.element(dst.buffer, didx)} = {value};"
        if dguard:
            stmt = f"if ({bounds_condition(dst.buffer, didx)}) {stmt}"
        em.line(stmt)


def emit_staged_store(em, staged) -> None:
    """Fragment -> shared tile -> global memory in 16-byte vectors, or by TMA stores (see
    plan_store_staging), with the barriers plan_barriers placed."""
    s, stage = staged.tile, staged.stage
    em.comment_loc(s.loc)
    if staged.entry_barrier is not None:
        em.emit_barrier(staged.entry_barrier)
    if staged.panel_ring:
        _store_through_panel_ring(em, staged)
        return
    whole = ir.full_region(stage)
    with em.block(""):
        _copy_from_fragment(em, s.src, whole, s.loc)
    em.emit_barrier(staged.middle)
    if staged.tma_map is not None:
        from jtile.codegen.hopper import emit_tma_store

        emit_tma_store(em, staged)
        return
    with em.block(""):
        emit_cooperative_copy(em, whole, s.dst)


def _store_through_panel_ring(em, staged) -> None:
    """The tile's column panels in turn through the two panel slots of the stage: each panel's
    registers are written to slot `panel % 2` and, after one barrier, thread 0 issues its TMA
    store. Before that barrier thread 0 waits for the engine to finish reading every earlier
    panel, so the slot the next panel overwrites (the one before last) is free; the wait
    rarely stalls, as the engine had the whole write of this panel to read the last one. A
    tile of one panel has one slot: thread 0 waits for the last tile's store to be read, and a
    barrier frees the slot, before the threads write it (that store had the whole main loop)."""
    from jtile.codegen.hopper import issue_tma_boxes
    from jtile.passes.wgmma_selection import panel_layout

    s, stage = staged.tile, staged.stage
    frag = s.src.buffer
    _whole_fragment(em, s.src, s.loc)
    layout = em.layouts[frag]
    panels = panel_layout(stage)
    columns = panels.panel_columns
    low = columns.bit_length() - 1
    # Register bits choosing the panel: whether register `reg` belongs to panel p is known
    # when the unrolled loop is compiled (plan_shared_memory.panel_ring checked no thread bit
    # chooses one).
    panel_bits = [(r, bit[1] - low) for r, bit in enumerate(layout.reg_bits)
                  if bit[0] == 1 and bit[1] >= low]
    width = _contiguous_vector(em, layout, frag, ir.full_region(stage))
    tid = em.name(em.kernel.thread_var)
    slots = stage.shape[-1] // columns
    for panel, box in enumerate(staged.boxes):
        slot = panel % slots
        if slots == 1:
            with em.block(f"if ({tid} == 0)"):
                em.line("jt::tma_store_wait_read<0>();")
            em.emit_barrier(dataclasses.replace(staged.middle, fence_async=False))
        reg = em.temp("r")
        em.line("#pragma unroll")
        with em.block(f"for (int {reg} = 0; {reg} < {layout.num_registers}; {reg} += {width})"):
            mine = " && ".join([f"(({reg} >> {r}) & 1) == {(panel >> b) & 1}"
                                for r, b in panel_bits] + inside(em, frag, reg)) or "true"
            with em.block(f"if ({mine})"):
                row, col = _fragment_tile(em, layout, frag, reg)
                shift = (panel - slot) * columns
                elem = em.element(stage, [row, f"({col} - {shift})" if shift else col])
                ddt = stage.dtype
                vec = em.temp("v")
                em.line(f"jt::vec<{ddt.c_name}, {width}> {vec};")
                em.line("#pragma unroll")
                em.line(f"for (int u = 0; u < {width}; ++u) {vec}.v[u] = "
                        f"jt::cast<{ddt.c_name}>({em.name(frag)}[{reg} + u]);")
                store = f"*reinterpret_cast<jt::vec<{ddt.c_name}, {width}>*>(&{elem}) = {vec};"
                if layout.replicated_thread_mask:
                    store = f"if (({em.tile_thread()} & {layout.replicated_thread_mask}) == 0) " \
                        + store
                em.line(store)
        with em.block(f"if ({tid} == 0)"):
            em.line("jt::tma_store_wait_read<0>();")
        em.emit_barrier(staged.middle)
        with em.block(f"if ({tid} == 0)"):
            issue_tma_boxes(em, "tma_store", staged.tma_map, stage,
                            (dataclasses.replace(box, smem_byte_offset=slot * panels.panel_bytes),))


def emit_copy(em, s: ir.Copy) -> None:
    em.comment_loc(s.loc)
    src, dst = s.src, s.dst
    src_frag, dst_frag = em.is_tiled_fragment(src.buffer), em.is_tiled_fragment(dst.buffer)
    with em.block(""):
        if src_frag and dst_frag:
            _whole_fragment(em, src, s.loc)
            _whole_fragment(em, dst, s.loc)
            if em.layouts[src.buffer] != em.layouts[dst.buffer]:
                raise _fail(em, s.loc, f"T.copy between fragments {src.buffer.describe()} and "
                            f"{dst.buffer.describe()} with different layouts; go through shared "
                            "memory")
            reg = em.temp("r")
            em.line("#pragma unroll")
            em.line(f"for (int {reg} = 0; {reg} < {em.layouts[dst.buffer].num_registers}; "
                    f"++{reg}) {em.name(dst.buffer)}[{reg}] = "
                    f"jt::cast<{dst.dtype.c_name}>({em.name(src.buffer)}[{reg}]);")
        elif dst_frag:
            if _is_private(src.buffer):
                raise _fail(em, s.loc, "T.copy from a thread-private buffer into a fragment")
            _copy_into_fragment(em, src, dst, s.loc)
        elif src_frag:
            if _is_private(dst.buffer):
                raise _fail(em, s.loc, "T.copy from a fragment into a thread-private buffer")
            _copy_from_fragment(em, src, dst, s.loc)
        elif _is_private(src.buffer) or _is_private(dst.buffer):
            _per_thread_copy(em, src, dst)
        else:
            emit_cooperative_copy(em, src, dst)


@contextlib.contextmanager
def _private_or_strided(em, var: str, total: int, private: bool):
    """Every thread over the whole tile (thread-private buffers) or the threads striding."""
    if not private:
        with em.strided_loop(var, total):
            yield
        return
    em.line("#pragma unroll")
    with em.block(f"for (int {var} = 0; {var} < {total}; ++{var})"):
        yield


def emit_fill(em, s: ir.Fill) -> None:
    em.comment_loc(s.loc)
    region, buf = s.dst, s.dst.buffer
    value = em.typed(s.value, buf.dtype)
    if em.is_tiled_fragment(buf):
        _whole_fragment(em, region, s.loc)
        reg = em.temp("r")
        em.line("#pragma unroll")
        em.line(f"for (int {reg} = 0; {reg} < {em.layouts[buf].num_registers}; ++{reg}) "
                f"{em.name(buf)}[{reg}] = {value};")
        return
    shape = region.squeezed_shape() or (1,)
    total = math.prod(shape)
    private = _is_private(buf)
    e = em.temp("f")
    guard = buf.space is MemorySpace.GLOBAL and not region_in_bounds(em, region)
    with _private_or_strided(em, e, total, private):
        tile = unflatten(e, shape)
        idx = region_index(em, region, tile)
        stmt = f"{em.element(buf, idx)} = {value};"
        em.line(f"if ({bounds_condition(buf, idx)}) {stmt}" if guard else stmt)


def emit_atomic_add(em, s: ir.AtomicAdd) -> None:
    """T.atomic_add / atomic_max / atomic_min (s.op): jt::atomic_<op> per element."""
    em.comment_loc(s.loc)
    if isinstance(s.dst, ir.Load):
        buf = s.dst.buffer
        elem = em.element(buf, [em.expr(i) for i in s.dst.indices])
        bounds = unproven_bounds_condition(em, buf, s.dst.indices)
        stmt = f"jt::atomic_{s.op}(&{elem}, {em.typed(s.value, buf.dtype)});"
        if s.prev is not None:
            # return_prev: the element's value from before this thread's update.
            stmt = f"{em.element(s.prev, ['0'])} = {stmt}"
        with guard_replicas(em, True):
            em.line(f"if ({bounds}) {stmt}" if bounds else stmt)
        return
    src, dst = s.value, s.dst
    if em.is_tiled_fragment(src.buffer):
        frag = src.buffer
        _whole_fragment(em, src, s.loc)
        layout = em.layouts[frag]
        guard = dst.buffer.space is MemorySpace.GLOBAL and not region_in_bounds(em, dst)
        reg = em.temp("r")
        em.line("#pragma unroll")
        with em.block(f"for (int {reg} = 0; {reg} < {layout.num_registers}; ++{reg})"):
            idx = region_index(em, dst, _fragment_tile(em, layout, frag, reg))
            conds = inside(em, frag, reg)
            if layout.replicated_thread_mask:
                conds.append(f"({em.tile_thread()} & "
                             f"{layout.replicated_thread_mask}) == 0")
            if guard:
                conds.append(bounds_condition(dst.buffer, idx))
            stmt = (f"jt::atomic_{s.op}(&{em.element(dst.buffer, idx)}, "
                    f"jt::cast<{dst.dtype.c_name}>({em.name(frag)}[{reg}]));")
            em.line(f"if ({' && '.join(conds)}) {stmt}" if conds else stmt)
        return
    shape = src.squeezed_shape() or (1,)
    total = math.prod(shape)
    private = _is_private(src.buffer)
    e = em.temp("a")
    with _private_or_strided(em, e, total, private):
        tile = unflatten(e, shape)
        sidx, didx = region_index(em, src, tile), region_index(em, dst, tile)
        stmt = (f"jt::atomic_{s.op}(&{em.element(dst.buffer, didx)}, "
                f"jt::cast<{dst.dtype.c_name}>({em.element(src.buffer, sidx)}));")
        if dst.buffer.space is MemorySpace.GLOBAL and not region_in_bounds(em, dst):
            stmt = f"if ({bounds_condition(dst.buffer, didx)}) {stmt}"
        em.line(stmt)
