"""TileLang's kernel styles: `@T.prim_func`, `@T.macro` and `T.const`.

The factory style returns a `@T.prim_func` whose parameters carry `T.Tensor` annotations:

    def matmul(M, N, K, block_M, block_N, block_K, dtype="float16"):
        @T.prim_func
        def gemm(A: T.Tensor((M, K), dtype), B: T.Tensor((K, N), dtype),
                 C: T.Tensor((M, N), dtype)):
            with T.Kernel(T.ceildiv(N, block_N), T.ceildiv(M, block_M), threads=128) as (bx, by):
                ...
        return gemm

    C = jtile.pallas_like(matmul(1024, 1024, 1024, 128, 128, 32))(A, B)

The eager-jit style names shape symbols with `T.const`, annotates the parameters in the body
and returns its `T.empty` outputs:

    def add(A, B, block_M: int = 32, block_N: int = 32):
        M, N = T.const("M, N")
        A: T.Tensor((M, N), T.float32)
        B: T.Tensor((M, N), T.float32)
        C = T.empty((M, N), T.float32)
        with T.Kernel(T.ceildiv(N, block_N), T.ceildiv(M, block_M), threads=128) as (bx, by):
            ...
        return C

    C = jtile.pallas_like(add)(A, B)
"""

from __future__ import annotations

import functools
import inspect

from jtile.errors import JtileTraceError
from jtile.language.reference import as_reference, reference_parameters
from jtile.language.tensor import SymbolicDim, check_shape_dtype, split_names
from jtile.trace.builder import active_builder, current
from jtile.trace.source import caller_location


class PrimFunc:
    """A kernel function marked with `@T.prim_func`; `jtile.pallas_like` launches it.

    Its parameters are the kernel's arrays, inputs first, then outputs; annotate them with
    `T.Tensor(shape, dtype)`. Outputs the caller does not pass take their shape and dtype from
    their annotations (TileLang's `out_idx` for trailing parameters).
    """

    def __init__(self, fn):
        functools.update_wrapper(self, fn)
        self.__jtile_function__ = fn

    def __call__(self, *args, **kwargs):
        name = getattr(self.__jtile_function__, "__name__", "kernel")
        raise JtileTraceError(
            f"{name} is a T.prim_func kernel, launched from JAX with "
            f"`jtile.pallas_like({name})(*arrays)`; it cannot be called directly (inside a "
            "kernel, call a @T.macro helper instead)")

    def __repr__(self) -> str:
        return f"T.prim_func({getattr(self.__jtile_function__, '__name__', '?')})"


def prim_func(fn=None, *, private: bool = False, check_well_formed: bool = True):
    """Marks a kernel function (TileLang's `@T.prim_func`, with or without arguments).

    `private=True` holds trivially: a jtile kernel is never exported by name, whatever the
    flag. `check_well_formed=False` is refused: jtile's checks of a kernel find real errors
    (out-of-range tiles, layouts that cannot meet) and always run.
    """
    if check_well_formed is not True:
        raise JtileTraceError(
            f"T.prim_func(check_well_formed={check_well_formed!r}): jtile always checks its "
            "kernels (its rules find real errors, not IR formalities); drop the argument")
    if fn is None:
        return lambda f: PrimFunc(f)
    if not callable(fn):
        raise JtileTraceError(f"T.prim_func decorates a kernel function; got {fn!r}")
    return PrimFunc(fn)


