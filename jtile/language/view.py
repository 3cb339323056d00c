"""Buffer views: `T.view`, `T.reshape` and `T.Tensor(shape, dtype, buf.data)`.

A view is a second name for the bytes of a global, shared or local buffer, with its own shape
and dtype (the total size in bits must match), or for a fragment's registers under another
shape (power-of-2 dimensions, same dtype). Nothing is copied: a store through either name is
seen through the other. Convolution kernels view a (KH, KW, C, F) weight as (KH*KW*C, F);
quantised kernels view packed bytes as wider words.
"""

from __future__ import annotations

import numpy as np

from jtile.errors import JtileError, JtileShapeError
from jtile.ir.nodes import Buffer, BufferData, Expr
from jtile.ir.types import MemorySpace, as_dtype, as_memory_space
from jtile.language import tensor as _tensor
from jtile.trace.builder import current
from jtile.trace.source import caller_location

# Spaces whose bytes a view may share (a fragment only under another shape: it is spread over
# threads by an inferred layout); vars, barriers, TMEM and descriptors have no element layout
# to reinterpret.
VIEWABLE_SPACES = (MemorySpace.GLOBAL, MemorySpace.SHARED, MemorySpace.SHARED_DYN,
                   MemorySpace.LOCAL, MemorySpace.FRAGMENT)


def make_view(base: Buffer, shape, dtype, what: str, loc, scope=None) -> Buffer:
    """A Buffer sharing `base`'s bytes with `shape` and `dtype` (views of views share the root)."""
    builder = current(what)
    root = base if base.view_of is None else base.view_of
    if root.space not in VIEWABLE_SPACES:
        raise builder.error(f"{base.describe()} cannot be viewed: views share the bytes of "
                            "global, shared, local and fragment buffers", loc, op=what)
    if scope is not None:
        try:
            space = as_memory_space(scope, tuple(MemorySpace), what)
        except JtileError as error:
            raise builder.error(str(error), loc, op=what) from None
        if space is not root.space and not (space.is_shared and root.space.is_shared):
            raise builder.error(f"scope={scope!r} differs from the viewed buffer "
                                f"{root.describe()}; a view lives where its bytes are", loc,
                                op=what)
    shape = tuple(shape) if isinstance(shape, (tuple, list)) else (shape,)
    for d in shape:
        if isinstance(d, (Expr, bool)) or not isinstance(d, (int, np.integer)) or d <= 0:
            raise builder.error(f"view shape {shape} must be positive static ints", loc, op=what)
    shape = tuple(int(d) for d in shape)
    try:
        dtype = as_dtype(base.dtype if dtype is None else dtype)
    except JtileError as error:
        raise builder.error(str(error), loc, op=what) from None
    size = 1
    for d in shape:
        size *= d
    if root.space is MemorySpace.FRAGMENT:
        _check_fragment_reshape(builder, root, shape, size, dtype, what, loc)
    elif size * dtype.bits != root.size * root.dtype.bits:
        raise builder.error(f"a {dtype}{list(shape)} view has {size * dtype.bits} bits but "
                            f"{root.describe()} has {root.size * root.dtype.bits}; a view must "
                            "cover the same bytes", loc, op=what, cls=JtileShapeError)
    elif dtype.bits < 8 or dtype.is_bool or root.dtype.is_bool:
        raise builder.error(f"views between {root.dtype} and {dtype} are not supported; view "
                            "whole bytes of numeric types", loc, op=what)
    view = Buffer(builder.fresh_name(f"{root.name}_view"), shape, dtype, root.space, loc,
                  view_of=root)
    builder.attrs.setdefault("views", []).append(view)
    return view


def _check_fragment_reshape(builder, root: Buffer, shape: tuple, size: int, dtype, what: str,
                            loc) -> None:
    """A fragment is seen under another shape only (TileLang's `T.reshape(frag, shape)`): the
    same registers, the layout re-split with the shape. Element types stay; every dimension of
    both shapes is a power of 2, so each thread keeps exactly the elements it held."""
    same_type = dtype is root.dtype
    powers = all(not d & (d - 1) for d in shape + tuple(root.shape))
    if not same_type or size != root.size or not powers:
        raise builder.error(
            f"{root.describe()} as {list(shape)}{'' if same_type else f' {dtype}'}: a fragment "
            "is reshaped, not reinterpreted: same dtype, same number of elements, and every "
            "dimension a power of 2 (each thread must keep the elements it holds); copy it "
            "through shared memory otherwise", loc, op=what, cls=JtileShapeError)


def view(src, shape=None, dtype=None):
    """A view of `src` (global, shared or local) with a new shape and/or dtype, same bytes; a
    fragment takes a new shape only (see `_check_fragment_reshape`).

    Shape and dtype default to src's; the total size in bits must equal src's. Reads and
    writes through the view address src's memory in row-major order (compiled: a pointer
    cast; views of shared tiles that the compiler swizzles or multi-buffers are refused).
    """
    loc = caller_location()
    builder = current("T.view")
    if not isinstance(src, Buffer):
        raise builder.error(f"T.view takes a buffer, got {type(src).__name__}", loc, op="T.view")
    return make_view(src, src.shape if shape is None else shape, dtype, "T.view", loc)


def reshape(src, shape):
    """`T.view(src, shape)`: the same bytes and dtype under another shape."""
    loc = caller_location()
    builder = current("T.reshape")
    if not isinstance(src, Buffer):
        raise builder.error(f"T.reshape takes a buffer, got {type(src).__name__}", loc,
                            op="T.reshape")
    return make_view(src, shape, None, "T.reshape", loc)


def Tensor(shape, dtype="float32", data=None, scope=None):
    """`T.Tensor(shape, dtype)` annotates a kernel parameter; with `data=buf.data` it is a view.

    Args:
        shape: the expected (annotation) or new (view) shape.
        dtype: element type.
        data: `buf.data` of a global, shared or local buffer: the result views its bytes
            (see `T.view`).
        scope: for a view, the viewed buffer's scope (checked).
    """
    if data is None:
        if scope not in (None, "global"):
            loc = caller_location()
            raise JtileError(f"{loc}: T.Tensor(scope={scope!r}) without data= is an annotation "
                             "of a global parameter; allocate on-chip buffers with "
                             "T.alloc_shared / T.alloc_fragment / T.alloc_local")
        return _tensor.Tensor(shape, dtype)
    loc = caller_location()
    builder = current("T.Tensor")
    if isinstance(data, Buffer):
        data = data.data
    if not isinstance(data, BufferData):
        raise builder.error(f"data={data!r} must be `buf.data` of a jtile buffer", loc,
                            op="T.Tensor")
    return make_view(data.buffer, shape, dtype, "T.Tensor", loc, scope=scope)
