"""Guards for fragments whose registers hold padding.

A fragment with a dimension that is not a power of 2 is laid out over its padded extents
(`jtile.passes.layout`): unless the padding lives only in threads that do not exist, some
threads hold registers for elements past the tile's end. Those registers are never read back
as values, but every operation on the whole fragment that touches memory or combines
elements (copies, atomics, reductions, tensor-core tiles) must skip them: a copy would read
or write past the tile, a reduction would count them.
"""

from __future__ import annotations

from jtile.codegen.parallel import index_expr
from jtile.ir import nodes as ir
from jtile.passes.layout import is_exact


def holds_padding(em, buf: ir.Buffer) -> bool:
    """Whether some thread that exists holds a register of `buf` past the tile's end."""
    layout = em.layouts[buf]
    return not is_exact(layout, tuple(buf.shape), em.tile_threads())


def inside(em, buf: ir.Buffer, reg: str, dims=None) -> list:
    """C conditions under which register `reg` of the running thread holds an element inside
    `buf` along `dims` (all by default); empty when every register does."""
    if not holds_padding(em, buf):
        return []
    layout = em.layouts[buf]
    tid = em.tile_thread()
    return [f"{index_expr(layout, d, tid, reg)} < {n}"
            for d, (n, p) in enumerate(zip(buf.shape, layout.shape))
            if n != p and (dims is None or d in dims)]


def vector_dividing(width: int, extent: int) -> int:
    """The widest power-of-2 vector up to `width` whose runs do not straddle `extent`: a run
    that starts inside the tile ends inside it."""
    width = 1 << (max(width, 1).bit_length() - 1)
    while width > 1 and extent % width:
        width //= 2
    return width
