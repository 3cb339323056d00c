"""Fragment layout inference.

`T.gemm` fixes its accumulator's layout (the mma.sync one) and, when A is a fragment, A's;
`T.Parallel` loops give every fragment indexed by all the loop's variables the same layout
and the fragments indexed by some of them its projection; reductions project their source.
What stays undetermined gets the row-major element-wise layout. The result is stored in
`kernel.attrs["layouts"]` (Buffer -> Layout) and `kernel.attrs["mma"]` (Gemm -> MmaTiling).
"""

from __future__ import annotations

from jtile.errors import JtileTraceError
from jtile.ir import nodes as ir
from jtile.ir.types import MemorySpace
from jtile.ir.walk import loads, statements
from jtile.passes.layout import Layout, choose_mma_tiling, default_layout, is_power_of_two

VECTOR_BYTES = 16


def _fail(kernel, loc, message):
    where = f"{loc}: " if loc is not None else ""
    return JtileTraceError(f"{kernel.name} ({kernel.loc}): {where}{message}")


def is_tiled_fragment(buf: ir.Buffer) -> bool:
    """Fragments spread over threads (a reducer is a private copy per thread instead)."""
    return buf.space is MemorySpace.FRAGMENT and buf.reducer_op is None


def fragment_accesses(loop: ir.ParallelFor) -> list:
    """(buffer, dims) for each fragment access in the loop: `dims[k]` is the loop dimension
    indexing the fragment's dimension k, or None when the index is not a bare loop variable."""
    out = []
    for s in statements(loop.body):
        accesses = [(ld.buffer, ld.indices) for ld in loads(s)]
        if isinstance(s, ir.Store):
            accesses.append((s.buffer, s.indices))
        for buf, indices in accesses:
            if not is_tiled_fragment(buf):
                continue
            dims = []
            for index in indices:
                match = [d for d, v in enumerate(loop.vars) if index is v]
                dims.append(match[0] if match else None)
            out.append((buf, tuple(dims)))
    return out


def loop_driver(loop: ir.ParallelFor, layouts: dict):
    """The fragment whose layout spreads the loop: one indexed by all loop vars in order."""
    full = tuple(range(len(loop.vars)))
    candidates = [buf for buf, dims in fragment_accesses(loop)
                  if dims == full and tuple(buf.shape) == tuple(loop.extents)]
    for buf in candidates:
        if buf in layouts:
            return buf
    return candidates[0] if candidates else None


def _uses(kernel):
    reduced_rows, a_operands = set(), set()
    for s in statements(kernel.body):
        if isinstance(s, ir.Reduce):
            reduced_rows.add(s.src)
        if isinstance(s, ir.Gemm) and s.a.buffer.space is MemorySpace.FRAGMENT:
            a_operands.add(s.a.buffer)
    return reduced_rows, a_operands


