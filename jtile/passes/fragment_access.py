"""How a fragment element is reached: the indexing rules both interpret mode and the compiler
enforce, and the layout algebra that decides which thread runs which T.Parallel iteration.

A fragment (`T.alloc_fragment`) is a tile spread over the block's threads, so its elements can
only be named where it is clear which thread holds them: inside a `T.Parallel` loop, with each
index either one of the loop's variables or an expression that does not depend on them (the
same for every iteration, a "uniform" index such as `v[0]` or a serial loop's counter). The
compiler then chooses layouts so that the running thread holds every element an iteration
touches: a vector read as `v[i]` takes the projection of the loop's layout, a loop that only
reads vectors takes the layout lifted from them, and a tile read at a uniform index keeps that
dimension in every thread's registers.
"""

from __future__ import annotations

from typing import Optional

from jtile.ir import nodes as ir
from jtile.ir.types import MemorySpace
from jtile.ir.walk import loads, statement_exprs, statements, sub_expressions
from jtile.passes.layout import Layout, log2

# An access dimension that does not depend on the loop's variables.
UNIFORM = "uniform"


def is_tiled_fragment(buf: ir.Buffer) -> bool:
    """Fragments spread over threads (a reducer is a private copy per thread instead)."""
    return buf.space is MemorySpace.FRAGMENT and buf.reducer_op is None


def is_scalar_fragment(buf: ir.Buffer) -> bool:
    """A one-element fragment (TileLang's `T.alloc_fragment([1], ...)` running max or sum):
    every thread holds its element, so it may also be named outside T.Parallel, as in
    TileLang, where each thread reads or writes its own copy."""
    return all(d == 1 for d in buf.shape)


def _reads_thread_index(e) -> bool:
    return any(isinstance(x, ir.Var) and x.kind is ir.VarKind.THREAD for x in sub_expressions(e))


def index_dim(loop: ir.ParallelFor, index):
    """The loop dimension `index` is (a bare loop variable), UNIFORM when it does not depend
    on the loop's variables or the thread index, else None (a mixed expression like `i + 1`)."""
    for d, v in enumerate(loop.vars):
        if index is v:
            return d
    for x in sub_expressions(index):
        if isinstance(x, ir.Var) and (any(x is v for v in loop.vars) or x.kind is ir.VarKind.THREAD):
            return None
    return UNIFORM


def fragment_accesses(loop: ir.ParallelFor) -> list:
    """(buffer, dims, statement) for each fragment access in the loop: `dims[k]` is the loop
    dimension indexing the fragment's dimension k, UNIFORM, or None (see `index_dim`)."""
    out = []
    for s in statements(loop.body):
        accesses = [(ld.buffer, ld.indices) for ld in loads(s)]
        if isinstance(s, ir.Store):
            accesses.append((s.buffer, s.indices))
        for buf, indices in accesses:
            if is_tiled_fragment(buf):
                out.append((buf, tuple(index_dim(loop, i) for i in indices), s))
    return out


def access_rule_broken(dims: tuple) -> Optional[str]:
    """Why an access with these dims can never be held by the running thread, or None."""
    if any(d is None for d in dims):
        return ("each index must be one of the loop variables or an expression that does not "
                "depend on them (the same for every iteration); an index that mixes a loop "
                "variable or the thread index into an expression (like i + 1 or 2 * j) names "
                "an element another thread may hold")
    loop_dims = [d for d in dims if d is not UNIFORM]
    if len(set(loop_dims)) != len(loop_dims):
        return ("a loop variable indexes two dimensions (a diagonal); no layout puts both in "
                "the same thread")
    return None


def fragment_rule_violations(kernel: ir.Kernel):
    """(statement, buffer, rule) for every fragment element access breaking the indexing rules:
    outside T.Parallel, inside nested T.Parallel loops, or with mixed indices."""

    def visit(body, loop):
        for s in body:
            if loop is None:
                if isinstance(s, ir.ParallelFor):
                    yield from visit(s.body, s)
                    continue
                for e in statement_exprs(s):
                    for x in sub_expressions(e):
                        if isinstance(x, ir.Load) and is_tiled_fragment(x.buffer) and \
                                not is_scalar_fragment(x.buffer):
                            yield s, x.buffer, _OUTSIDE
                if isinstance(s, ir.Store) and is_tiled_fragment(s.buffer) and \
                        not is_scalar_fragment(s.buffer):
                    yield s, s.buffer, _OUTSIDE
            elif isinstance(s, ir.ParallelFor):
                yield s, None, ("T.Parallel loops cannot be nested (the outer one already spreads "
                                "its iterations over the threads); use one T.Parallel over all "
                                "dimensions")
                continue
            for child in ir_children(s):
                yield from visit(child, loop)
        if loop is not None and body is loop.body:
            for buf, dims, s in fragment_accesses(loop):
                rule = access_rule_broken(dims)
                if rule is not None:
                    yield s, buf, f"in T.Parallel{tuple(loop.extents)}: {rule}"

    yield from visit(kernel.body, None)


_OUTSIDE = ("is indexed outside a T.Parallel loop over it; fragments are spread over threads, "
            "so element access needs T.Parallel (or use T.alloc_local / T.alloc_var); only "
            "one-element fragments may be named anywhere")


def ir_children(s) -> tuple:
    if isinstance(s, ir.For):
        return (s.body,)
    if isinstance(s, ir.IfThenElse):
        return (s.then_body, s.else_body)
    return ()


# ----------------------------------------------------------------------------- layout algebra


def _bits(extent: int) -> int:
    return log2(extent)


