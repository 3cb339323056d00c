"""`T.Ref`: a T.macro parameter that refers to a location of the caller (TileLang's reference
parameters, like C++'s `T&`).

    @T.macro
    def halve(var: T.Ref):
        var = var // 2          # stores into the element or variable the caller passed

    halve(A[0])                 # a buffer element (any indices, traced ones included)
    halve(count)                # a T.alloc_var

Inside the macro the name reads the location's current value wherever it is used and
assigning to it stores there; passing it on to another macro's T.Ref parameter passes the same
location (recursion works). Anything else given to a T.Ref parameter is a JtileError.
"""

from __future__ import annotations

import inspect

from jtile.ir.nodes import Buffer, Expr, Load
from jtile.ir.types import MemorySpace


class Ref:
    """The annotation that marks a T.macro parameter as a reference (`var: T.Ref`)."""

    def __init__(self):
        raise TypeError("T.Ref is an annotation for T.macro parameters (`def f(x: T.Ref):`)")


class ElementRef:
    """A buffer element passed to a T.Ref parameter: it reads as a fresh load of the element
    wherever it is used and takes stores through `ref[0] = value` (what assigning to the
    parameter's name does, as for a T.alloc_var)."""

    def __init__(self, buffer: Buffer, indices: tuple):
        self.buffer = buffer
        self.indices = tuple(indices)

    def _scalar(self) -> Expr:
        from jtile.trace.indexing import index_buffer

        return index_buffer(self.buffer, self.indices)

    __jtile_expr__ = _scalar

    def __getitem__(self, key):
        if key not in (0, (0,)):
            raise IndexError("a T.Ref element holds one value: read it as the name itself")
        return self._scalar()

    def __setitem__(self, key, value):
        from jtile.trace.indexing import store_buffer

        if key not in (0, (0,)):
            raise IndexError("a T.Ref element holds one value: assign to the name itself")
        store_buffer(self.buffer, self.indices, value)

    @property
    def dtype(self):
        return self.buffer.dtype

    def __repr__(self) -> str:
        return f"T.Ref({self.buffer.name}[{', '.join(map(repr, self.indices))}])"


def _delegate(name):
    def method(self, *args):
        return getattr(self._scalar(), name)(*args)
    method.__name__ = name
    return method


for _name in ("__add__", "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__",
              "__truediv__", "__rtruediv__", "__floordiv__", "__rfloordiv__", "__mod__",
              "__rmod__", "__lt__", "__le__", "__gt__", "__ge__", "__neg__", "__and__",
              "__rand__", "__or__", "__ror__", "__xor__", "__rxor__", "__lshift__",
              "__rshift__", "__invert__", "__pow__", "__eq__", "__ne__", "astype"):
    setattr(ElementRef, _name, _delegate(_name))
ElementRef.__hash__ = object.__hash__


def reference_parameters(fn) -> tuple:
    """Names of `fn`'s parameters annotated T.Ref."""
    try:
        parameters = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return ()
    return tuple(p.name for p in parameters if p.annotation is Ref or p.annotation == "T.Ref")


def as_reference(value, parameter: str, macro: str):
    """The location a T.Ref parameter refers to: a T.alloc_var as it is, a buffer element as
    an ElementRef; anything else is refused."""
    from jtile.trace.builder import current
    from jtile.trace.source import caller_location

    if isinstance(value, ElementRef):
        return value
    if isinstance(value, Buffer) and value.space is MemorySpace.VAR:
        return value
    if isinstance(value, Load) and value.buffer.space is not MemorySpace.VAR:
        return ElementRef(value.buffer, value.indices)
    if isinstance(value, Load):
        return value.buffer
    builder = current(f"T.macro {macro}")
    raise builder.error(f"T.Ref parameter `{parameter}` of T.macro {macro} was given "
                        f"{value!r}: it needs a location to store into, a buffer element "
                        "(`A[i]`) or a T.alloc_var", caller_location())

