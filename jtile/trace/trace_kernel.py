"""Tracing a kernel function into a `Kernel`: binds parameters, runs the body once."""

from __future__ import annotations

import functools
import inspect
import types
from typing import Callable, Optional, Sequence

from jtile.errors import JtileShapeError, JtileTraceError
from jtile.ir.nodes import Buffer, Expr, Kernel, SourceLoc
from jtile.language.kernel import open_kernel
from jtile.language.tensor import SymbolicDim, TensorAnnotation
from jtile.trace.ast_rewrite import RUNTIME, prepare
from jtile.trace.builder import Builder, new_global, tracing


def _innermost(fn: Callable) -> Callable:
    """The user's function under functools.wraps wrappers, functools.partial layers and
    `T.prim_func` / `T.macro` objects."""
    for _ in range(16):
        inner = getattr(fn, "__jtile_function__", None) or inspect.unwrap(fn)
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
        code = getattr(target, "__code__", None)
        if code is not None:
            return SourceLoc(code.co_filename, code.co_firstlineno)
        return SourceLoc("<unknown>", 0)


def _parameters(fn: Callable, builder: Builder) -> list:
    """The positional parameters, string annotations (`from __future__ import annotations`)
    evaluated in the kernel function's globals and closure, as TileLang reads them."""
    params = [p for p in inspect.signature(fn).parameters.values()
              if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if not any(isinstance(p.annotation, str) for p in params):
        return params
    target = _innermost(fn)
    namespace = dict(getattr(target, "__globals__", {}))
    code = getattr(target, "__code__", None)
    for name, cell in zip(code.co_freevars if code else (), getattr(target, "__closure__", None)
                          or ()):
        try:
            namespace[name] = cell.cell_contents
        except ValueError:  # an empty cell
            pass
    out = []
    for p in params:
        if isinstance(p.annotation, str):
            try:
                p = p.replace(annotation=eval(p.annotation, namespace))  # noqa: S307
            except Exception as error:
                if "Tensor" in p.annotation or "Buffer" in p.annotation:
                    raise builder.error(
                        f"the annotation {p.annotation!r} of parameter `{p.name}` does not "
                        f"evaluate ({type(error).__name__}: {error}); with `from __future__ "
                        "import annotations` its names must be globals of the kernel's module "
                        "or be used in the kernel body") from None
        out.append(p)
    return out


def _tensor_annotation(param) -> Optional[TensorAnnotation]:
    annotation = param.annotation
    return annotation if isinstance(annotation, TensorAnnotation) else None


def trace(fn: Callable, inputs: Sequence[tuple], outputs: Optional[Sequence[tuple]], *,
          grid: Optional[tuple] = None, threads: Optional[int] = None,
          name: Optional[str] = None, returned: Optional[list] = None,
          aliases: Optional[dict] = None) -> Kernel:
    """Runs `fn` on symbolic buffers and returns the kernel it describes.

    The body's Python control flow is rewritten first (`jtile.trace.ast_rewrite`), so `if`,
    `while`, `and`, `or`, `not` and conditional expressions work on traced values.

    Args:
        fn: the kernel body: inputs first, then one ref per output when `outputs` is given.
            A `@T.prim_func`, a `functools.partial` of a kernel, or a plain function.
        inputs: (shape, DType) of each input array.
        outputs: (shape, DType) of each output, or None. Without them, parameters after the
            inputs that carry a `T.Tensor` annotation (and no default) are the outputs, with
            the annotated shape and dtype; if there are none, inputs named in `aliases` are
            in-place parameters (below); otherwise the body declares its outputs with
            `T.empty` and returns them.
        grid: Pallas-style launch grid; the body then runs inside an implicit `T.Kernel`.
        threads: threads per block with `grid` (default 128).
        name: the kernel's name (default: the function's).
        returned: when given, receives whether the body returned a tuple or list.
        aliases: input index -> output index (input_output_aliases). When every parameter is
            an input, an aliased one is TileLang's in-place argument (a kernel compiled
            without out_idx): the body writes the output buffer under that parameter's name,
            and the output starts with the input's contents.
    """
    kernel_name = name or getattr(_innermost(fn), "__name__", "kernel")
    builder = Builder(kernel_name, function_location(fn))
    prepared = prepare(fn)
    buffers, bindings, inferred = _bind_parameters(builder, fn, prepared, inputs, outputs,
                                                   aliases or {})
    outputs = outputs if outputs is not None else (inferred or None)
    body = bind_symbols(prepared.fn, bindings) if bindings else prepared.fn
    with tracing(builder):
        if grid is not None:
            builder.implicit_grid = True
            open_kernel(builder, tuple(grid), threads or 128, builder.loc)
            with builder.block() as stmts:
                result = _run(builder, body, buffers, prepared)
            builder.kernel_body = tuple(stmts)
        else:
            if threads is not None:
                raise builder.error("threads= goes with grid=; without grid= pass threads to "
                                    "T.Kernel(...)")
            result = _run(builder, body, buffers, prepared)
    if returned is not None:
        returned.append(isinstance(result, (tuple, list)))
    if outputs is None:
        _bind_returned_outputs(builder, result)
    elif result is not None:
        which = "out_shape=" if not inferred else "outputs given as annotated parameters"
        raise builder.error(f"a kernel launched with {which} writes its output refs and "
                            "returns nothing")
    return builder.finish()


def _bind_parameters(builder: Builder, fn: Callable, prepared, inputs, outputs,
                     aliases: dict) -> tuple:
    """Makes the parameter buffers, checks their `T.Tensor` annotations (binding `T.dynamic`
    symbols), takes outputs from annotations (or in-place parameters) when none are given,
    and records where the body's `T.const` names come from. Returns (buffers, symbol
    bindings, inferred outputs)."""
    params = _parameters(fn, builder)
    annotations = [_tensor_annotation(p) for p in params]
    bindings: dict = {}
    for annotation, (shape, _) in zip(annotations, inputs):
        if annotation is not None:
            annotation.bind(shape, bindings)
    inferred = [] if outputs is not None else _annotated_outputs(
        builder, params[len(inputs):], annotations[len(inputs):], bindings)
    in_place = _in_place_parameters(builder, inputs, outputs, inferred, aliases, annotations)
    if in_place:
        inferred = [inputs[i] for i in in_place]
    outputs = outputs if outputs is not None else (inferred or None)
    wanted = len(inputs) + (len(outputs) if outputs is not None and not in_place else 0)
    required = [p for p in params if p.default is p.empty]
    if len(required) > wanted or len(params) < wanted:
        kind = "inputs and output refs" if outputs is not None else "inputs"
        raise builder.error(f"the kernel takes {len(required)} array parameters but is called with "
                            f"{wanted} {kind}", cls=JtileTraceError)
    builder.declared_out_shape = outputs is not None
    params = params[:wanted]
    buffers = []
    arrays = list(inputs) + list(outputs or ())
    for index, (param, (shape, dtype)) in enumerate(zip(params, arrays)):
        # An in-place parameter's own name goes to the output the body writes.
        name = f"{param.name}_in" if index in in_place else param.name
        buf = new_global(builder, name, shape, dtype, builder.loc)
        _check_annotation(builder, param, buf, index < len(inputs), bindings)
        buffers.append(buf)
    builder.inputs = buffers[: len(inputs)]
    builder.outputs = buffers[len(inputs):]
    if in_place:
        # The body sees the output under the parameter's name; the input buffer only gives
        # the output its starting contents (the two are one allocation).
        builder.outputs = [new_global(builder, params[i].name, *inputs[i], builder.loc)
                           for i in in_place]
        for i, out in zip(in_place, builder.outputs):
            buffers[i] = out
    builder.symbol_values = bindings
    by_name = {p.name: b for p, b in zip(params, buffers)}
    builder.const_sources = {const: (by_name[param], dim)
                             for const, (param, dim) in prepared.const_sources
                             if param in by_name}
    if not prepared.rewritten:
        builder.const_unavailable = (f" (jtile could not read the kernel's source: "
                                     f"{prepared.why_not})")
    return buffers, bindings, inferred


def _in_place_parameters(builder: Builder, inputs, outputs, inferred, aliases: dict,
                         annotations: list) -> list:
    """Input indices of TileLang's in-place parameters, in output order: the aliased inputs
    when the caller passed every parameter (no out_shape, no annotated outputs left) and
    each aliased one carries a `T.Tensor` annotation in the signature (the prim_func style;
    other kernels keep their T.empty outputs)."""
    if outputs is not None or inferred or not aliases:
        return []
    if not all(0 <= i < min(len(inputs), len(annotations)) and annotations[i] is not None
               for i in aliases):
        return []
    order = sorted(aliases, key=lambda i: aliases[i])
    if [aliases[i] for i in order] != list(range(len(order))):
        raise builder.error(
            f"input_output_aliases {dict(sorted(aliases.items()))} on a kernel given all its "
            f"parameters ({len(inputs)} inputs) makes the aliased inputs in-place parameters, "
            "returned in output order: the output indices must be 0, 1, ... with none missing",
            cls=JtileTraceError)
    return order


def _annotated_outputs(builder: Builder, params: list, annotations: list, bindings: dict):
    """(shape, dtype) of the annotated parameters after the inputs (TileLang's out_idx)."""
    outputs = []
    for param, annotation in zip(params, annotations):
        if annotation is None or param.default is not param.empty:
            break
        try:
            outputs.append((annotation.resolve(bindings), annotation.dtype))
        except ValueError as error:
            raise builder.error(f"output parameter `{param.name}` {error}; pass out_shape= to "
                                "jtile.pallas_like", cls=JtileShapeError) from None
    return outputs


def _run(builder: Builder, body: Callable, buffers: list, prepared):
    try:
        return body(*buffers)
    except JtileTraceError as error:
        hint = _control_flow_hint(error, prepared)
        if hint:
            raise type(error)(f"{error}. {hint}").with_traceback(error.__traceback__) from None
        raise


def _control_flow_hint(error: JtileTraceError, prepared) -> str:
    """Why Python control flow on a traced value was not rewritten, when that is the error."""
    tb = error.__traceback__
    frames = []
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    if not frames or frames[-1].f_code is not Expr.__bool__.__code__:
        return ""
    if not prepared.rewritten:
        return (f"jtile rewrites Python control flow on traced values only where it can read "
                f"the kernel's source, and here it cannot: {prepared.why_not}")
    import os

    jtile_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    user = [f for f in frames[:-1] if not os.path.abspath(f.f_code.co_filename).startswith(
        jtile_dir + os.sep)]
    if user and RUNTIME not in user[-1].f_code.co_freevars and \
            RUNTIME not in user[-1].f_code.co_cellvars:
        return (f"Python control flow is rewritten in the kernel function itself; "
                f"`{user[-1].f_code.co_name}` is a helper it calls: decorate it with @T.macro")
    return ""


def _check_annotation(builder: Builder, param, buf: Buffer, is_input: bool,
                      bindings: dict) -> None:
    annotation = param.annotation
    if not isinstance(annotation, TensorAnnotation):
        return
    problem = annotation.mismatch(buf.shape, buf.dtype, bindings)
    if problem:
        role = "input" if is_input else "output"
        raise builder.error(f"{role} parameter `{param.name}` {problem}", cls=JtileShapeError)


def bind_symbols(fn: Callable, values: dict) -> Callable:
    """`fn` seeing the ints of the `T.dynamic` symbols it names directly: closure cells and
    globals that hold a bound symbol are replaced (in a copy) by its value for this trace."""
    if isinstance(fn, functools.partial):
        return functools.partial(bind_symbols(fn.func, values), *fn.args, **fn.keywords)
    if not isinstance(fn, types.FunctionType):
        return fn

    def bound(value):
        return isinstance(value, SymbolicDim) and value in values

    closure = fn.__closure__
    if closure and any(_cell_holds(c, bound) for c in closure):
        closure = tuple(types.CellType(values[c.cell_contents]) if _cell_holds(c, bound) else c
                        for c in closure)
    names = _global_names(fn.__code__)
    globals_ = fn.__globals__
    if any(bound(globals_.get(n)) for n in names):
        globals_ = dict(globals_)
        for n in names:
            if bound(globals_.get(n)):
                globals_[n] = values[globals_[n]]
    if closure is fn.__closure__ and globals_ is fn.__globals__:
        return fn
    new = types.FunctionType(fn.__code__, globals_, fn.__name__, fn.__defaults__, closure)
    new.__kwdefaults__ = fn.__kwdefaults__
    new.__dict__.update(fn.__dict__)
    return new


def _cell_holds(cell, test) -> bool:
    try:
        return test(cell.cell_contents)
    except ValueError:  # an empty cell
        return False


def _global_names(code) -> set:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _global_names(const)
    return names


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