def _map_bit(bit, dims: tuple, shape: tuple):
    """A loop-layout bit (loop dim, bit) as the bit of a fragment accessed with `dims`."""
    if bit is None:
        return None
    for k, d in enumerate(dims):
        if d == bit[0] and d is not UNIFORM and bit[1] < _bits(shape[k]):
            return (k, bit[1])
    return None


def access_layout(loop_layout: Layout, shape: tuple, dims: tuple) -> Layout:
    """The layout a fragment of `shape`, accessed with `dims` (loop dims or UNIFORM) in a loop
    laid out as `loop_layout`, needs so that every iteration finds its element in the running
    thread: the loop's thread bits projected, the rest of the fragment in registers."""
    extents = loop_layout.shape
    if all(d is not UNIFORM for d in dims) and \
            all(shape[k] == extents[d] for k, d in enumerate(dims)):
        return loop_layout.project(tuple(dims))
    threads = tuple(_map_bit(b, dims, shape) for b in loop_layout.thread_bits)
    regs = [m for m in (_map_bit(b, dims, shape) for b in loop_layout.reg_bits) if m is not None]
    used = set(regs) | {b for b in threads if b is not None}
    regs += [(k, b) for k in reversed(range(len(shape))) for b in range(_bits(shape[k]))
             if (k, b) not in used]
    return Layout(tuple(shape), threads, tuple(regs))


def lift_layout(layout: Layout, dims: tuple, extents: tuple) -> Optional[Layout]:
    """A layout over a loop's iteration space under which the fragment laid out as `layout`,
    accessed with `dims`, is local to the running thread; None when none exists (a thread bit
    of the fragment selects a dimension indexed uniformly, or beyond the loop's extent).

    Loop bits the fragment does not fix go first to the threads that hold replicas (so the
    loop is spread over them, consecutive threads taking consecutive iterations), then to
    registers.
    """
    threads, regs, used = [], [], set()
    for b in layout.thread_bits:
        if b is None:
            threads.append(None)
            continue
        d = dims[b[0]]
        if d is UNIFORM or b[1] >= _bits(extents[d]):
            return None
        threads.append((d, b[1]))
        used.add((d, b[1]))
    for k, bit in layout.reg_bits:
        d = dims[k]
        if d is not UNIFORM and bit < _bits(extents[d]):
            regs.append((d, bit))
            used.add((d, bit))
    remaining = [(d, b) for d in reversed(range(len(extents))) for b in range(_bits(extents[d]))
                 if (d, b) not in used]
    for t, b in enumerate(threads):
        if b is None and remaining:
            threads[t] = remaining.pop(0)
    return Layout(tuple(extents), tuple(threads), tuple(regs + remaining))


def held_locally(loop_layout: Optional[Layout], layout: Layout, shape: tuple, dims: tuple) -> bool:
    """Whether every thread running an iteration of a loop laid out as `loop_layout` holds, in
    its own registers at a compile-time register index, the element it accesses."""
    if loop_layout is None:
        # A strided loop: only elements every thread holds, at uniform indices.
        return all(d is UNIFORM for d in dims) and all(b is None for b in layout.thread_bits)
    return all(layout.thread_bits[t] == _map_bit(b, dims, shape)
               for t, b in enumerate(loop_layout.thread_bits))


# ----------------------------------------------------------------------------- whole tiles


def _is_private(buf: ir.Buffer) -> bool:
    return buf.space in (MemorySpace.LOCAL, MemorySpace.VAR) or \
        (buf.space is MemorySpace.FRAGMENT and buf.reducer_op is not None)


def fragment_tile_violations(kernel: ir.Kernel):
    """(location, rule) for fragment tile rules that hold whatever the layouts: every
    dimension a power of 2; copied and filled whole; never exchanged with a thread-private
    buffer by T.copy; as a gemm's A operand, untransposed and 16-bit."""
    for buf in kernel.allocations:
        if is_tiled_fragment(buf) and not all(d > 0 and d & (d - 1) == 0 for d in buf.shape):
            yield buf.loc, (f"fragment {buf.describe()}: every dimension must be a power of 2 "
                            "(fragments are spread over threads bit by bit)")
    for s in statements(kernel.body):
        regions = ()
        if isinstance(s, ir.Copy):
            regions = (s.src, s.dst)
            src, dst = s.src.buffer, s.dst.buffer
            if (is_tiled_fragment(src) and _is_private(dst)) or \
                    (is_tiled_fragment(dst) and _is_private(src)):
                yield s.loc, (f"T.copy between fragment and thread-private buffer "
                              f"({src.describe()} -> {dst.describe()}): a fragment is spread "
                              "over the threads, a private buffer is whole in each; go through "
                              "a shared buffer, or use a T.Parallel loop")
        elif isinstance(s, ir.Fill):
            regions = (s.dst,)
        for r in regions:
            if isinstance(r, ir.Region) and is_tiled_fragment(r.buffer) and \
                    tuple(r.extents) != tuple(r.buffer.shape):
                yield s.loc, (f"{'T.copy' if isinstance(s, ir.Copy) else 'T.fill'} on part of "
                              f"the fragment {r.buffer.describe()} (tile {tuple(r.extents)}); "
                              "fragments are copied and filled whole")
        if isinstance(s, ir.Gemm) and is_tiled_fragment(s.a.buffer):
            if s.transpose_a:
                yield s.loc, "T.gemm: a fragment A cannot be transposed; store it untransposed"
            if s.a.dtype.bits != 16:
                yield s.loc, (f"T.gemm with a fragment A needs 16-bit inputs (tensor cores); "
                              f"A {s.a.buffer.describe()} is {s.a.dtype}: put A in shared memory")
