"""T.Parallel loops over fragments with extents that are not powers of 2.

Fragment layouts map index bits to threads and registers, so a loop spreads over the threads
by the same bits and its extents must be powers of 2. Interpret mode runs `T.Parallel(8, 3)`
over an (8, 4) fragment as written; compiled, no layout could run it. This pass runs such a
loop on the extents of a fragment it indexes by all its variables that covers it, rounded up
to powers of 2 (else on its own extents rounded up) and skips the added iterations with a guard on the loop
variables, so it runs on the layouts of the fragments it touches, with the same effect (the
code generator drops the guard where the loop's layout is exact: no thread that exists runs
an added iteration, as on 192-row tiles over three warpgroups).
Loops that touch no fragment stay as they are: they run strided over the threads whatever
their extents.
"""

from __future__ import annotations

import dataclasses
import functools

from jtile.ir import nodes as ir
from jtile.passes.fragment_access import floating_fragments, is_tiled_fragment, loop_accesses
from jtile.passes.index_bits import bit_count
from jtile.passes.layout import is_power_of_two, padded_shape


def _padded_extents(loop: ir.ParallelFor, floating: set):
    """The extents the loop runs on: those of a fragment it indexes by all its variables in
    order that covers it (one it stores to first), else its own rounded up to powers of 2;
    None when the loop touches no fragment, or one every thread holds whole (named outside
    T.Parallel): such a loop runs strided as before, each iteration once."""
    accesses = [a for a in loop_accesses(loop) if is_tiled_fragment(a.buffer)]
    if not accesses or any(a.buffer in floating for a in accesses):
        return None
    full = tuple(range(len(loop.vars)))
    covering = [a for a in accesses if a.dims == full and len(a.buffer.shape) == len(full)
                and all(e <= n for e, n in zip(loop.extents, a.buffer.shape))]
    covering.sort(key=lambda a: not a.store)
    if covering:
        return padded_shape(covering[0].buffer.shape)
    return tuple(1 << bit_count(e) for e in loop.extents)


def _pad(loop: ir.ParallelFor, floating: set) -> ir.ParallelFor:
    if all(is_power_of_two(e) for e in loop.extents):
        return loop
    padded = _padded_extents(loop, floating)
    if padded is None:
        return loop
    inside = [ir.binary("lt", v, e) for v, e, p in zip(loop.vars, loop.extents, padded)
              if p != e]
    guard = functools.reduce(lambda a, b: ir.binary("and", a, b), inside)
    body = (ir.IfThenElse(guard, tuple(loop.body), (), loop.loc),)
    return dataclasses.replace(loop, extents=padded, body=body, padded_from=tuple(loop.extents))


def _rewrite(body: tuple, floating: set) -> tuple:
    """`body` with its loops padded; `body` itself when none is (unchanged statements are
    kept, not copied)."""
    out = []
    for s in body:
        if isinstance(s, ir.ParallelFor):
            new = _pad(s, floating)
        elif isinstance(s, (ir.For, ir.While)):
            inner = _rewrite(s.body, floating)
            new = s if inner is s.body else dataclasses.replace(s, body=inner)
        elif isinstance(s, ir.IfThenElse):
            then, other = _rewrite(s.then_body, floating), _rewrite(s.else_body, floating)
            new = s if then is s.then_body and other is s.else_body else \
                dataclasses.replace(s, then_body=then, else_body=other)
        else:
            new = s
        out.append(new)
    return body if all(a is b for a, b in zip(out, body)) else tuple(out)


def pad_parallel_loops(kernel: ir.Kernel, target=None) -> ir.Kernel:
    body = _rewrite(kernel.body, set(floating_fragments(kernel)))
    return kernel if body is kernel.body else kernel.replace(body=body)
