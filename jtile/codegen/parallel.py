"""T.Parallel loops: spread over threads by the layout of the fragments they touch.

A loop over a fragment's shape runs, in each thread, over the registers that thread holds
(fully unrolled, so register indices are compile-time constants); the loop variables are
rebuilt from the thread index and the register index. A loop that only reads vectors runs by
the layout lifted from them (`infer_layouts.loop_layout`). A loop that touches no fragment, or
only elements every thread holds, is a plain strided loop over the tile's elements.
"""

from __future__ import annotations

import contextlib
import math

from jtile.codegen.cuda import ParallelContext
from jtile.errors import JtileTraceError
from jtile.ir import nodes as ir
from jtile.ir.types import MemorySpace
from jtile.ir.walk import deep_buffers_written
from jtile.passes.fragment_access import access_sources, index_dim
from jtile.passes.index_bits import ONE, ZERO, UniformBit
from jtile.passes.infer_layouts import loop_layout
from jtile.passes.layout import Layout, is_exact, log2, padded


def bit_runs(bits, dim: int):
    """[(source bit, logical bit, length)] runs of consecutive bits selecting `dim`."""
    runs = []
    for src, bit in enumerate(bits):
        if bit is None or bit[0] != dim:
            continue
        if runs and runs[-1][0] + runs[-1][2] == src and runs[-1][1] + runs[-1][2] == bit[1]:
            runs[-1] = (runs[-1][0], runs[-1][1], runs[-1][2] + 1)
        else:
            runs.append((src, bit[1], 1))
    return runs


def bits_expr(source: str, runs) -> str:
    """Gather the runs' bits out of `source` into their logical positions."""
    parts = []
    for src, dst, length in runs:
        mask = (1 << length) - 1
        shifted = f"({source} >> {src})" if src else source
        piece = f"({shifted} & {mask})"
        parts.append(f"({piece} << {dst})" if dst else piece)
    return " | ".join(parts) if parts else "0"


def index_expr(layout: Layout, dim: int, tid: str, reg: str) -> str:
    """Logical index along `dim` of register `reg` in thread `tid`."""
    t = bits_expr(tid, bit_runs(layout.thread_bits, dim))
    r = bits_expr(reg, bit_runs(layout.reg_bits, dim))
    if t == "0":
        return f"({r})"
    if r == "0":
        return f"({t})"
    return f"(({t}) | ({r}))"


def unflatten(flat: str, shape) -> list:
    """Row-major indices (C expressions) of element `flat` of a tile of `shape`."""
    out, stride = [], math.prod(shape)
    for extent in shape:
        stride //= extent
        out.append(f"({flat} / {stride}) % {extent}" if stride > 1 else f"{flat} % {extent}")
    return out


def _register_bits(em, layout: Layout, sources: tuple, bit_of_loop, merge: bool) -> str:
    """The register index (C) of the element whose index bits come from `sources`: register
    bit r of `layout` is the source of the index bit it selects. With `merge`, runs of
    consecutive bits of one value move with one shift and mask; otherwise each bit on its own
    (inside an unrolled T.Parallel every piece folds to a constant anyway)."""
    runs = []  # [value, first source bit, first register bit, length]
    const = 0
    for r, (dim, bit) in enumerate(layout.reg_bits):
        s = sources[dim][bit]
        if s == ZERO:
            continue
        if s == ONE:
            const |= 1 << r
            continue
        value, vbit = (f"({em.expr(s.expr)})", s.bit) if isinstance(s, UniformBit) else \
            bit_of_loop(s)
        last = runs[-1] if runs else None
        if merge and last and last[0] == value and last[1] + last[3] == vbit and \
                last[2] + last[3] == r:
            last[3] += 1
        else:
            runs.append([value, vbit, r, 1])
    parts = []
    for value, vbit, r, length in runs:
        if merge:
            parts.append(bits_expr(value, [(vbit, r, length)]))
            continue
        shifted = f"({value} >> {vbit})" if vbit else value
        piece = f"({shifted} & 1)"
        parts.append(f"({piece} << {r})" if r else piece)
    if const:
        parts.append(str(const))
    return " | ".join(parts) if parts else "0"


