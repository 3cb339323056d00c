"""Tracing a kernel function into a `Kernel`: binds parameters, runs the body once."""

from __future__ import annotations

import functools
import inspect
import types
from typing import Callable, Optional, Sequence

from jtile.errors import JtileShapeError, JtileTraceError
from jtile.ir.nodes import Buffer, Expr, Kernel, SourceLoc
from jtile.ir.types import as_dtype
from jtile.ir.walk import buffers_written, statements
from jtile.language.kernel import open_kernel
from jtile.language.prim_func import check_consts_bound
from jtile.language.tensor import TensorAnnotation, holds_symbols, resolve_symbols
from jtile.trace.ast_rewrite import RUNTIME, prepare
from jtile.trace.python_control import (StaticScalarNeeded, check_annotations_determined,
                                        is_scalar_annotation, static_scalar)
from jtile.trace.builder import Builder, new_global, tracing
from jtile.trace.kernel_sequence import finish_trace
from jtile.trace.output_positions import OutputOrderNeeded, choose_written, input_first_order


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
    """The parameters the caller's arrays fill: the positional ones, then the keyword-only ones
    without a default (those after a parameter that `functools.partial` bound by keyword),
    string annotations (`from __future__ import annotations`) evaluated in the kernel
    function's globals and closure, as TileLang reads them."""
    params = [p for p in inspect.signature(fn).parameters.values()
              if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
              or (p.kind is p.KEYWORD_ONLY and p.default is p.empty)]
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
          aliases: Optional[dict] = None, scalars: Optional[dict] = None,
          static: Optional[list] = None) -> Kernel:
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
            and the output starts with the input's contents. Its `T.Tensor` annotation is in
            the signature, or, in the eager-jit style, in the body; there the aliased inputs
            the body writes are in place, their outputs at the aliased indices and the
            `T.empty` outputs the body returns (if any) in the other places, in order.
        scalars: input index -> the Python number the caller gave there (its (shape, DType)
            in `inputs` is that of the 0-d array JAX makes of it). A parameter annotated as a
            scalar (`n: T.int32`, `n: int`, in the signature or in the body) receives the
            number itself, a static value like a shape, and is no kernel input; the others
            receive the 0-d array.
        static: when given, a list of input indices already known to be static scalars
            (in-body annotated); it receives every index that was.
    """
    kernel_name = name or getattr(_innermost(fn), "__name__", "kernel")
    prepared = prepare(fn)
    known = set(static or ())
    order = None
    while True:
        builder = Builder(kernel_name, function_location(fn))
        try:
            kernel = _trace_once(builder, fn, prepared, inputs, outputs, grid, threads,
                                 returned, dict(aliases or {}), dict(scalars or {}), known,
                                 order)
        except OutputOrderNeeded as need:
            if order is not None:
                raise
            order = need.order
            continue
        except StaticScalarNeeded as need:
            # An in-body `n: T.int32` met a Python number traced as an array: start again
            # with the number as the static value it is meant to be.
            if need.position in known:
                raise
            known.add(need.position)
            continue
        if static is not None:
            static[:] = sorted(builder.static_positions)
        return kernel


def _trace_once(builder: Builder, fn: Callable, prepared, inputs, outputs, grid, threads,
                returned, aliases: dict, scalars: dict, known_static: set, forced_order=None):
    declared = params = _parameters(fn, builder)
    # TileLang's out_idx between inputs: jtile binds the inputs first, the body gets its order.
    order, choices = (forced_order, None) if forced_order is not None else \
        input_first_order(builder, params, inputs, outputs, aliases)
    if order is not None:
        params = [params[i] for i in order]
    if outputs is not None and aliases:
        outputs = _redundant_out_shape(builder, params, inputs, outputs, aliases)
    params, values, bindings, inferred = _bind_parameters(
        builder, params, prepared, inputs, outputs, aliases, scalars, known_static)
    outputs = outputs if outputs is not None else (inferred or None)
    holders = _SymbolHolders()
    builder.symbol_holders = holders
    body = bind_symbols(prepared.fn, bindings, holders)
    with tracing(builder):
        if grid is not None:
            builder.implicit_grid = True
            open_kernel(builder, tuple(grid), threads or 128, builder.loc)
            with builder.block() as stmts:
                result = _run(builder, body, params, values, prepared, order)
            builder.kernel_body = tuple(stmts)
        else:
            if threads is not None:
                raise builder.error("threads= goes with grid=; without grid= pass threads to "
                                    "T.Kernel(...)")
            result = _run(builder, body, params, values, prepared, order)
    if choices is not None:   # several choices of outputs fit: the body's writes decide
        choose_written(builder, declared, order, choices, values, _written_globals(builder),
                       inputs)
    check_annotations_determined(builder)
    check_consts_bound(builder)
    if returned is not None:
        returned.append(isinstance(result, (tuple, list)))
    if outputs is None:
        in_place = _in_body_in_place(builder, values, aliases, len(inputs))
        _bind_returned_outputs(builder, result, nothing_ok=bool(in_place))
        if in_place:
            _make_in_place(builder, params, values, in_place, aliases)
    elif result is not None:
        which = "out_shape=" if not inferred else "outputs given as annotated parameters"
        raise builder.error(f"a kernel launched with {which} writes its output refs and "
                            "returns nothing")
    aliases = kernel_aliases(aliases, builder.static_positions)
    # Several `with T.Kernel` blocks, or T.alloc_global workspaces, make a KernelSequence.
    return finish_trace(builder, aliases)


def _bind_parameters(builder: Builder, params: list, prepared, inputs, outputs,
                     aliases: dict, scalars: Optional[dict] = None,
                     known_static: Sequence[int] = ()) -> tuple:
    """Makes the parameter buffers, checks their `T.Tensor` annotations (binding `T.dynamic`
    symbols), takes outputs from annotations (or in-place parameters) when none are given,
    gives scalar-annotated parameters the Python numbers the caller passed (static values),
    and records where the body's `T.const` names come from. Returns (parameters, per
    parameter its buffer or static value, symbol bindings, inferred outputs)."""
    scalars = scalars or {}
    # Python numbers for scalar parameters are static values, not kernel inputs.
    static = {i: v for i, v in scalars.items() if i < min(len(params), len(inputs)) and
              (i in known_static or is_scalar_annotation(params[i].annotation))}
    for i in aliases:
        if i in static:
            raise builder.error(f"input_output_aliases names argument {i}, a Python number "
                                f"given to the scalar parameter `{params[i].name}` (a static "
                                "value, not an array); alias array arguments only",
                                cls=JtileTraceError)
    annotations = [_tensor_annotation(p) for p in params]
    bindings: dict = {}
    for index, (annotation, (shape, _)) in enumerate(zip(annotations, inputs)):
        if annotation is not None and index not in static:
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
        hint = ""
        if outputs is not None and aliases and len(params) == len(inputs):
            hint = ("; input_output_aliases on a kernel given all its parameters makes the "
                    "aliased ones in-place parameters, whose outputs need no out_shape=: drop "
                    "out_shape=")
        raise builder.error(f"the kernel takes {len(required)} array parameters but is called with "
                            f"{wanted} {kind}{hint}", cls=JtileTraceError)
    builder.declared_out_shape = outputs is not None
    params = params[:wanted]
    values = []
    builder.scalar_origins = {}     # 0-d input made of a Python number -> its position
    arrays = list(inputs) + list(outputs or ())
    for index, (param, (shape, dtype)) in enumerate(zip(params, arrays)):
        if index in static:
            value = static[index]
            if is_scalar_annotation(param.annotation):
                value = static_scalar(builder, param.name, param.annotation, value, builder.loc)
            values.append(value)
            continue
        # An in-place parameter's own name goes to the output the body writes.
        name = f"{param.name}_in" if index in in_place else param.name
        buf = new_global(builder, name, shape, dtype, builder.loc)
        _check_annotation(builder, param, buf, index < len(inputs), bindings)
        if index in scalars:
            builder.scalar_origins[buf] = index
        values.append(buf)
    builder.inputs = [v for v in values[: len(inputs)] if isinstance(v, Buffer)]
    builder.outputs = values[len(inputs):]
    builder.static_positions = set(static)
    builder.annotated_in_body = set()
    if in_place:
        # The body sees the output under the parameter's name; the input buffer only gives
        # the output its starting contents (the two are one allocation).
        builder.outputs = [new_global(builder, params[i].name, *inputs[i], builder.loc)
                           for i in in_place]
        for i, out in zip(in_place, builder.outputs):
            values[i] = out
    builder.symbol_values = bindings
    by_name = {p.name: b for p, b in zip(params, values) if isinstance(b, Buffer)}
    builder.const_sources = {const: (by_name[param], dim)
                             for const, (param, dim) in prepared.const_sources
                             if param in by_name}
    if not prepared.rewritten:
        builder.const_unavailable = (f" (jtile could not read the kernel's source: "
                                     f"{prepared.why_not})")
    return params, values, bindings, inferred


def _redundant_out_shape(builder: Builder, params, inputs, outputs, aliases: dict):
    """None when out_shape only restates the in-place parameters' arrays (a kernel given all
    its parameters, each output aliased to an input of its shape and dtype, as a Pallas call
    writes it); a JtileTraceError naming the difference when an aliased output differs from
    its input; `outputs` unchanged otherwise (the parameter count check reports it)."""
    if len(params) != len(inputs) or sorted(aliases.values()) != list(range(len(outputs))):
        return outputs
    for i, o in sorted(aliases.items(), key=lambda item: item[1]):
        if not 0 <= i < len(inputs):
            return outputs
        (shape, dtype), (want_shape, want_dtype) = inputs[i], outputs[o]
        if tuple(shape) != tuple(want_shape) or as_dtype(dtype) is not as_dtype(want_dtype):
            raise builder.error(
                f"out_shape[{o}] is {want_dtype}{list(want_shape)}, but input {i} "
                f"(`{params[i].name}`), which input_output_aliases writes in place as output "
                f"{o}, is {dtype}{list(shape)}: an in-place output keeps its input's shape and "
                "dtype (out_shape may be left out)", cls=JtileTraceError)
    return None


def _in_place_parameters(builder: Builder, inputs, outputs, inferred, aliases: dict,
                         annotations: list) -> list:
    """Input indices of TileLang's in-place parameters, in output order: the aliased inputs
    when the caller passed every parameter (no out_shape, no annotated outputs left) and
    each aliased one carries a `T.Tensor` annotation in the signature (the prim_func style;
    other kernels keep their T.empty outputs). Annotations in the body are only known once
    it has run: `_in_body_in_place` finds those in-place parameters afterwards."""
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


def _in_body_in_place(builder: Builder, values: list, aliases: dict, num_inputs: int) -> list:
    """Input indices of the eager-jit style's in-place parameters, in output order: aliased
    inputs annotated in the body (`C: T.Tensor((M, N), dtype)`) that the body writes, as
    `_in_place_parameters` finds them from the signature. An aliased input the body only
    reads keeps Pallas' meaning (its output, a `T.empty` one, starts with its contents)."""
    annotated = getattr(builder, "annotated_in_body", ())
    if not aliases or not annotated:
        return []
    written = _written_globals(builder)
    found = [i for i in aliases if 0 <= i < num_inputs and isinstance(values[i], Buffer)
             and values[i] in annotated and values[i] in written]
    return sorted(found, key=lambda i: aliases[i])


