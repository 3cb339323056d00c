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
from jtile.passes.fragment_access import UNIFORM, index_dim
from jtile.passes.infer_layouts import loop_layout
from jtile.passes.layout import Layout, log2


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


def fragment_register(em, buf: ir.Buffer, indices: tuple, loc=None) -> str:
    """The register of `buf` holding buf[indices] inside the current T.Parallel loop.

    A register bit of `buf` selecting a dimension indexed by a loop variable is the loop
    register's bit for the same logical bit (a compile-time constant once the loop is
    unrolled); one selecting a dimension indexed uniformly is that bit of the index itself.
    """
    ctx = em.parallel
    layout = em.layouts[buf]
    where = f"{loc}: " if loc is not None else ""

    def fail(why):
        return JtileTraceError(f"{em.kernel.name} ({em.kernel.loc}): {where}fragment "
                               f"{buf.describe()} {why}")

    dims = [index_dim(ctx.loop, i) for i in indices]
    if any(d is None for d in dims):
        raise fail("is indexed by something other than the loop variables or a uniform index")
    parts = []
    for r, (dim, bit) in enumerate(layout.reg_bits):
        d = dims[dim]
        if d is UNIFORM:
            value = f"(({em.expr(indices[dim])}) >> {bit})" if bit else f"({em.expr(indices[dim])})"
            piece = f"({value} & 1)"
        elif ctx.layout is not None and (d, bit) in ctx.layout.reg_bits:
            src = ctx.layout.reg_bits.index((d, bit))
            shifted = f"({ctx.reg_var} >> {src})" if src else ctx.reg_var
            piece = f"({shifted} & 1)"
        elif ctx.layout is not None and bit >= log2(ctx.layout.shape[d]):
            continue  # beyond the loop's extent: this index bit is always 0
        else:
            raise fail("is not held by the thread running this iteration")
        parts.append(f"({piece} << {r})" if r else piece)
    return " | ".join(parts) if parts else "0"


@contextlib.contextmanager
def guard_replicas(em, needed: bool):
    """Lets one replica of a replicated fragment element do a side effect (a store to shared
    or global memory, an atomic, a reducer update)."""
    ctx = em.parallel
    mask = ctx.layout.replicated_thread_mask if ctx is not None and ctx.layout is not None else 0
    if needed and mask:
        with em.block(f"if (({em.name(em.kernel.thread_var)} & {mask}) == 0)"):
            yield
    else:
        yield


def emit_parallel(em, loop: ir.ParallelFor) -> None:
    if em.parallel is not None:
        raise JtileTraceError(f"{em.kernel.name} ({em.kernel.loc}): {loop.loc}: T.Parallel "
                              "loops cannot be nested; use one T.Parallel over all dimensions")
    em.comment_loc(loop.loc)
    layout = loop_layout(loop, em.layouts)
    tid = em.name(em.kernel.thread_var)
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
                    em.body(loop.body)
                finally:
                    em.parallel = None
            return
        flat = em.temp("e")
        with em.strided_loop(flat, math.prod(loop.extents)):
            for var, index in zip(loop.vars, unflatten(flat, loop.extents)):
                em.line(f"const int {em.name(var)} = {index};")
            em.parallel = ParallelContext(loop, None, flat)
            try:
                em.body(loop.body)
            finally:
                em.parallel = None
