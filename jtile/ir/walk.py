"""Walking the IR: every statement, every expression, in program order."""

from __future__ import annotations

from typing import Iterator

from jtile.ir import nodes as ir


def _lowered():
    from jtile.ir import lowered  # lowered nodes build on the tile nodes, not the reverse

    return lowered


def _tile_of(s):
    """A lowered instruction stands for the tile op it implements when reads and writes are
    asked for; a tile op stands for itself."""
    tile = getattr(s, "tile", None)
    if tile is not None and not isinstance(s, _pipelines()):
        return tile
    return s


def _pipelines() -> tuple:
    lowered = _lowered()
    return (lowered.MbarrierPipeline, lowered.CpAsyncPipeline)


def child_bodies(s) -> tuple:
    if isinstance(s, _lowered().MbarrierPipeline):
        return (tuple(s.loads) + tuple(s.body),)
    if isinstance(s, _lowered().CpAsyncPipeline):
        return (tuple(s.copies) + tuple(s.body),)
    if isinstance(s, (ir.For, ir.ParallelFor, ir.While)):
        return (s.body,)
    if isinstance(s, ir.IfThenElse):
        return (s.then_body, s.else_body)
    return ()


def is_region(s) -> bool:
    """Whether `s` is a T.ws region (an `IfThenElse` naming the range of threads it runs on)."""
    return isinstance(s, ir.IfThenElse) and s.threads is not None


def regions(body) -> list:
    """The T.ws regions in `body`, at any depth, in program order."""
    return [s for s in statements(body) if is_region(s)]


def statements(body) -> Iterator:
    """Every statement of `body`, parents before children, in program order."""
    for s in body:
        yield s
        for child in child_bodies(s):
            yield from statements(child)


def sub_expressions(e) -> Iterator:
    """`e` and every expression inside it."""
    yield e
    if isinstance(e, ir.BinOp):
        yield from sub_expressions(e.a)
        yield from sub_expressions(e.b)
    elif isinstance(e, (ir.UnOp,)):
        yield from sub_expressions(e.a)
    elif isinstance(e, ir.Cast):
        yield from sub_expressions(e.value)
    elif isinstance(e, ir.Select):
        for x in (e.cond, e.a, e.b):
            yield from sub_expressions(x)
    elif isinstance(e, ir.Call):
        for x in e.args:
            yield from sub_expressions(x)
    elif isinstance(e, ir.Load):
        for x in e.indices:
            yield from sub_expressions(x)


def region_exprs(r) -> tuple:
    if isinstance(r, ir.Region):
        return tuple(r.starts)
    if isinstance(r, ir.Load):
        return (r,)
    return ()


def statement_exprs(s) -> tuple:
    """The expressions a statement evaluates itself (not those of nested statements)."""
    if isinstance(s, _pipelines()):
        return (s.tile.start, s.tile.extent)
    s = _tile_of(s)
    if isinstance(s, ir.Store):
        return tuple(s.indices) + (s.value,)
    if isinstance(s, ir.For):
        return (s.start, s.extent)
    if isinstance(s, (ir.IfThenElse, ir.While)):
        return (s.cond,)
    if isinstance(s, ir.Copy):
        return region_exprs(s.src) + region_exprs(s.dst)
    if isinstance(s, ir.ThreadCopy):
        predicate = (s.predicate,) if s.predicate is not None else ()
        return region_exprs(s.src) + region_exprs(s.dst) + predicate
    if isinstance(s, ir.Fill):
        return region_exprs(s.dst) + (s.value,)
    if isinstance(s, ir.Gemm):
        return region_exprs(s.a) + region_exprs(s.b) + region_exprs(s.c)
    if isinstance(s, ir.AtomicAdd):
        value = region_exprs(s.value) if isinstance(s.value, ir.Region) else (s.value,)
        return region_exprs(s.dst) + value
    if isinstance(s, ir.BarrierOp):
        return (s.index,) + ((s.arg,) if s.arg is not None else ())
    if isinstance(s, ir.Scan):
        return region_exprs(s.src) + region_exprs(s.dst)
    if isinstance(s, ir.Im2Col):
        return region_exprs(s.col) + (s.nhw_step, s.c_step)
    return ()


def loads(s) -> Iterator:
    """Every Load a statement evaluates (not in nested statements)."""
    for e in statement_exprs(s):
        for x in sub_expressions(e):
            if isinstance(x, ir.Load):
                yield x


def buffers_read(s) -> set:
    out = {load.buffer for load in loads(s)}
    s = _tile_of(s)
    if isinstance(s, (ir.Copy, ir.ThreadCopy)):
        out.add(s.src.buffer)
    elif isinstance(s, ir.Gemm):
        out |= {s.a.buffer, s.b.buffer, s.c.buffer}
    elif isinstance(s, ir.Reduce):
        out.add(s.src)
        if not s.clear:
            out.add(s.dst)
    elif isinstance(s, ir.AtomicAdd) and isinstance(s.value, ir.Region):
        out.add(s.value.buffer)
    elif isinstance(s, ir.Scan):
        out.add(s.src.buffer)
    elif isinstance(s, ir.Im2Col):
        out.add(s.img)
    return storage_of(out)


def storage_of(buffers) -> set:
    """The buffers that own the bytes: a view (T.view) stands for the buffer it views."""
    return {b if b.view_of is None else b.view_of for b in buffers}


def buffers_written(s) -> set:
    return storage_of(_buffers_written(s))


def _buffers_written(s) -> set:
    s = _tile_of(s)
    if isinstance(s, ir.Scan):
        return {s.dst.buffer}
    if isinstance(s, ir.Im2Col):
        return {s.col.buffer}
    if isinstance(s, ir.Store):
        return {s.buffer}
    if isinstance(s, (ir.Copy, ir.ThreadCopy)):
        return {s.dst.buffer}
    if isinstance(s, ir.Fill):
        return {s.dst.buffer}
    if isinstance(s, ir.Gemm):
        return {s.c.buffer}
    if isinstance(s, ir.Reduce):
        return {s.dst}
    if isinstance(s, ir.AtomicAdd):
        return {s.dst.buffer} | ({s.prev} if s.prev is not None else set())
    if isinstance(s, ir.FinalizeReducer):
        return {s.reducer}
    return set()


def touches(stmts, buffers) -> bool:
    """Whether any of `stmts` (or a statement nested in one) reads or writes one of `buffers`."""
    return any((deep_buffers_read(s) | deep_buffers_written(s)) & buffers for s in stmts)


def deep_buffers_written(s) -> set:
    out = set(buffers_written(s))
    for child in child_bodies(s):
        for inner in statements(child):
            out |= buffers_written(inner)
    return out


def deep_buffers_read(s) -> set:
    out = set(buffers_read(s))
    for child in child_bodies(s):
        for inner in statements(child):
            out |= buffers_read(inner)
    return out


def has_grid_barrier(body) -> bool:
    """Whether `body` holds a T.sync_grid (traced, or as the Barrier plan_barriers made of it):
    such a kernel is launched cooperatively and keeps one block per tile of its grid."""
    return any(getattr(s, "grid", False) is True for s in statements(body))
