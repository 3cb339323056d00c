"""Layout annotations and block rasterisation: `T.Layout`, `T.annotate_layout`,
TileLang's `make_*_layout` helpers, and `T.use_swizzle`.

jtile chooses shared-memory layouts itself: tiles that feed `T.gemm` through ldmatrix are
stored XOR-swizzled (16-byte chunks permuted per row), everything else row-major. An
annotation that asks for exactly that is honoured (checked when compiling); one that asks for
anything else is refused by name, never silently dropped. In interpret mode shared-memory
layouts change nothing.
"""

from __future__ import annotations

import numpy as np

from jtile.ir.nodes import Buffer, Expr, UseSwizzle, Var, VarKind
from jtile.ir.types import MemorySpace
from jtile.trace.builder import current
from jtile.trace.source import caller_location

# Layout kinds jtile understands; the bank variants name TileLang's 32/64/128-byte swizzles.
SWIZZLE_KINDS = ("swizzled", "full_bank", "half_bank", "quarter_bank")
SWIZZLE_BYTES = {"full_bank": 128, "half_bank": 64, "quarter_bank": 32}


class Layout:
    """`T.Layout(shape, forward_fn)`: element i of a buffer lives at forward_fn(*i).

    `kind` is "linear" (no forward_fn, or the identity), "custom" (any other index map, which
    jtile cannot honour), or one of SWIZZLE_KINDS for the make_*_layout helpers.
    """

    def __init__(self, shape, forward_fn=None):
        self.shape = tuple(int(d) for d in (shape if isinstance(shape, (tuple, list))
                                            else (shape,)))
        self.forward = forward_fn
        identity = forward_fn is None or _is_identity(self.shape, forward_fn)
        self.kind = "linear" if identity else "custom"

    @classmethod
    def of_kind(cls, shape: tuple, kind: str) -> "Layout":
        layout = cls(shape)
        layout.kind = kind
        return layout

    def describe(self) -> str:
        return f"{self.kind} layout of shape {self.shape}"


def _is_identity(shape: tuple, forward) -> bool:
    """Whether `forward` maps every index to itself (checked on symbolic indices)."""
    args = tuple(Var(f"i{d}") for d in range(len(shape)))
    try:
        out = forward(*args)
    except Exception:  # an index map jtile cannot evaluate symbolically is not the identity
        return False
    out = tuple(out) if isinstance(out, (list, tuple)) else (out,)
    return len(out) == len(args) and all(a is b for a, b in zip(out, args))


def Fragment(*args, **kwargs):
    """TileLang's explicit fragment layouts are refused: jtile infers them."""
    raise current("T.Fragment").error(
        "T.Fragment layouts are not supported: jtile infers every fragment's layout from the "
        "T.gemm / T.reduce / T.Parallel statements that use it; drop the annotation",
        caller_location(), op="T.Fragment")


def _of_buffer(buffer, kind: str, what: str) -> Layout:
    if not isinstance(buffer, Buffer):
        raise current(what).error(f"{what} takes a buffer, got {type(buffer).__name__}",
                                  caller_location(), op=what)
    return Layout.of_kind(tuple(buffer.shape), kind)


def make_swizzled_layout(buffer, k_major=True, allow_pad=True):
    """TileLang's swizzle for a shared tile (jtile: the XOR swizzle it gives gemm operands).

    jtile picks the swizzle of each gemm operand from its major order itself and never pads,
    so only TileLang's defaults are accepted: `k_major=False` and `allow_pad=False` are
    refused by name (drop them; the annotation is then checked against jtile's choice).
    """
    for name, value in (("k_major", k_major), ("allow_pad", allow_pad)):
        if value is not True:
            raise current("T.make_swizzled_layout").error(
                f"T.make_swizzled_layout({name}={value!r}): jtile chooses the swizzle of a "
                "gemm operand from its major order and never pads; drop the argument",
                caller_location(), op="T.make_swizzled_layout")
    return _of_buffer(buffer, "swizzled", "make_swizzled_layout")


def make_full_bank_swizzled_layout(buffer):
    """The 128-byte swizzle (rows of 128 bytes or more)."""
    return _of_buffer(buffer, "full_bank", "make_full_bank_swizzled_layout")


def make_half_bank_swizzled_layout(buffer):
    """The 64-byte swizzle (rows of 64 bytes)."""
    return _of_buffer(buffer, "half_bank", "make_half_bank_swizzled_layout")


def make_quarter_bank_swizzled_layout(buffer):
    """The 32-byte swizzle (rows of 32 bytes)."""
    return _of_buffer(buffer, "quarter_bank", "make_quarter_bank_swizzled_layout")


def make_linear_layout(buffer):
    """The row-major layout (no swizzle)."""
    return _of_buffer(buffer, "linear", "make_linear_layout")