def _written_globals(builder: Builder) -> set:
    """The buffers the traced body writes, in every `with T.Kernel` block."""
    bodies = [kernel.body for kernel, _ in getattr(builder, "traced_kernels", ())]
    bodies.append(builder.kernel_body or ())
    written = set()
    for body in bodies:
        for stmt in statements(body):
            written |= buffers_written(stmt)
    return written


def _make_in_place(builder: Builder, params: list, values: list, in_place: list,
                   aliases: dict) -> None:
    """Makes the in-place parameters outputs: each at the output index it is aliased to, the
    returned `T.empty` outputs in the other places, in order. The body wrote each under its
    parameter's name, so that buffer becomes the output and a fresh `<name>_in` input gives
    it its starting contents (one allocation, through the alias)."""
    returned = list(builder.outputs)
    total = len(in_place) + len(returned)
    slots = {aliases[i]: i for i in in_place}
    if any(o >= total for o in slots):
        written = ", ".join(f"`{params[i].name}`" for i in in_place)
        raise builder.error(
            f"input_output_aliases {dict(sorted(aliases.items()))}: the body writes {written}, "
            "annotated in the body and aliased, so they are in-place parameters, returned at "
            f"their aliased output indices with the {len(returned)} returned T.empty "
            f"output(s) in the other places; with {total} outputs the output indices must be "
            f"0..{total - 1}", cls=JtileTraceError)
    remaining = iter(returned)
    builder.outputs = [values[slots[o]] if o in slots else next(remaining)
                       for o in range(total)]
    for i in in_place:
        buffer = values[i]
        fresh = new_global(builder, f"{params[i].name}_in", buffer.shape, buffer.dtype,
                           builder.loc)
        builder.inputs[builder.inputs.index(buffer)] = fresh