def infer_layouts(kernel: ir.Kernel, target=None) -> ir.Kernel:
    layouts: dict = {}
    tilings: dict = {}
    threads = kernel.threads
    fragments = [b for b in kernel.allocations if is_tiled_fragment(b)]
    for buf in fragments:
        if not all(is_power_of_two(d) for d in buf.shape):
            raise _fail(kernel, buf.loc, f"fragment {buf.describe()}: every dimension must be a "
                        "power of 2 (fragments are spread over threads bit by bit)")
    reduced, a_operands = _uses(kernel)
    all_stmts = list(statements(kernel.body))

    # 1. gemm accumulators and register A operands.
    for s in all_stmts:
        if not isinstance(s, ir.Gemm):
            continue
        m, n = s.c.squeezed_shape()
        fast = s.a.dtype.bits == 16
        full_row = bool(a_operands) or s.c.buffer in reduced
        tiling = choose_mma_tiling(m, n, threads // 32, full_row) if fast else None
        if fast and tiling is None and full_row:
            tiling = choose_mma_tiling(m, n, threads // 32, False)
        if fast and tiling is None:
            raise _fail(kernel, s.loc, f"T.gemm: a {m}x{n} accumulator cannot be split into "
                        f"m16n8 tiles over {threads // 32} warps; use tile sizes that are "
                        "multiples of 16 x 8 per warp")
        c_layout = tiling.accumulator_layout(threads) if tiling else \
            default_layout((m, n), threads, 1)
        tilings[s] = tiling
        _assign(kernel, layouts, s.c.buffer, c_layout, s.loc, "T.gemm accumulator")
        if tiling and s.a.buffer.space is MemorySpace.FRAGMENT:
            if s.transpose_a:
                raise _fail(kernel, s.loc, "T.gemm: a fragment A cannot be transposed; store it "
                            "untransposed")
            k = s.a.squeezed_shape()[1]
            _assign(kernel, layouts, s.a.buffer, tiling.operand_a_layout(threads, k), s.loc,
                    "T.gemm A operand")

    # 2. propagate through loops, reductions and fragment copies; default what is left.
    while True:
        changed = True
        while changed:
            changed = _propagate(kernel, all_stmts, layouts)
        missing = [b for b in fragments if b not in layouts]
        if not missing:
            break
        buf = missing[0]
        vector = max(1, min(VECTOR_BYTES // buf.dtype.bytes, buf.shape[-1]))
        layouts[buf] = default_layout(tuple(buf.shape), threads, vector)

    _check_loops(kernel, all_stmts, layouts)
    attrs = dict(kernel.attrs, layouts=layouts, mma=tilings)
    return kernel.replace(attrs=attrs)


def _assign(kernel, layouts, buf, layout: Layout, loc, why) -> bool:
    old = layouts.get(buf)
    if old is None:
        layouts[buf] = layout
        return True
    if old != layout:
        raise _fail(kernel, loc, f"{why}: fragment {buf.describe()} is needed in two different "
                    f"layouts ({old.describe()} and {layout.describe()}); copy it into a "
                    "second fragment with T.copy through shared memory")
    return False


def _propagate(kernel, all_stmts, layouts) -> bool:
    changed = False
    for s in all_stmts:
        if isinstance(s, ir.ParallelFor):
            driver = loop_driver(s, layouts)
            if driver is None or driver not in layouts:
                continue
            base = layouts[driver]
            for buf, dims in fragment_accesses(s):
                if buf in layouts or any(d is None for d in dims):
                    continue
                if list(dims) != sorted(dims) or len(set(dims)) != len(dims):
                    continue
                if tuple(buf.shape) != tuple(s.extents[d] for d in dims):
                    continue
                layouts[buf] = base.project(tuple(dims))
                changed = True
        elif isinstance(s, ir.Reduce) and is_tiled_fragment(s.src) and s.src in layouts \
                and s.dst not in layouts:
            keep = tuple(d for d in range(s.src.ndim) if d != s.dim)
            layouts[s.dst] = layouts[s.src].project(keep)
            changed = True
        elif isinstance(s, ir.Copy):
            src, dst = s.src.buffer, s.dst.buffer
            if is_tiled_fragment(src) and is_tiled_fragment(dst) and src.shape == dst.shape:
                if src in layouts and dst not in layouts:
                    layouts[dst] = layouts[src]
                    changed = True
                elif dst in layouts and src not in layouts:
                    layouts[src] = layouts[dst]
                    changed = True
    return changed


def _check_loops(kernel, all_stmts, layouts) -> None:
    """Every fragment a loop touches must be held by the threads that run those iterations."""
    for s in all_stmts:
        if not isinstance(s, ir.ParallelFor):
            continue
        accesses = fragment_accesses(s)
        if not accesses:
            continue
        driver = loop_driver(s, layouts)
        if driver is None:
            names = ", ".join(sorted({b.name for b, _ in accesses}))
            raise _fail(kernel, s.loc, f"T.Parallel{tuple(s.extents)} touches fragments "
                        f"({names}) but none of them is indexed by all the loop variables in "
                        "order with the loop's shape; such a loop cannot be spread over threads")
        base = layouts[driver]
        for buf, dims in accesses:
            if buf is driver:
                continue
            if any(d is None for d in dims) or len(set(dims)) != len(dims) \
                    or list(dims) != sorted(dims):
                raise _fail(kernel, s.loc, f"fragment {buf.describe()} is indexed in "
                            f"T.Parallel{tuple(s.extents)} by something other than the loop "
                            "variables in order; fragments can only be read at the element the "
                            "running thread holds")
            if not base.compatible_projection(layouts[buf], tuple(dims)):
                raise _fail(kernel, s.loc, f"fragments {driver.describe()} and {buf.describe()} "
                            f"are laid out differently over threads (layouts "
                            f"{base.describe()} vs {layouts[buf].describe()}), so one T.Parallel "
                            "loop cannot touch both; copy one through shared memory")