class Macro:
    """A helper called from kernel bodies (`@T.macro`): its statements are traced into the
    caller's kernel, and Python `if` / `while` / `and` / `or` inside it work on traced values
    as in the kernel itself."""

    def __init__(self, fn):
        functools.update_wrapper(self, fn)
        self.__jtile_function__ = fn
        self._prepared = None
        # Parameters annotated T.Ref, and the signature that binds them, read once.
        self._references = reference_parameters(fn)
        self._signature = inspect.signature(fn) if self._references else None

    def __call__(self, *args, **kwargs):
        if active_builder() is None:
            name = getattr(self.__jtile_function__, "__name__", "macro")
            raise JtileTraceError(f"T.macro {name} was called at {caller_location()} outside a "
                                  "kernel trace; call it from a kernel body")
        if self._prepared is None:
            from jtile.trace.ast_rewrite import prepare

            self._prepared = prepare(self.__jtile_function__).fn
        fn = self._prepared
        if self._references:
            name = getattr(self.__jtile_function__, "__name__", "macro")
            bound = self._signature.bind(*args, **kwargs)
            for parameter in self._references:
                if parameter in bound.arguments:
                    bound.arguments[parameter] = as_reference(bound.arguments[parameter],
                                                              parameter, name)
            args, kwargs = bound.args, bound.kwargs
        values = getattr(active_builder(), "symbol_values", None)
        if values:
            # Shape symbols of the enclosing factory read as the ints this trace bound.
            from jtile.trace.trace_kernel import bind_symbols

            fn = bind_symbols(fn, values)
        return fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"T.macro({getattr(self.__jtile_function__, '__name__', '?')})"


def macro(fn=None, **unsupported):
    """Marks a helper function traced into the kernels that call it (TileLang's `@T.macro`)."""
    if unsupported:
        raise JtileTraceError(f"T.macro: argument(s) {', '.join(sorted(unsupported))} are not "
                              "supported; use @T.macro")
    if fn is None:
        return lambda f: Macro(f)
    return Macro(fn)


def const(names: str, dtype="int32"):
    """Shape symbols of TileLang's eager-jit style: `M, N = T.const("M, N")`.

    Each name takes its value from the kernel arguments: the first in-body annotation
    `A: T.Tensor(shape, dtype)` whose evaluated shape has the symbol as a whole dimension binds
    it to that dimension of `A`, and later annotations are checked against it. The symbol may
    reach the annotation through Python variables and expressions (`shape = [M, N] if t else
    [N, M]`, `KH = K`). From the binding on, the kernel function sees ints wherever it holds
    the symbols (locals, lists and tuples of them); before it, a symbol can be passed around but
    not read as a number. Where the name is itself a dimension of a top-level annotation of a
    parameter (`A: T.Tensor((M, N), dtype)` in the body), its value is known from the start and
    the int is returned at once. A name that no annotation binds is an error, as in TileLang.
    Names are separated by commas or spaces; one name gives one value, several a tuple.
    """
    builder = current("T.const")
    loc = caller_location()
    try:
        check_shape_dtype(dtype, "T.const")
        parts = split_names(names, "T.const")
    except JtileTraceError as error:
        raise builder.error(str(error), loc, op="T.const") from None
    sources = getattr(builder, "const_sources", {})
    values = []
    for name in parts:
        source = sources.get(name)
        if source is not None and source[1] < len(source[0].shape):
            buffer, dim = source
            values.append(int(buffer.shape[dim]))
            continue
        # Known only when an annotation is evaluated against its argument.
        symbol = SymbolicDim(name, dtype, "T.const", loc)
        if not hasattr(builder, "const_symbols"):
            builder.const_symbols = []
        builder.const_symbols.append(symbol)
        values.append(symbol)
    return values[0] if len(values) == 1 else tuple(values)


def check_consts_bound(builder) -> None:
    """Refuses a `T.const` name that no in-body annotation bound (TileLang requires a direct
    use of every constant in an argument's shape)."""
    values = getattr(builder, "symbol_values", {})
    for symbol in getattr(builder, "const_symbols", ()):
        if symbol.evaluate(values) is None:
            why = getattr(builder, "const_unavailable", "")
            raise builder.error(
                f"{symbol.name} is never bound: no in-body annotation `A: T.Tensor((..., "
                f"{symbol.name}, ...), dtype)` of a kernel argument has it as a whole dimension, "
                "so its value cannot be taken from the arguments; annotate an argument with it, "
                f"or use a Python int{why}", symbol.loc, op="T.const")
