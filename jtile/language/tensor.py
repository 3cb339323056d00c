"""`T.Tensor` annotations and symbolic dimensions: the shapes and dtypes a kernel expects.

A kernel parameter annotated `A: T.Tensor((M, K), "float16")` (in the signature, TileLang's
`@T.prim_func` style, or as a statement in the body, its eager-jit style) is checked against
the array it receives. Dimensions are ints, None (any size), or symbols made by `T.dynamic` /
`T.symbolic`, which take their value from the first argument that has them and must agree
everywhere else. jtile shapes are static: a kernel with symbolic dimensions is traced once per
distinct set of argument shapes.
"""

from __future__ import annotations

import operator
import re
from dataclasses import dataclass
from typing import Optional

import numpy as np

from jtile.errors import JtileTraceError
from jtile.ir.types import DType, MemorySpace, as_dtype


# ----------------------------------------------------------------------------- symbols


class SymbolicDim:
    """A named dimension known only from the arguments' shapes (`T.dynamic("m")`).

    While a kernel is traced, a bound symbol reads as its int (`int(m)`, `range(m)`), and the
    kernel function sees the int wherever it names the symbol directly (closure or global).
    """

    def __init__(self, name: str, dtype: str = "int32"):
        self.name = name
        self.dtype = dtype

    def symbols(self) -> tuple:
        return (self,)

    def evaluate(self, bindings: dict):
        return bindings.get(self)

    def __repr__(self) -> str:
        return self.name

    def __index__(self) -> int:
        from jtile.trace.builder import active_builder

        builder = active_builder()
        values = getattr(builder, "symbol_values", {}) if builder is not None else {}
        if self in values:
            return values[self]
        raise JtileTraceError(
            f"symbolic dimension {self.name} (T.dynamic) has no value here; it takes its value "
            "from a kernel argument whose T.Tensor annotation names it")

    __int__ = __index__

    def _combine(self, op, other, reverse=False):
        return SymbolicExpr(op, (other, self) if reverse else (self, other))

    def __add__(self, o): return self._combine("+", o)
    def __radd__(self, o): return self._combine("+", o, True)
    def __sub__(self, o): return self._combine("-", o)
    def __rsub__(self, o): return self._combine("-", o, True)
    def __mul__(self, o): return self._combine("*", o)
    def __rmul__(self, o): return self._combine("*", o, True)
    def __floordiv__(self, o): return self._combine("//", o)
    def __rfloordiv__(self, o): return self._combine("//", o, True)
    def __mod__(self, o): return self._combine("%", o)
    def __rmod__(self, o): return self._combine("%", o, True)


_OPS = {"+": operator.add, "-": operator.sub, "*": operator.mul, "//": operator.floordiv,
        "%": operator.mod}


class SymbolicExpr(SymbolicDim):
    """Integer arithmetic on symbolic dimensions (`T.Tensor((m * 2,), ...)`)."""

    def __init__(self, op: str, operands: tuple):
        super().__init__("")
        self.op = op
        self.operands = operands
        self.name = f"({' {} '.format(op).join(repr(o) for o in operands)})"

    def symbols(self) -> tuple:
        out = ()
        for o in self.operands:
            out += o.symbols() if isinstance(o, SymbolicDim) else ()
        return out

    def evaluate(self, bindings: dict):
        values = [o.evaluate(bindings) if isinstance(o, SymbolicDim) else o
                  for o in self.operands]
        if any(v is None for v in values):
            return None
        return _OPS[self.op](*values)


def split_names(names: str, what: str) -> list:
    """TileLang's name lists: `"M, N"`, `"M N"` or `"M"`."""
    if not isinstance(names, str) or not names.strip():
        raise JtileTraceError(f"{what} takes a string of names such as \"M, N\"; got {names!r}")
    parts = re.split(r"\s*,\s*", names.strip()) if "," in names else names.split()
    for part in parts:
        if not part.isidentifier():
            raise JtileTraceError(f"{what}({names!r}): {part!r} is not a name")
    return parts


def dynamic(name: str, dtype="int32"):
    """A symbolic dimension (or a tuple of them for `"m, n"`) for `T.Tensor` annotations.

    Its value comes from the arguments' shapes when the kernel is launched; jtile traces the
    kernel once per distinct value (shapes are static in the generated code).
    """
    check_shape_dtype(dtype, "T.dynamic")
    symbols = tuple(SymbolicDim(n, dtype) for n in split_names(name, "T.dynamic"))
    return symbols[0] if len(symbols) == 1 else symbols


def check_shape_dtype(dtype, what: str) -> None:
    """A shape symbol's dtype: an integer dtype (the symbol's value is a Python int, a whole
    dimension), anything else is refused."""
    try:
        dt = as_dtype(dtype)
    except Exception:
        dt = None
    if dt is None or not dt.is_int or dt.is_bool:
        raise JtileTraceError(f"{what}(dtype={dtype!r}): a shape symbol is an integer; use an "
                              "integer dtype such as 'int32' or 'int64'")


