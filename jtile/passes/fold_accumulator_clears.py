"""Zeroing an accumulator right before a gemm becomes the gemm's own `clear_accum`.

TileLang kernels start a product with `T.clear(acc)` then `T.gemm(a, b, acc)`, attention's
score tile once per key tile. Kept apart, the clear is a register move per accumulator element
(64 per thread and iteration for a 128 x 128 tile on two warpgroups), issued in the softmax's
instruction stream; wgmma can instead start from zero itself (its scale-d operand), for free.
The fold applies when a fill of a whole fragment with 0 is followed, in the same statement
list, by a gemm into that whole fragment, with nothing between them touching it. On mma.sync
the gemm zeroes the registers as the fill did, so nothing changes there.

On an H200 (benchmarks/results/h200_attention_fold_clears_ab.log) jtile.ops.attention's
forward + backward at head dim 64, full, ran 1.16x faster folded (its backward clears three
accumulators per step); the other shapes within 1%. ptxas already starts a wgmma from zero
when the zeroing is plain to it (no branch between), which is why the forward gains nothing.
"""

from __future__ import annotations

import dataclasses

from jtile import config
from jtile.ir import nodes as ir
from jtile.ir.affine import is_whole
from jtile.ir.types import MemorySpace
from jtile.ir.walk import touches


def _zeroing(s) -> bool:
    """A fill of a whole fragment with zero."""
    return isinstance(s, ir.Fill) and s.dst.buffer.space is MemorySpace.FRAGMENT and \
        s.dst.buffer.view_of is None and is_whole(s.dst) and \
        isinstance(s.value, ir.Const) and s.value.value == 0


def _fold(body: tuple) -> tuple:
    body = [_fold_children(s) for s in body]
    dropped = set()
    for i, s in enumerate(body):
        if not _zeroing(s):
            continue
        acc = s.dst.buffer
        j = next((j for j in range(i + 1, len(body)) if touches([body[j]], {acc})), None)
        if j is None:
            continue
        gemm = body[j]
        if isinstance(gemm, ir.Gemm) and gemm.c.buffer is acc and is_whole(gemm.c) and \
                gemm.a.buffer is not acc and gemm.b.buffer is not acc:
            body[j] = dataclasses.replace(gemm, clear_accum=True)
            dropped.add(i)
    return tuple(s for i, s in enumerate(body) if i not in dropped)


def _fold_children(s):
    if isinstance(s, (ir.For, ir.While)):
        return dataclasses.replace(s, body=_fold(s.body))
    if isinstance(s, ir.IfThenElse):
        return dataclasses.replace(s, then_body=_fold(s.then_body),
                                   else_body=_fold(s.else_body))
    return s


def fold_accumulator_clears(kernel: ir.Kernel, target) -> ir.Kernel:
    if not config.fold_accumulator_clears():
        return kernel
    return kernel.replace(body=_fold(tuple(kernel.body)))