def kernel_aliases(aliases: dict, static_positions) -> dict:
    """input_output_aliases with input indices counted among the kernel's inputs, the
    caller's static scalar arguments left out."""
    static = sorted(static_positions)
    return {i - sum(1 for p in static if p < i): o for i, o in aliases.items()}


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


def _run(builder: Builder, body: Callable, params: list, values: list, prepared, order=None):
    if order is not None:   # back to the body's own parameter order
        pairs = sorted(zip(order, params, values), key=lambda t: t[0])
        params, values = [p for _, p, _ in pairs], [v for _, _, v in pairs]
    # Keyword-only parameters (left after a functools.partial keyword) are passed by name.
    args = [v for p, v in zip(params, values) if p.kind is not p.KEYWORD_ONLY]
    kwargs = {p.name: v for p, v in zip(params, values) if p.kind is p.KEYWORD_ONLY}
    try:
        return body(*args, **kwargs)
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
        hint = ("" if not is_input else
                ". Arrays bind to the parameters in order and the parameters not passed, at the "
                "end, are the outputs (TileLang's out_idx=[-1], [-2, -1], ...); outputs between "
                "other parameters (out_idx=[3]) are found when leaving them out makes every "
                "array fit its annotation, and here no such choice does (or pass an array for "
                "each output and alias it with input_output_aliases)")
        raise builder.error(f"{role} parameter `{param.name}` {problem}{hint}",
                            cls=JtileShapeError)


