"""`jtile.pallas_like`: the public launcher of a TileLang-style kernel inside JAX.

The callable it returns traces the kernel body once per distinct input signature (cached),
runs the target-independent checks right away, so a user mistake is reported at the call with
the kernel's source line before anything lowers, and binds `jtile_call_p`. The primitive's
rules (`jtile.binding.primitive`) do the rest: compilation at lowering time on the CUDA
platform, jax.numpy evaluation in interpret mode, vmap folded into the grid.
"""

from __future__ import annotations

import functools
import threading
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from jtile import config
from jtile.binding.global_layouts import bind_launch
from jtile.binding.kernel_sequence import call_sequence, check_sequence
from jtile.binding.lowered import Lowered, lower_kernel, resolve_target
from jtile.binding.lowered_sequence import lower_sequence
from jtile.binding.primitive import KernelCall
from jtile.binding.static_arguments import cache_key as static_cache_key
from jtile.binding.static_arguments import split_static
from jtile.errors import JtileError, JtileShapeError
from jtile.ir.printer import kernel_text
from jtile.ir.types import as_dtype
from jtile.trace.kernel_sequence import KernelSequence, sequence_text

__all__ = ["pallas_like", "KernelLauncher"]

_COMPILER_PARAMS = ("target", "options")


def pallas_like(kernel: Callable, *, out_shape=None, grid=None, threads=None,
                interpret: bool = False, name: Optional[str] = None, debug: bool = False,
                input_output_aliases: Optional[dict] = None,
                compiler_params: Optional[dict] = None) -> "KernelLauncher":
    """Makes a JAX-callable launcher for a TileLang-style kernel.

    The kernel is any of TileLang's two styles or the Pallas one: a `@T.prim_func` (from a
    factory) whose parameters carry `T.Tensor(shape, dtype)` annotations; an eager-jit style
    function with `M, N = T.const("M, N")`, in-body annotations `A: T.Tensor((M, N), dtype)`
    and `T.empty` outputs it returns; or a plain function writing output refs. Python `if`,
    `while`, `and`, `or`, `not` and `a if c else b` on traced values, and `x = x + 1` on a
    `T.alloc_var`, have TileLang's meaning (the body's source is rewritten before tracing).

    Outputs come from, in order of precedence:

    1. `out_shape`: one output ref per leaf is passed after the inputs;
    2. the parameters after the inputs the caller passes, when they carry `T.Tensor`
       annotations (and no default): each is an output with the annotated shape and dtype,
       symbolic dimensions (`T.dynamic`) taking the values the inputs give them, as
       TileLang's `out_idx` for trailing parameters. `f(A, B)` on `gemm(A, B, C)` returns C;
       several such outputs are returned as a tuple;
    3. when the caller passes every parameter of a kernel whose signature carries `T.Tensor`
       annotations, the inputs named in `input_output_aliases` are in-place parameters
       (TileLang's kernels compiled without out_idx): `f(A, B, C)` with `{2: 0}` returns C
       after the kernel has written (e.g. `T.atomic_add`ed) into a copy of it. In the
       eager-jit style the aliased inputs annotated in the body that the body writes are
       in-place parameters, at their aliased output indices, with the `T.empty` outputs it
       returns (if any) in the other places;
    4. otherwise the body declares outputs with `T.empty(shape, dtype)` and returns them (one
       value or a tuple).

    Args:
        kernel: the kernel body, inputs first, then the outputs (see above). A
            `functools.partial` binds static parameters (any of them, by keyword). A Python
            number passed for a parameter annotated as a scalar (`n: T.int32`, in the
            signature or the body) is a static value too, like a shape: the kernel is traced
            once per value; an array passed there is a traced scalar.
        out_shape: a `jax.ShapeDtypeStruct` or a pytree of them; the result has its structure.
        grid: Pallas-style grid; the body runs inside an implicit `T.Kernel(*grid,
            threads=threads or 128)` and reads its block index with `T.program_id(axis)`.
        threads: threads per block with `grid`.
        interpret: evaluate with jax.numpy on any backend instead of compiling CUDA
            (`JTILE_INTERPRET=1` forces it for every kernel).
        name: the kernel's name (default: the function's name).
        debug: print the kernel IR when it is traced and the CUDA when it is compiled
            (`JTILE_DEBUG=1` turns it on for every kernel).
        input_output_aliases: `{input index: output index}`: that output reuses the input's
            buffer and starts with its contents, as in `pallas_call`.
        compiler_params: `{"target": "sm_90a", "options": [...]}`: the architecture to
            compile for instead of the local GPU's, and extra CUDA compiler options.

    Returns:
        A `KernelLauncher`: call it with arrays; `.lower(*args, target=)` for the IR, CUDA and
        cubin without running anything.
    """
    return KernelLauncher(kernel, out_shape=out_shape, grid=grid, threads=threads,
                          interpret=interpret, name=name, debug=debug,
                          input_output_aliases=input_output_aliases,
                          compiler_params=compiler_params)