symbolic = dynamic


# ----------------------------------------------------------------------------- annotations


def _describe_dim(d) -> str:
    return "?" if d is None else repr(d) if isinstance(d, SymbolicDim) else str(d)


@dataclass(frozen=True)
class TensorAnnotation:
    """`A: T.Tensor((M, K), "float16")`; a None dimension matches any size.

    `space` is None for a kernel argument (global memory) and the memory space for the
    `T.SharedBuffer` / `T.FragmentBuffer` / `T.LocalBuffer` annotations of macro parameters.
    """

    shape: tuple
    dtype: DType
    space: Optional[MemorySpace] = None

    def describe(self) -> str:
        dims = ", ".join(_describe_dim(d) for d in self.shape)
        return f"T.Tensor(({dims}{',' if len(self.shape) == 1 else ''}), {self.dtype})"

    def bind(self, shape: tuple, bindings: dict) -> None:
        """Binds this annotation's bare symbols that `bindings` does not hold yet."""
        if len(shape) != len(self.shape):
            return
        for want, got in zip(self.shape, shape):
            if isinstance(want, SymbolicDim) and not isinstance(want, SymbolicExpr):
                bindings.setdefault(want, int(got))

    def mismatch(self, shape: tuple, dtype: DType, bindings: Optional[dict] = None):
        """A sentence saying how (shape, dtype) differs from the annotation, or None."""
        bindings = {} if bindings is None else bindings
        wanted = tuple(want.evaluate(bindings) if isinstance(want, SymbolicDim) else want
                       for want in self.shape)
        if len(shape) != len(self.shape) or any(
                want is not None and want != got for want, got in zip(wanted, shape)):
            values = "".join(f"; {s.name} = {bindings[s]}" for s in self._symbols()
                             if s in bindings)
            return f"has shape {tuple(shape)} but is annotated {self.describe()}{values}"
        if dtype is not self.dtype:
            return f"has dtype {dtype} but is annotated {self.describe()}"
        return None

    def resolve(self, bindings: dict) -> tuple:
        """The static shape this annotation gives, or a sentence saying what is unknown."""
        out = []
        for d in self.shape:
            value = d.evaluate(bindings) if isinstance(d, SymbolicDim) else d
            if value is None:
                what = "a None dimension" if d is None else f"{d!r}, which no input determines"
                raise ValueError(f"is annotated {self.describe()} with {what}")
            out.append(int(value))
        return tuple(out)

    def _symbols(self) -> tuple:
        out = ()
        for d in self.shape:
            out += d.symbols() if isinstance(d, SymbolicDim) else ()
        return out


def _dimension(d):
    if d is None or isinstance(d, SymbolicDim):
        return d
    if isinstance(d, bool) or not isinstance(d, (int, np.integer)):
        raise JtileTraceError(f"a T.Tensor dimension must be an int, None or a T.dynamic "
                              f"symbol; got {d!r}")
    return int(d)


class _TensorProxy:
    """`T.Tensor(shape, dtype)` and `T.Tensor[shape, dtype]`, as TileLang writes them."""

    def __init__(self, name: str, space: Optional[MemorySpace] = None):
        self._name = name
        self._space = space

    def __call__(self, shape, dtype="float32", data=None, scope=None, strides=None,
                 **unsupported):
        if self._space is None and (data is not None or scope not in (None, "global")):
            # `T.Tensor(shape, dtype, buf.data)` is a view of another buffer's bytes.
            from jtile.language.view import Tensor as tensor_view

            return tensor_view(shape, dtype, data, scope)
        if strides is not None or unsupported or data is not None or scope is not None:
            unsupported = dict(unsupported, data=data, scope=scope)
            names = sorted(k for k, v in unsupported.items() if v is not None) + \
                (["strides"] if strides is not None else [])
            raise JtileTraceError(f"T.{self._name}: argument(s) {', '.join(names)} are not "
                                  "supported; jtile arrays are contiguous (row-major)")
        shape = tuple(shape) if isinstance(shape, (tuple, list)) else (shape,)
        return TensorAnnotation(tuple(_dimension(d) for d in shape), as_dtype(dtype),
                                self._space)

    def __getitem__(self, key):
        if isinstance(key, tuple) and len(key) == 2 and isinstance(key[0], (tuple, list)):
            return self(key[0], key[1])
        if isinstance(key, tuple) and len(key) == 2 and not isinstance(key[1], (int, SymbolicDim)) \
                and key[1] is not None:
            return self(key[0], key[1])
        return self(key)

    def __repr__(self) -> str:
        return f"T.{self._name}"


Tensor = _TensorProxy("Tensor")
Buffer = _TensorProxy("Buffer")
SharedBuffer = _TensorProxy("SharedBuffer", MemorySpace.SHARED_DYN)
FragmentBuffer = _TensorProxy("FragmentBuffer", MemorySpace.FRAGMENT)
LocalBuffer = _TensorProxy("LocalBuffer", MemorySpace.LOCAL)
