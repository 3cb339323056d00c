"""How a fragment element is reached: the indexing rules both interpret mode and the compiler
enforce, and the layout algebra that decides which thread runs which T.Parallel iteration.

A fragment (`T.alloc_fragment`) is a tile spread over the block's threads. Inside a
`T.Parallel` loop each index names its element through the loop's variables: a bare variable,
an expression that does not depend on them (the same for every iteration, a "uniform" index
such as `v[0]` or a serial loop's counter), or a bit-exact map of them (`j // 2`, `2 * j + 1`,
`i * 8 + j`; `jtile.passes.index_bits`). The compiler then chooses layouts so that the running
thread holds every element an iteration touches: a fragment read as `v[i]` or `b[i, j // 2]`
takes the loop's layout carried through the index map, a loop that only reads vectors takes
the layout lifted from them, and a tile read at a uniform index keeps that dimension in every
thread's registers.

Outside T.Parallel (an `if mask[k]:` in a pipelined loop) a fragment is "floating", as
TileLang calls it: every thread holds all of it (a fully replicated layout), so every thread
reads any element, and a store there updates every thread's copy, so it must store the same
value at the same index in every thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from jtile.ir import nodes as ir
from jtile.ir.types import MemorySpace
from jtile.ir.walk import child_bodies, loads, statement_exprs, statements, sub_expressions
from jtile.passes.index_bits import (ONE, ZERO, UniformBit, bit_count, index_bits,
                                     is_loop_bit)
from jtile.passes.layout import Layout, padded_shape, thread_bit_count

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


@dataclass(frozen=True, eq=False)
class BitIndex:
    """A fragment index computed from the loop variables bit by bit: `bits[b]` is the source
    of bit b of the index (ZERO, ONE, a loop bit (loop dim, bit) or a UniformBit)."""

    bits: tuple


def index_dim(loop: ir.ParallelFor, index, extent: Optional[int] = None):
    """The loop dimension `index` is (a bare loop variable), UNIFORM when it does not depend
    on the loop's variables or the thread index, a BitIndex when it is a bit-exact map of them
    into a fragment dimension of `extent`, else None (`i + 1`, `3 * j`, the thread index, or
    an index that can pass the dimension's end)."""
    for d, v in enumerate(loop.vars):
        if index is v:
            return d
    for x in sub_expressions(index):
        if isinstance(x, ir.Var) and x.kind is ir.VarKind.THREAD:
            return None
    if not any(isinstance(x, ir.Var) and any(x is v for v in loop.vars)
               for x in sub_expressions(index)):
        return UNIFORM
    if extent is None:
        return None
    bits = index_bits(index, tuple(loop.vars), tuple(loop.extents))
    if bits is None:
        return None
    n = bit_count(extent)
    if any(is_loop_bit(s) or s == ONE for s in bits[n:]):
        return None  # some iteration would index past the dimension's end
    return BitIndex(tuple(bits[:n]))


@dataclass(frozen=True, eq=False)
class Access:
    """One fragment element access of a T.Parallel loop's body."""

    buffer: ir.Buffer
    dims: tuple          # per fragment dimension: loop dim, UNIFORM, BitIndex or None
    stmt: ir.Stmt
    indices: tuple
    store: bool
    extents: tuple       # the loop's

    @property
    def sources(self) -> tuple:
        """Per fragment dimension, the source of each of its index bits (see BitIndex)."""
        return access_sources(self.extents, tuple(self.buffer.shape), self.dims, self.indices)


def access_sources(extents: tuple, shape: tuple, dims: tuple, indices: tuple) -> tuple:
    out = []
    for k, (d, index) in enumerate(zip(dims, indices)):
        n = bit_count(shape[k])
        if isinstance(d, BitIndex):
            out.append(d.bits)
        elif d is UNIFORM:
            out.append(tuple(UniformBit(index, b) for b in range(n)))
        else:
            # A loop longer than the fragment's dimension reaches past it only through bits
            # the fragment does not have (as a T.Parallel over a padded tile does).
            m = bit_count(extents[d])
            out.append(tuple((d, b) if b < m else ZERO for b in range(n)))
    return tuple(out)


def loop_accesses(loop: ir.ParallelFor) -> list:
    """Every fragment element access of the loop's body, loads before the store of each
    statement."""
    out = []
    extents = tuple(loop.extents)
    for s in statements(loop.body):
        accesses = [(ld.buffer, ld.indices, False) for ld in loads(s)]
        if isinstance(s, ir.Store):
            accesses.append((s.buffer, s.indices, True))
        for buf, indices, store in accesses:
            if is_tiled_fragment(buf):
                dims = tuple(index_dim(loop, i, buf.shape[k]) for k, i in enumerate(indices))
                out.append(Access(buf, dims, s, tuple(indices), store, extents))
    return out


def fragment_accesses(loop: ir.ParallelFor) -> list:
    """(buffer, dims, statement) for each fragment access in the loop: `dims[k]` is the loop
    dimension indexing the fragment's dimension k, UNIFORM, a BitIndex, or None (see
    `index_dim`)."""
    return [(a.buffer, a.dims, a.stmt) for a in loop_accesses(loop)]


def access_rule_broken(dims: tuple) -> Optional[str]:
    """Why an access with these dims can never be held by the running thread, or None."""
    if any(d is None for d in dims):
        return ("each index must be one of the loop variables or an expression that does not "
                "depend on them (the same for every iteration), or a bit-exact map of them "
                "into the dimension (j // 2, j % 4, 2 * j + 1, i * 8 + j with j < 8); an "
                "index that mixes a loop variable or the thread index into other arithmetic "
                "(like i + 1 or 3 * j), or can pass the dimension's end, names an element "
                "another thread may hold")
    loop_dims = [d for d in dims if isinstance(d, int)]
    computed = [s for d in dims if isinstance(d, BitIndex) for s in d.bits if is_loop_bit(s)]
    if len(set(loop_dims)) != len(loop_dims) or len(set(computed)) != len(computed) or \
            any(s[0] in loop_dims for s in computed):
        return ("a loop variable indexes two dimensions (a diagonal); no layout puts both in "
                "the same thread")
    return None


def fragment_rule_violations(kernel: ir.Kernel):
    """(statement, buffer, rule) for every fragment element access breaking the indexing
    rules: inside nested T.Parallel loops, or with indices no layout can serve. Accesses
    outside T.Parallel are floating (see `floating_stores` for their rule)."""

    def visit(body, loop):
        for s in body:
            if isinstance(s, ir.ParallelFor):
                if loop is None:
                    yield from visit(s.body, s)
                else:
                    yield s, None, ("T.Parallel loops cannot be nested (the outer one already "
                                    "spreads its iterations over the threads); use one "
                                    "T.Parallel over all dimensions")
                continue
            for child in child_bodies(s):
                yield from visit(child, loop)
        if loop is not None and body is loop.body:
            for a in loop_accesses(loop):
                rule = access_rule_broken(a.dims)
                if rule is not None:
                    yield a.stmt, a.buffer, f"in T.Parallel{tuple(loop.extents)}: {rule}"

    yield from visit(kernel.body, None)


def floating_accesses(kernel: ir.Kernel):
    """(statement, buffer, is_store) for every element access of a tiled fragment outside
    T.Parallel (one-element fragments excluded: every thread holds those anyway)."""

    def visit(body):
        for s in body:
            if isinstance(s, ir.ParallelFor):
                continue
            for e in statement_exprs(s):
                for x in sub_expressions(e):
                    if isinstance(x, ir.Load) and is_tiled_fragment(x.buffer) and \
                            not is_scalar_fragment(x.buffer):
                        yield s, x.buffer, False
            if isinstance(s, ir.Store) and is_tiled_fragment(s.buffer) and \
                    not is_scalar_fragment(s.buffer):
                yield s, s.buffer, True
            for child in child_bodies(s):
                yield from visit(child)

    yield from visit(kernel.body)


def floating_fragments(kernel: ir.Kernel) -> list:
    """Fragments named element by element outside T.Parallel, in order of first access:
    every thread holds all of each (TileLang's floating fragments)."""
    out = []
    for _, buf, _ in floating_accesses(kernel):
        if buf not in out:
            out.append(buf)
    return out


def replicated_layout(shape: tuple, num_threads: int) -> Layout:
    """Every thread holds the whole tile, row-major in its registers."""
    regs = [(k, b) for k in reversed(range(len(shape))) for b in range(bit_count(shape[k]))]
    return Layout(padded_shape(shape), (None,) * thread_bit_count(num_threads), tuple(regs))


def is_replicated(layout: Layout) -> bool:
    return all(b is None for b in layout.thread_bits)


# ----------------------------------------------------------------------------- layout algebra


def _bits(extent: int) -> int:
    return bit_count(extent)


def _fragment_bit(loop_bit, sources: tuple):
    """The fragment bit (dim, bit) whose index bit is the loop bit `loop_bit`, or None."""
    if loop_bit is None:
        return None
    for k, bits in enumerate(sources):
        for b, s in enumerate(bits):
            if s == loop_bit:
                return (k, b)
    return None


def access_layout(loop_layout: Layout, shape: tuple, dims: tuple, sources: tuple) -> Layout:
    """The layout a fragment of `shape`, accessed with `dims` (bit sources `sources`) in a loop
    laid out as `loop_layout`, needs so that every iteration finds its element in the running
    thread: the loop's thread bits carried through the index map, the rest of the fragment in
    registers."""
    extents = loop_layout.shape
    if all(isinstance(d, int) for d in dims) and \
            all(n == extents[d] for n, d in zip(padded_shape(shape), dims)):
        return loop_layout.project(tuple(dims))
    threads = tuple(_fragment_bit(b, sources) for b in loop_layout.thread_bits)
    regs = [m for m in (_fragment_bit(b, sources) for b in loop_layout.reg_bits) if m is not None]
    used = set(regs) | {b for b in threads if b is not None}
    regs += [(k, b) for k in reversed(range(len(shape))) for b in range(_bits(shape[k]))
             if (k, b) not in used]
    return Layout(padded_shape(shape), threads, tuple(regs))


def lift_layout(layout: Layout, sources: tuple, extents: tuple) -> Optional[Layout]:
    """A layout over a loop's iteration space under which the fragment laid out as `layout`,
    accessed with bit sources `sources`, is local to the running thread; None when none exists
    (a thread bit of the fragment selects an index bit that is constant or uniform, or beyond
    the loop's extent).

    Loop bits the fragment does not fix go first to the threads that hold replicas (so the
    loop is spread over them, consecutive threads taking consecutive iterations), then to
    registers.
    """
    threads, regs, used = [], [], set()
    for b in layout.thread_bits:
        if b is None:
            threads.append(None)
            continue
        s = sources[b[0]][b[1]]
        if not is_loop_bit(s):
            return None
        threads.append(s)
        used.add(s)
    for k, bit in layout.reg_bits:
        s = sources[k][bit]
        if is_loop_bit(s) and s not in used:
            regs.append(s)
            used.add(s)
    remaining = [(d, b) for d in reversed(range(len(extents))) for b in range(_bits(extents[d]))
                 if (d, b) not in used]
    for t, b in enumerate(threads):
        if b is None and remaining:
            threads[t] = remaining.pop(0)
    return Layout(tuple(extents), tuple(threads), tuple(regs + remaining))


def held_locally(loop_layout: Optional[Layout], layout: Layout, sources: tuple,
                 store: bool = False) -> bool:
    """Whether every thread running an iteration of a loop laid out as `loop_layout` holds, in
    its own registers, the element it accesses; for a store, also whether every thread that
    holds a copy of the element runs an iteration storing it (so no copy goes stale)."""
    if loop_layout is None:
        # A strided loop: only fragments every thread holds whole; stores only at indices
        # every iteration shares (each thread runs different iterations).
        if not is_replicated(layout):
            return False
        return not store or not any(is_loop_bit(s) for bits in sources for s in bits)
    for t, b in enumerate(layout.thread_bits):
        if b is not None and loop_layout.thread_bits[t] != sources[b[0]][b[1]]:
            return False
    if store:
        for t, b in enumerate(loop_layout.thread_bits):
            mapped = _fragment_bit(b, sources)
            if mapped is not None and layout.thread_bits[t] != mapped:
                return False
    return True


# ----------------------------------------------------------------------------- whole tiles


def _is_private(buf: ir.Buffer) -> bool:
    return buf.space in (MemorySpace.LOCAL, MemorySpace.VAR) or \
        (buf.space is MemorySpace.FRAGMENT and buf.reducer_op is not None)


def fragment_tile_violations(kernel: ir.Kernel):
    """(location, rule) for fragment tile rules that hold whatever the layouts: copied and
    filled whole; never exchanged with a thread-private buffer by T.copy; as a gemm operand,
    whole, not 8-bit and (A) untransposed; never both a gemm operand and named outside
    T.Parallel. (Which fragments whose dimensions are not powers of 2 the compiler can spread
    over the threads, infer_layouts decides.)"""
    floating = {}
    for s, buf, _ in floating_accesses(kernel):
        floating.setdefault(buf, s.loc)
    for s in statements(kernel.body):
        regions = ()
        if isinstance(s, ir.Gemm):
            for role, region in (("accumulator C", s.c), ("operand A", s.a), ("operand B", s.b)):
                if region.buffer in floating:
                    yield s.loc, (f"T.gemm {role} {region.buffer.describe()} is also named "
                                  f"element by element outside T.Parallel (at "
                                  f"{floating[region.buffer]}), where every thread holds all "
                                  "of it, but T.gemm spreads it over the threads; read it "
                                  "inside a T.Parallel loop, or copy it to a shared buffer and "
                                  "read that")
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
        if isinstance(s, ir.Gemm):
            yield from _gemm_operand_violations(s)


def _gemm_operand_violations(s: ir.Gemm):
    """A fragment operand sits in the registers of the instruction that reads it (mma.sync's
    operand layouts, or what each thread's FMAs need), which spans the whole fragment."""
    if is_tiled_fragment(s.a.buffer) and s.transpose_a:
        yield s.loc, "T.gemm: a fragment A cannot be transposed; store it untransposed"
    for name, region in (("A", s.a), ("B", s.b)):
        if not is_tiled_fragment(region.buffer):
            continue
        if tuple(region.extents) != tuple(region.buffer.shape) or region.buffer.ndim != 2:
            yield s.loc, (f"T.gemm on the tile {tuple(region.extents)} of the fragment {name} "
                          f"{region.buffer.describe()}; a fragment operand is a whole 2-D "
                          "fragment: allocate it with the tile's shape")
        if region.dtype.bits == 8 and region.dtype.is_float:
            # (8-bit integers in registers take the CUDA cores' int32 multiply-adds.)
            yield s.loc, (f"T.gemm with a fragment {name} on {region.dtype} inputs: 8-bit "
                          "gemms run on wgmma, which reads B from shared memory and A from "
                          f"registers only for 16-bit inputs; put {name} "
                          f"{region.buffer.describe()} in shared memory")
