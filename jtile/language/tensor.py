"""`T.Tensor` annotations and symbolic dimensions: the shapes and dtypes a kernel expects.

A kernel parameter annotated `A: T.Tensor((M, K), "float16")` (in the signature, TileLang's
`@T.prim_func` style, or as a statement in the body, its eager-jit style) is checked against
the array it receives. Dimensions are ints, None (any size), or symbols made by `T.dynamic` /
`T.symbolic` / `T.const`, which take their value from the first argument that has them as a
whole dimension and must agree everywhere else. The annotation is evaluated as Python, so a
symbol may reach it through variables (`shape = [M, N]; A: T.Tensor(shape, dtype)`). jtile
shapes are static: a kernel with symbolic dimensions is traced once per distinct set of
argument shapes, and a bound symbol is simply its int from then on.
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
    """A named dimension known only from the arguments' shapes (`T.dynamic("m")`, or a
    `T.const` name whose value an in-body annotation gives).

    A symbol is bound while a kernel is traced: by the parameter annotations before the body
    runs, or by the in-body annotation `A: T.Tensor((m, ...), dtype)` that has it as a whole
    dimension. Once bound it reads as its int (`int(m)`, `range(m)`, `m * 2`, `m < 64`), and
    the kernel function sees the int wherever it names the symbol: its locals, closure and
    globals, and lists and tuples of them (`shape = [m, n]`). Reading the value of a symbol
    that is not bound yet is an error that says where its value would come from.

    Attributes:
        name: the name shown in messages.
        dtype: the integer dtype it was declared with.
        origin: "T.dynamic" or "T.const" (for messages).
        loc: where it was declared, when that was inside a kernel body.
    """

    def __init__(self, name: str, dtype: str = "int32", origin: str = "T.dynamic", loc=None):
        self.name = name
        self.dtype = dtype
        self.origin = origin
        self.loc = loc

    def symbols(self) -> tuple:
        return (self,)

    def evaluate(self, bindings: dict):
        return bindings.get(self)

    def __repr__(self) -> str:
        return self.name

    # ------------------------------------------------------------------ its value
    def bound_value(self) -> Optional[int]:
        """The value the kernel being traced gives this symbol, or None."""
        from jtile.trace.builder import active_builder

        builder = active_builder()
        values = getattr(builder, "symbol_values", None) if builder is not None else None
        return None if values is None else self.evaluate(values)

    def __index__(self) -> int:
        value = self.bound_value()
        if value is not None:
            return int(value)
        raise self._unbound_error()

    __int__ = __index__

    def _unbound_error(self) -> JtileTraceError:
        from jtile.ir.nodes import traced_value_error
        from jtile.trace.builder import active_builder

        builder = active_builder()
        values = getattr(builder, "symbol_values", {}) if builder is not None else {}
        missing = [s for s in self.symbols() if s.evaluate(values) is None] or [self]
        first = missing[0]
        where = f" at {first.loc}" if first.loc is not None else ""
        what = f"{first.name} ({first.origin}{where})"
        if self is not first:
            what = f"{self!r} uses {what}, which"
        return traced_value_error(
            f"{what} has no value yet: a shape symbol takes the size of the kernel argument whose "
            f"`T.Tensor` annotation has it as a whole dimension (`A: T.Tensor((..., {first.name},"
            f" ...), dtype)`), and no annotation has bound it here; annotate that argument "
            f"before using {first.name}{getattr(builder, 'const_unavailable', '')}")

    def __bool__(self) -> bool:
        value = self.bound_value()
        if value is not None:
            return bool(value)
        if _in_trace():
            raise self._unbound_error()
        return True

    # ------------------------------------------------------------------ arithmetic
    def _combine(self, op, other, reverse=False):
        from jtile.ir.nodes import Expr

        if isinstance(other, Expr):
            # A traced operand makes an IR expression, which needs this symbol's int.
            mine = self.__index__()
            return _OPS[op](other, mine) if reverse else _OPS[op](mine, other)
        if isinstance(other, bool) or not isinstance(other, (int, np.integer, SymbolicDim)):
            return NotImplemented
        other = int(other) if isinstance(other, np.integer) else other
        expr = SymbolicExpr(op, (other, self) if reverse else (self, other))
        value = expr.bound_value()
        return expr if value is None else int(value)

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
    def __neg__(self): return self._combine("-", 0, True)

    # ------------------------------------------------------------------ comparisons
    def _compare(self, op, other):
        """Compares values once bound; `==` between symbols that are not bound is identity."""
        from jtile.ir.nodes import Expr

        if isinstance(other, Expr):
            return op(self.__index__(), other)
        if isinstance(other, bool) or not isinstance(other, (int, np.integer, SymbolicDim)):
            return NotImplemented
        mine = self.bound_value()
        theirs = other.bound_value() if isinstance(other, SymbolicDim) else int(other)
        if mine is not None and theirs is not None:
            return op(mine, theirs)
        if op in (operator.eq, operator.ne) and isinstance(other, SymbolicDim):
            return op(id(self), id(other))
        if _in_trace():
            raise (self if mine is None else other)._unbound_error()
        return NotImplemented

    def __eq__(self, o): return True if o is self else self._compare(operator.eq, o)
    def __ne__(self, o): return False if o is self else self._compare(operator.ne, o)
    def __lt__(self, o): return self._compare(operator.lt, o)
    def __le__(self, o): return self._compare(operator.le, o)
    def __gt__(self, o): return self._compare(operator.gt, o)
    def __ge__(self, o): return self._compare(operator.ge, o)
    __hash__ = object.__hash__   # symbols are dictionary keys by identity


def _in_trace() -> bool:
    from jtile.trace.builder import active_builder

    return active_builder() is not None


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


# Containers searched for symbols: kernels keep shapes in lists and tuples (`q_shape = [B, S,
# H, D]`), sometimes in dicts. Longer containers are data, not shapes.
_CONTAINER_LIMIT = 64


def holds_symbols(value, depth: int = 3) -> bool:
    """Whether `value` is a symbol, or a list, tuple or dict holding one."""
    if isinstance(value, SymbolicDim):
        return True
    if depth == 0 or not isinstance(value, (list, tuple, dict)) or len(value) > _CONTAINER_LIMIT:
        return False
    items = value.values() if isinstance(value, dict) else value
    return any(holds_symbols(v, depth - 1) for v in items)


def resolve_symbols(value, bindings: dict, depth: int = 3):
    """`value` with every symbol that `bindings` determines replaced by its int, inside lists,
    tuples (named ones too) and dicts as well. Containers are rebuilt, never changed in place
    (a list of symbols may be shared by traces with other values); `value` itself is returned
    when nothing changes."""
    if isinstance(value, SymbolicDim):
        resolved = value.evaluate(bindings)
        return value if resolved is None else int(resolved)
    if depth == 0 or not isinstance(value, (list, tuple, dict)) or len(value) > _CONTAINER_LIMIT:
        return value
    if isinstance(value, dict):
        items = {k: resolve_symbols(v, bindings, depth - 1) for k, v in value.items()}
        if all(items[k] is v for k, v in value.items()):
            return value
        return type(value)(items) if type(value) is dict else items
    items = [resolve_symbols(v, bindings, depth - 1) for v in value]
    if all(a is b for a, b in zip(items, value)):
        return value
    if isinstance(value, list):
        return items
    if hasattr(value, "_fields"):   # a namedtuple
        return type(value)(*items)
    return tuple(items)


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
    loc = None
    if _in_trace():   # declared in a kernel body: bound there by an in-body annotation
        from jtile.trace.source import caller_location

        loc = caller_location()
    symbols = tuple(SymbolicDim(n, dtype, "T.dynamic", loc)
                    for n in split_names(name, "T.dynamic"))
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
        if dtype.numpy != self.dtype.numpy:
            # Storage decides: a tfloat32 parameter holds a float32 array.
            return f"has dtype {dtype} but is annotated {self.describe()}"
        return None

    def undetermined(self, bindings: dict) -> Optional[str]:
        """A sentence naming a symbolic dimension `bindings` cannot give a value, or None."""
        for d in self.shape:
            if isinstance(d, SymbolicDim) and d.evaluate(bindings) is None:
                names = ", ".join(s.name for s in d.symbols() if s.evaluate(bindings) is None)
                return (f"dimension {d!r} of {self.describe()} uses {names}, which no annotation "
                        "binds: a shape symbol takes its value only where it is a whole "
                        "dimension of an annotated argument (as in TileLang, at least one direct "
                        "use); annotate an argument with it, or use a separate symbol")
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
        from jtile.ir.nodes import Expr, traced_value_error

        why = ""
        if isinstance(d, Expr):
            why = (": it is a traced value, and jtile shapes are static; a scalar argument that "
                   "sizes an array must be a Python int (annotate the parameter `n: T.int32` and "
                   "pass an int, or bind it with functools.partial)")
        raise traced_value_error(f"a T.Tensor dimension must be an int, None or a T.dynamic / "
                                 f"T.const symbol; got {d!r}{why}")
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