def fragment_register(em, buf: ir.Buffer, indices: tuple, loc=None) -> str:
    """The register of `buf` holding buf[indices] inside the current T.Parallel loop.

    A register bit of `buf` selecting an index bit read from a loop variable is the loop
    register's bit for it (a compile-time constant once the loop is unrolled), or, for a
    fragment every thread holds, the thread index's bit (or, in a strided loop, the loop
    variable's); one selecting a uniform index bit is that bit of the index itself.
    """
    ctx = em.parallel
    layout = em.layouts[buf]
    where = f"{loc}: " if loc is not None else ""

    def fail(why):
        return JtileTraceError(f"{em.kernel.name} ({em.kernel.loc}): {where}fragment "
                               f"{buf.describe()} {why}")

    dims = tuple(index_dim(ctx.loop, i, buf.shape[k]) for k, i in enumerate(indices))
    if any(d is None for d in dims):
        raise fail("is indexed by something other than the loop variables, a uniform index or "
                   "a bit-exact map of the loop variables")
    extents = ctx.layout.shape if ctx.layout is not None else ctx.loop.extents
    sources = access_sources(tuple(extents), tuple(buf.shape), dims, tuple(indices))

    def bit_of_loop(source):
        d, bit = source
        if ctx.layout is None:
            return em.name(ctx.loop.vars[d]), bit
        if source in ctx.layout.reg_bits:
            return ctx.reg_var, ctx.layout.reg_bits.index(source)
        if source in ctx.layout.thread_bits:
            return em.tile_thread(), ctx.layout.thread_bits.index(source)
        raise fail("is not held by the thread running this iteration")

    return _register_bits(em, layout, sources, bit_of_loop, merge=False)


def replicated_register(em, buf: ir.Buffer, indices: tuple) -> str:
    """The register of buf[indices] in a fragment every thread holds whole (named outside
    T.Parallel): every index bit is a bit of the index's value."""
    layout = em.layouts[buf]
    sources = tuple(tuple(UniformBit(index, b) for b in range(log2(padded(extent))))
                    for index, extent in zip(indices, buf.shape))
    return f"({_register_bits(em, layout, sources, None, merge=True)})"


@contextlib.contextmanager
def guard_replicas(em, needed: bool):
    """Lets one replica of a replicated fragment element do a side effect (a store to shared
    or global memory, an atomic, a reducer update)."""
    ctx = em.parallel
    mask = ctx.layout.replicated_thread_mask if ctx is not None and ctx.layout is not None else 0
    if needed and mask:
        with em.block(f"if (({em.tile_thread()} & {mask}) == 0)"):
            yield
    else:
        yield


def emit_parallel(em, loop: ir.ParallelFor) -> None:
    if em.parallel is not None:
        raise JtileTraceError(f"{em.kernel.name} ({em.kernel.loc}): {loop.loc}: T.Parallel "
                              "loops cannot be nested; use one T.Parallel over all dimensions")
    em.comment_loc(loop.loc)
    layout = loop_layout(loop, em.layouts)
    tid = em.tile_thread()
    with em.block(""):
        if layout is not None:
            reg = em.temp("r")
            em.line("#pragma unroll")
            with em.block(f"for (int {reg} = 0; {reg} < {layout.num_registers}; ++{reg})"):
                for d, var in enumerate(loop.vars):
                    # (void): bodies that only touch fragments never read the index itself.
                    em.line(f"const int {em.name(var)} = {index_expr(layout, d, tid, reg)}; "
                            f"(void){em.name(var)};")
                em.parallel = ParallelContext(loop, layout, reg)
                try:
                    em.body(_unguarded_body(em, loop, layout))
                finally:
                    em.parallel = None
            return
        flat = em.temp("e")
        total = math.prod(loop.extents)
        if _fills_private_buffers(loop):
            # As in TileLang, a loop whose stores all go to thread-private buffers runs whole
            # in every thread: each thread fills its own copy (spread over the threads, each
            # copy would be left mostly unwritten).
            em.line("#pragma unroll" if total <= 64 else "#pragma unroll 4")
            elements = em.block(f"for (int {flat} = 0; {flat} < {total}; ++{flat})")
        else:
            elements = em.strided_loop(flat, total)
        with elements:
            for var, index in zip(loop.vars, unflatten(flat, loop.extents)):
                em.line(f"const int {em.name(var)} = {index};")
            em.parallel = ParallelContext(loop, None, flat)
            try:
                em.body(loop.body)
            finally:
                em.parallel = None


def _unguarded_body(em, loop: ir.ParallelFor, layout: Layout) -> tuple:
    """The loop's body without pad_parallel_loops' guard when the layout is exact over the
    extents as written: the threads that exist run no added iteration."""
    if loop.padded_from is None or len(loop.body) != 1 or \
            not isinstance(loop.body[0], ir.IfThenElse) or \
            not is_exact(layout, loop.padded_from, em.tile_threads()):
        return loop.body
    return loop.body[0].then_body


def _fills_private_buffers(loop: ir.ParallelFor) -> bool:
    """Whether every buffer the loop writes is thread-private (local or var)."""
    written = deep_buffers_written(loop)
    return bool(written) and all(
        b.space in (MemorySpace.LOCAL, MemorySpace.VAR) for b in written)