class _SymbolHolders:
    """The closure cells and globals through which one trace's kernel function names shape
    symbols (directly or in lists and tuples). They are the trace's own copies, so a symbol
    can become its int there as soon as it is bound: before the body runs for signature
    annotations, at the annotation for in-body ones (`jtile.trace.python_control.annotate`)."""

    def __init__(self):
        self.cells: list = []
        self.globals: Optional[dict] = None
        self.names: tuple = ()

    def refresh(self, values: dict) -> None:
        for cell in self.cells:
            cell.cell_contents = resolve_symbols(cell.cell_contents, values)
        if self.globals is not None:
            for n in self.names:
                if n in self.globals:
                    self.globals[n] = resolve_symbols(self.globals[n], values)


def bind_symbols(fn: Callable, values: dict,
                 holders: Optional[_SymbolHolders] = None) -> Callable:
    """`fn` seeing the ints of the `T.dynamic` symbols it names directly: closure cells and
    globals that hold a symbol are replaced (in a copy, recorded in `holders` for symbols
    bound later) and the bound ones become their values for this trace."""
    holders = holders if holders is not None else _SymbolHolders()
    if isinstance(fn, functools.partial):
        return functools.partial(bind_symbols(fn.func, values, holders), *fn.args,
                                 **fn.keywords)
    if not isinstance(fn, types.FunctionType):
        return fn
    closure = fn.__closure__
    if closure and any(_cell_holds(c, holds_symbols) for c in closure):
        fresh = []
        for c in closure:
            if _cell_holds(c, holds_symbols):
                c = types.CellType(c.cell_contents)
                holders.cells.append(c)
            fresh.append(c)
        closure = tuple(fresh)
    names = _global_names(fn.__code__)
    globals_ = fn.__globals__
    held = tuple(n for n in names if holds_symbols(globals_.get(n)))
    if held:
        globals_ = dict(globals_)
        holders.globals, holders.names = globals_, held
    holders.refresh(values)
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


def _bind_returned_outputs(builder: Builder, result, nothing_ok: bool = False) -> None:
    """The `T.empty` outputs in the order the body returned them. `nothing_ok`: the kernel
    has in-place parameters, so it may return nothing (then it must declare no T.empty)."""
    if result is None and nothing_ok:
        if builder.outputs:
            raise builder.error(f"T.empty outputs {[b.name for b in builder.outputs]} were "
                                "declared but not returned")
        return
    returned = result if isinstance(result, (tuple, list)) else (result,)
    if result is None or not returned:
        raise builder.error("the kernel declared no out_shape= and returned nothing; declare "
                            "outputs with T.empty(shape, dtype) and return them, or pass "
                            "out_shape= to jtile.pallas_like; a kernel that writes its "
                            "inputs in place (TileLang's eager kernels updating an annotated "
                            "argument) returns them through input_output_aliases={input index: "
                            "output index} (JAX arrays are immutable)")
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
