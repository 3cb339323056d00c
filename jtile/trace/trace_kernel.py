"""Tracing a kernel function into a `Kernel`: binds parameters, runs the body once."""

from __future__ import annotations

import inspect
from typing import Callable, Optional, Sequence

from jtile.errors import JtileShapeError, JtileTraceError
from jtile.ir.nodes import Buffer, Kernel, SourceLoc
from jtile.language.kernel import open_kernel
from jtile.language.tensor import TensorAnnotation
from jtile.trace.builder import Builder, new_global, tracing


def _innermost(fn: Callable) -> Callable:
    """The user's function under functools.wraps wrappers and functools.partial layers."""
    for _ in range(16):
        inner = inspect.unwrap(fn)
        inner = getattr(inner, "func", inner)
        if inner is fn:
            break
        fn = inner
    return fn


def function_location(fn: Callable) -> SourceLoc:
    target = _innermost(fn)
    try:
        return SourceLoc(inspect.getsourcefile(target) or "<unknown>",
                         inspect.getsourcelines(target)[1])
    except (OSError, TypeError):
        return SourceLoc("<unknown>", 0)


def _parameters(fn: Callable) -> list:
    try:
        signature = inspect.signature(fn, eval_str=True)
    except Exception:  # annotations that do not evaluate: keep their raw form
        signature = inspect.signature(fn)
    return [p for p in signature.parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]


def trace(fn: Callable, inputs: Sequence[tuple], outputs: Optional[Sequence[tuple]], *,
          grid: Optional[tuple] = None, threads: Optional[int] = None,
          name: Optional[str] = None) -> Kernel:
    """Runs `fn` on symbolic buffers and returns the kernel it describes.

    Args:
        fn: the kernel body: inputs first, then one ref per output when `outputs` is given.
        inputs: (shape, DType) of each input array.
        outputs: (shape, DType) of each output, or None when the body declares its outputs
            with `T.empty` and returns them.
        grid: Pallas-style launch grid; the body then runs inside an implicit `T.Kernel`.
        threads: threads per block with `grid` (default 128).
        name: the kernel's name (default: the function's).
    """
    kernel_name = name or getattr(_innermost(fn), "__name__", "kernel")
    builder = Builder(kernel_name, function_location(fn))
    params = _parameters(fn)
    wanted = len(inputs) + (len(outputs) if outputs is not None else 0)
    required = [p for p in params if p.default is p.empty]
    if len(required) > wanted or len(params) < wanted:
        kind = "inputs and output refs" if outputs is not None else "inputs"
        raise builder.error(f"the kernel takes {len(required)} array parameters but is called with "
                            f"{wanted} {kind}", cls=JtileTraceError)
    builder.declared_out_shape = outputs is not None
    params = params[:wanted]
    buffers = []
    for index, (param, (shape, dtype)) in enumerate(zip(params, list(inputs) + list(outputs or ()))):
        buf = new_global(builder, param.name, shape, dtype, builder.loc)
        _check_annotation(builder, param, buf, index < len(inputs))
        buffers.append(buf)
    builder.inputs = buffers[: len(inputs)]
    builder.outputs = buffers[len(inputs):]
    with tracing(builder):
        if grid is not None:
            builder.implicit_grid = True
            open_kernel(builder, tuple(grid), threads or 128, builder.loc)
            with builder.block() as body:
                result = fn(*buffers)
            builder.kernel_body = tuple(body)
        else:
            if threads is not None:
                raise builder.error("threads= goes with grid=; without grid= pass threads to "
                                    "T.Kernel(...)")
            result = fn(*buffers)
    if outputs is None:
        _bind_returned_outputs(builder, result)
    elif result is not None:
        raise builder.error("a kernel launched with out_shape= writes its output refs and "
                            "returns nothing")
    return builder.finish()


def _check_annotation(builder: Builder, param, buf: Buffer, is_input: bool) -> None:
    annotation = param.annotation
    if not isinstance(annotation, TensorAnnotation):
        return
    problem = annotation.mismatch(buf.shape, buf.dtype)
    if problem:
        role = "input" if is_input else "output"
        raise builder.error(f"{role} parameter `{param.name}` {problem}", cls=JtileShapeError)


def _bind_returned_outputs(builder: Builder, result) -> None:
    returned = result if isinstance(result, (tuple, list)) else (result,)
    if result is None or not returned:
        raise builder.error("the kernel declared no out_shape= and returned nothing; declare "
                            "outputs with T.empty(shape, dtype) and return them, or pass "
                            "out_shape= to jtile.pallas_like")
    ordered = []
    for value in returned:
        if not isinstance(value, Buffer) or value not in builder.outputs:
            raise builder.error(f"the kernel returned {value!r}; it must return the buffers "
                                "made by T.empty")
        ordered.append(value)
    missing = [b.name for b in builder.outputs if b not in ordered]
    if missing:
        raise builder.error(f"T.empty outputs {missing} were declared but not returned")
    builder.outputs = ordered