def annotate_layout(layout_map: dict):
    """Requests layouts for shared and global buffers: `T.annotate_layout({buf: layout})`.

    A layout is a `T.Layout`, a `make_*_layout(buf)` result, or a callable index map (made a
    `T.Layout` over the buffer's shape). Honoured: a swizzle on a shared tile jtile swizzles
    (16-bit T.gemm operands with rows of 32 * 2^k bytes; the bank variants when the row width
    matches), and a linear layout (or identity map) on one it does not; both are checked when
    compiling. On a global buffer an index map orders the elements of its array, as in TileLang
    (`_annotate_global`). Refused by name: fragment layouts, other index maps on shared tiles,
    and swizzle / linear requests that differ from what jtile does.
    """
    builder = current("T.annotate_layout")
    loc = caller_location()
    op = "T.annotate_layout"
    if not isinstance(layout_map, dict):
        raise builder.error("T.annotate_layout takes a dict {buffer: layout}", loc, op=op)
    for buf, layout in layout_map.items():
        if not isinstance(buf, Buffer):
            raise builder.error(f"key {buf!r} is not a buffer", loc, op=op)
        if buf.space is MemorySpace.FRAGMENT:
            raise builder.error(f"{buf.describe()}: fragment layouts are inferred by jtile from "
                                "the statements that use the fragment; drop the annotation", loc,
                                op=op)
        if not buf.space.is_shared and buf.space is not MemorySpace.GLOBAL:
            raise builder.error(f"{buf.describe()}: only shared and global buffers take layout "
                                "annotations", loc, op=op)
        if callable(layout) and not isinstance(layout, Layout):
            layout = Layout(buf.shape, layout)
        if not isinstance(layout, Layout):
            raise builder.error(f"the layout of {buf.name} is {layout!r}; expected a T.Layout, "
                                "a make_*_layout(buf) result or an index-map callable", loc,
                                op=op)
        if tuple(layout.shape) != tuple(buf.shape):
            raise builder.error(f"{layout.describe()} does not fit {buf.describe()}", loc, op=op)
        if buf.space is MemorySpace.GLOBAL:
            _annotate_global(builder, buf, layout, loc)
            continue
        if layout.kind == "custom":
            raise builder.error(f"{buf.describe()}: a custom index map is not supported for "
                                "shared memory; jtile swizzles gemm operands itself. Use "
                                "make_swizzled_layout(buf) or drop the annotation", loc, op=op)
        if buf.layout_annotation is not None:
            raise builder.error(f"{buf.describe()} already has a layout annotation", loc, op=op)
        buf.layout_annotation = (layout.kind, loc)


def _annotate_global(builder, buf: Buffer, layout: Layout, loc) -> None:
    """A global buffer's array holds its elements in the order of the layout's index map
    (`jtile.trace.global_layout`); every launch that annotates it reads and writes it in that
    order. Swizzles are shared-memory layouts and are refused here."""
    from jtile.trace.global_layout import global_layout

    op = "T.annotate_layout"
    if layout.kind in SWIZZLE_KINDS:
        raise builder.error(f"{buf.describe()}: {layout.kind} layouts describe shared-memory "
                            "tiles; a global buffer takes a T.Layout index map", loc, op=op)
    if buf.layout_annotation is not None:
        raise builder.error(f"{buf.describe()} already has a layout annotation", loc, op=op)
    buf.layout_annotation = (layout.kind, loc)
    if layout.kind == "linear":
        return
    try:
        buf.global_layout = global_layout(tuple(buf.shape), layout.forward)
    except ValueError as e:
        raise builder.error(f"the index map annotated on {buf.describe()} cannot order its "
                            f"array: {e}", loc, op=op) from None


def _reads_block_index(stmt) -> bool:
    """Whether `stmt` reads the x or y block index: the ones the rasterisation remaps (it
    leaves blockIdx.z, e.g. a batch index, as it is)."""
    from jtile.ir.walk import statement_exprs, statements, sub_expressions

    return any(isinstance(x, Var) and x.kind is VarKind.BLOCK and x.axis in (0, 1)
               for st in statements((stmt,)) for e in statement_exprs(st)
               for x in sub_expressions(e))


def use_swizzle(panel_size, order="row", enable=True):
    """Rasterises the block grid in panels so neighbouring blocks share L2 tiles (TileLang's
    threadblock swizzle).

    With order="row", the flat block number f = bx + by * gx is walked in panels of
    `panel_size` rows of y: within a panel, blocks go down the panel's rows first, then across
    x, and every other panel runs right to left; "column" exchanges x and y. The remap is a
    bijection of the (x, y) grid, so each block still runs once. Call it once, at the top
    level of the kernel body and before any statement that reads the block indices (as in
    TileLang, allocations, fills and layout annotations may come first); the block indices
    (`bx`, `by`, `T.program_id`) are remapped for the whole kernel (compiled: in the kernel
    prologue); `bz` is never remapped, so statements before the call may read it. On a 1-D
    grid the remap is the identity. `enable=False` does nothing. Any arch.
    """
    builder = current("T.use_swizzle")
    loc = caller_location()
    op = "T.use_swizzle"
    if isinstance(panel_size, (Expr, bool)) or not isinstance(panel_size, (int, np.integer)) \
            or panel_size <= 0:
        raise builder.error(f"panel_size={panel_size!r} must be a static int > 0", loc, op=op)
    if order not in ("row", "column"):
        raise builder.error(f"order={order!r} is not supported; use \"row\" or \"column\" "
                            "(TileLang's \"mlx\" order targets Apple GPUs)", loc, op=op)
    if not enable:
        return None
    if builder.kernel_body is not None or builder.grid is None:
        raise builder.error("T.use_swizzle belongs inside `with T.Kernel(...)`", loc, op=op)
    if len(builder.blocks) != 2:
        raise builder.error("T.use_swizzle belongs at the top level of the kernel body, outside "
                            "loops and branches: it remaps the block indices of the whole "
                            "kernel", loc, op=op)
    if len(builder.grid) < 2:
        return None  # TileLang's remap of a 1-D grid is the identity
    # TileLang remaps the block indices of what follows the call; the compiled kernel remaps
    # them in its prologue. The two agree while nothing before the call reads bx or by (bz is
    # never remapped).
    earlier = next((st for st in builder.blocks[-1] if _reads_block_index(st)), None)
    if earlier is not None:
        raise builder.error(f"T.use_swizzle comes after a statement at {earlier.loc} that reads "
                            "the block indices bx or by; call it before any statement that "
                            "reads them (it remaps bx and by for the whole kernel; bz is kept)",
                            loc, op=op)
    builder.emit(UseSwizzle(int(panel_size), order, loc))
    return None