def _kernel_name(fn: Callable, name: Optional[str]) -> str:
    import inspect

    return name or getattr(inspect.unwrap(getattr(fn, "func", fn)), "__name__", "kernel")


def _static_tuple(value, what: str, name: str) -> Optional[tuple]:
    if value is None:
        return None
    items = tuple(value) if isinstance(value, (tuple, list)) else (value,)
    for item in items:
        if isinstance(item, bool) or not isinstance(item, (int, np.integer)):
            raise JtileError(f"{name}: {what}={value!r} must be static Python ints")
    return tuple(int(i) for i in items)


def _python_numbers(args) -> dict:
    """Position -> value of the Python numbers among the arguments (static values when the
    parameter is annotated as a scalar)."""
    return {i: a for i, a in enumerate(args) if type(a) in (int, float, bool)}


def _key(base: tuple, static, numbers: dict) -> tuple:
    """The trace cache key: the signature and the static scalar arguments' values (typed, as
    1, 1.0 and True are equal in Python)."""
    return base + (tuple((i, type(numbers[i]).__name__, numbers[i]) for i in static),)


class KernelLauncher:
    """The callable `jtile.pallas_like` returns. Works under jit, vmap, custom_vjp, shard_map."""

    def __init__(self, kernel: Callable, *, out_shape, grid, threads, interpret, name, debug,
                 input_output_aliases, compiler_params):
        self._settings = dict(out_shape=out_shape, grid=grid, threads=threads,
                              interpret=interpret, name=name, debug=debug,
                              input_output_aliases=input_output_aliases,
                              compiler_params=compiler_params)
        self._fn = kernel
        self._name = _kernel_name(kernel, name)
        self._explicit_name = name
        self._grid = _static_tuple(grid, "grid", self._name)
        self._threads = threads if threads is None else int(threads)
        self._interpret = bool(interpret)
        self._debug = bool(debug)
        self._aliases = self._parse_aliases(input_output_aliases)
        self._target, self._options = self._parse_compiler_params(compiler_params)
        if out_shape is None:
            self._out_leaves, self._out_tree = None, None
        else:
            leaves, self._out_tree = jax.tree_util.tree_flatten(out_shape)
            self._out_leaves = tuple(self._out_spec(leaf, i) for i, leaf in enumerate(leaves))
        self._lock = threading.Lock()
        self._traces: dict = {}   # signature -> (checked kernel, returned a tuple, ...)
        self._static: dict = {}   # signature -> positions of its static scalar arguments
        self._bound: dict = {}    # static values passed in the call -> their launcher
        self.__name__ = self._name

    # ------------------------------------------------------------------ arguments

    def _parse_aliases(self, aliases) -> tuple:
        if not aliases:
            return ()
        if not isinstance(aliases, dict):
            raise JtileError(f"{self._name}: input_output_aliases must be a dict "
                             f"{{input index: output index}}; got {aliases!r}")
        pairs = []
        for i, o in aliases.items():
            if not isinstance(i, (int, np.integer)) or not isinstance(o, (int, np.integer)):
                raise JtileError(f"{self._name}: input_output_aliases entries must be ints; got "
                                 f"{i!r}: {o!r}")
            pairs.append((int(i), int(o)))
        outs = [o for _, o in pairs]
        if len(set(outs)) != len(outs):
            raise JtileError(f"{self._name}: input_output_aliases {aliases!r} maps two inputs to "
                             "one output")
        return tuple(sorted(pairs))

    def _parse_compiler_params(self, params):
        if params is None:
            return None, ()
        if not isinstance(params, dict):
            raise JtileError(f"{self._name}: compiler_params must be a dict with keys "
                             f"{', '.join(_COMPILER_PARAMS)}; got {params!r}")
        unknown = sorted(set(params) - set(_COMPILER_PARAMS))
        if unknown:
            raise JtileError(f"{self._name}: unknown compiler_params {unknown}; the known ones "
                             f"are {', '.join(_COMPILER_PARAMS)}")
        target = params.get("target")
        if target is not None:
            target = resolve_target(target).arch  # validated now, not at lowering
        options = params.get("options") or ()
        if isinstance(options, str) or not all(isinstance(o, str) for o in options):
            raise JtileError(f"{self._name}: compiler_params['options'] must be a list of "
                             f"strings; got {options!r}")
        return target, tuple(options)

    def _out_spec(self, leaf, index: int) -> tuple:
        if not (hasattr(leaf, "shape") and hasattr(leaf, "dtype")):
            raise JtileError(f"{self._name}: out_shape leaf {index} is {leaf!r}; expected a "
                             "jax.ShapeDtypeStruct")
        return tuple(int(d) for d in leaf.shape), np.dtype(leaf.dtype)

    def _input_spec(self, arg, index: int) -> tuple:
        if not (hasattr(arg, "shape") and hasattr(arg, "dtype")):
            arg = np.asarray(arg)
        try:
            return tuple(int(d) for d in arg.shape), np.dtype(arg.dtype)
        except TypeError:
            raise JtileError(f"{self._name}: input {index} has shape {arg.shape}; kernel shapes "
                             "are static (symbolic shapes are not supported)") from None

    # ------------------------------------------------------------------ tracing

    @property
    def trace_count(self) -> int:
        """How many distinct input signatures have been traced (the size of the trace cache)."""
        return len(self._traces)

    def _traced(self, args, numbers: Optional[dict] = None) -> tuple:
        """The checked kernel for these arguments, whether it returned a tuple, the positions
        of the arguments it takes as static values and its input_output_aliases (cached).

        `numbers` holds the Python numbers among the arguments. Those given to parameters
        annotated as scalars (`n: T.int32`) are static values and part of the cache key; the
        first trace of a signature finds which positions they are."""
        inputs = tuple(self._input_spec(a, i) for i, a in enumerate(args))
        numbers = numbers or {}
        base = (inputs, tuple(sorted(numbers)), self._out_leaves, self._out_tree, self._grid,
                self._threads)
        with self._lock:
            static = self._static.get(base)
            hit = None if static is None else self._traces.get(_key(base, static, numbers))
        if hit is not None:
            return hit
        static = list(static or ())
        kernel, returned_tuple, aliases = self._trace(inputs, numbers, static)
        key = _key(base, tuple(static), numbers)
        if self._debug or config.debug():
            print(sequence_text(kernel) if isinstance(kernel, KernelSequence)
                  else kernel_text(kernel))
        with self._lock:
            self._static.setdefault(base, tuple(static))
            hit = self._traces.setdefault(key, (kernel, returned_tuple, tuple(static), aliases))
        return hit

    def _trace(self, inputs, numbers: dict, static: list) -> tuple:
        from jtile.passes import run_passes
        from jtile.trace.trace_kernel import kernel_aliases, trace

        returned = []
        outputs = None
        if self._out_leaves is not None:
            outputs = [(shape, as_dtype(dtype)) for shape, dtype in self._out_leaves]
        kernel = trace(self._fn, [(shape, as_dtype(dtype)) for shape, dtype in inputs], outputs,
                       grid=self._grid, threads=self._threads, name=self._explicit_name,
                       returned=returned, aliases=dict(self._aliases), scalars=numbers,
                       static=static)
        # Static scalar arguments are no kernel inputs: count aliased inputs without them.
        aliases = tuple(sorted(kernel_aliases(dict(self._aliases), static).items()))
        self._check_aliases(kernel, aliases)
        # Target-independent rules now, so mistakes surface at the call, not at lowering.
        if isinstance(kernel, KernelSequence):
            kernel = check_sequence(kernel)
        else:
            kernel = run_passes(kernel, None, aliases=dict(aliases))
        # Outputs taken from annotated parameters come back as a tuple when there are several.
        returned_tuple = returned[0] or (outputs is None and len(kernel.outputs) > 1)
        return kernel, returned_tuple, aliases

    def _check_aliases(self, kernel, aliases: tuple) -> None:
        for i, o in aliases:
            if not 0 <= i < kernel.num_inputs or not 0 <= o < len(kernel.outputs):
                raise JtileError(
                    f"{kernel.name} ({kernel.loc}): input_output_aliases {{{i}: {o}}} is out of "
                    f"range: the kernel has {kernel.num_inputs} inputs and "
                    f"{len(kernel.outputs)} outputs")
            src, dst = kernel.inputs[i], kernel.outputs[o]
            if src.shape != dst.shape or src.dtype is not dst.dtype:
                raise JtileShapeError(
                    f"{kernel.name} ({kernel.loc}): input_output_aliases {{{i}: {o}}}: input "
                    f"{src.name} is {src.dtype}{list(src.shape)} but output {dst.name} is "
                    f"{dst.dtype}{list(dst.shape)}; an aliased pair must match")

    def _call_params(self, kernel, aliases: tuple = ()) -> KernelCall:
        return KernelCall(
            kernel=kernel, aliases=aliases, interpret=self._interpret or config.interpret(),
            debug=self._debug or config.debug(), name=kernel.name, target=self._target,
            options=self._options)

    # ------------------------------------------------------------------ calling

    def _with_static(self, args: tuple, kwargs: dict) -> tuple:
        """`(launcher, arrays)` for a call that may pass static values (TileLang's eager
        style, `jtile.binding.static_arguments`): the launcher of the kernel with those values
        bound, made once per distinct set."""
        args, bound = split_static(self._name, self._fn, args, kwargs)
        if not bound:
            return self, args
        key = static_cache_key(bound)
        with self._lock:
            launcher = self._bound.get(key)
        if launcher is None:
            fn = functools.partial(self._fn, **bound)
            settings = dict(self._settings, name=self._settings["name"] or self._name)
            launcher = KernelLauncher(fn, **settings)
            with self._lock:
                launcher = self._bound.setdefault(key, launcher)
        return launcher, args

    def __call__(self, *args, **static):
        launcher, args = self._with_static(args, static)
        if launcher is not self:
            return launcher(*args)
        operands = []
        for index, a in enumerate(args):
            if isinstance(a, jax.ShapeDtypeStruct):
                raise JtileError(f"{self._name}: input {index} is a jax.ShapeDtypeStruct; call "
                                 "with arrays, or use .lower(*args) to lower without data")
            # NumPy and Python values take the dtype JAX gives them (float64 -> float32
            # without x64), so the kernel is traced for what it will actually receive.
            operands.append(a if isinstance(a, jax.Array) else jnp.asarray(a))
        kernel, returned_tuple, static, aliases = self._traced(operands, _python_numbers(args))
        operands = [a for i, a in enumerate(operands) if i not in static]
        if isinstance(kernel, KernelSequence):
            # Several `with T.Kernel` blocks: one launch each, in order.
            outs = call_sequence(kernel, operands, self._call_params)
        else:
            outs = bind_launch(operands, self._call_params(kernel, aliases))
        if self._out_tree is not None:
            return jax.tree_util.tree_unflatten(self._out_tree, list(outs))
        return tuple(outs) if returned_tuple else outs[0]

    def lower(self, *args, target=None, **static) -> Lowered:
        """Plans the kernel and generates CUDA for `target` without running it; needs no GPU.

        A function of several `with T.Kernel(...)` blocks (or with `T.alloc_global`
        workspaces) gives a `LoweredSequence`: `.launches` holds one `Lowered` per launch;
        `ir_text()` and `cuda_source()` show them all in launch order
        (`jtile.binding.lowered_sequence`).

        Args:
            *args: arrays or `jax.ShapeDtypeStruct`s, one per kernel input.
            target: `"sm_80"`, `"sm_90a"`, `"sm_100a"`, ...; default: `compiler_params`'s
                target, else `JTILE_TARGET`, else the local GPU's.
            **static: static values bound to the kernel's parameters, as in a call.
        """
        launcher, args = self._with_static(args, static)
        if launcher is not self:
            return launcher.lower(*args, target=target)
        kernel, _, _, aliases = self._traced(args, _python_numbers(args))
        resolved = resolve_target(target if target is not None else self._target)
        if isinstance(kernel, KernelSequence):
            # One Lowered per launch, shown together (jtile.binding.lowered_sequence).
            lowered = lower_sequence(kernel, resolved, options=self._options)
        else:
            lowered = lower_kernel(kernel, resolved, aliases=dict(aliases),
                                   options=self._options)
        if (self._debug or config.debug()) and lowered.has_cuda_source:
            print(lowered.cuda_source())
        return lowered

    def __repr__(self) -> str:
        return f"jtile.pallas_like({self._name})"
