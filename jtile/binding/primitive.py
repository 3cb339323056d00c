"""`jtile_call_p`: the JAX primitive of one kernel launch, with all of its rules side by side.

- abstract evaluation: the output shapes come from the traced kernel (with the vmap batch);
- implementation (eager calls): the primitive wrapped in `jax.jit`;
- CUDA lowering: passes, code generation and compilation run here, in Python, at `jax.jit`
  lowering time, so every error surfaces with a Python traceback; the cubin then travels in the
  `jtile_launch` custom call (`jtile.binding.ffi`);
- interpret lowering (any platform, with `interpret=True` or `JTILE_INTERPRET=1`): the kernel
  evaluated with jax.numpy by `jtile.interpret`;
- batching (`jtile.binding.batching`): vmap folds into the grid, one launch;
- naming: every bind opens `jax.named_scope` with the kernel's symbol, so the custom call's
  location and HLO `op_name` (`jit(f)/add_kernel/jtile_call`) name the kernel, as does the
  CUDA entry function profilers list (`jtile.codegen.cuda.c_identifier` of the same name).

There is deliberately no JVP rule: differentiate through a `jax.custom_vjp` that pairs a forward
kernel with a backward kernel.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from functools import partial
from typing import Optional

import jax
import numpy as np
from jax.interpreters import mlir

from jtile.binding import batching
from jtile.binding.lowered import build, resolve_target
from jtile.binding.varying import aval_varying_axes
from jtile.codegen.cuda import c_identifier
from jtile.errors import JtileError, JtileRuntimeError, JtileTargetError
from jtile.ir.nodes import Kernel

try:  # The stable home since jax 0.4.3x; jax.core's Primitive is deprecated.
    from jax.extend.core import Primitive
except ImportError:  # pragma: no cover - older jax
    from jax.core import Primitive  # type: ignore[attr-defined,no-redef]

try:
    from jax.core import ShapedArray
except ImportError:  # pragma: no cover - jax.core thinned out
    from jax._src.core import ShapedArray  # type: ignore[no-redef]

__all__ = ["KernelCall", "jtile_call_p", "kernel_scope"]


@dataclass(frozen=True)
class KernelCall:
    """Everything a `jtile_call_p` equation needs to lower, hashable (a primitive parameter).

    Attributes:
        kernel: the traced kernel (compared and hashed by identity; the tracing cache hands out
            one object per distinct signature, so equal calls share it).
        aliases: `(input index, output index)` pairs of input_output_aliases, sorted.
        batch: instances per launch; above 1 every output has a leading batch dimension.
        batched: per input, whether it has the leading batch dimension (empty when batch == 1).
        interpret: evaluate with jax.numpy instead of compiling.
        debug: print the generated CUDA when lowering.
        name: the kernel's name, for messages.
        target: the architecture to compile for (None: `JTILE_TARGET` or the local GPU's).
        options: extra CUDA compiler options.
    """

    kernel: Kernel = field(repr=False)
    aliases: tuple = ()
    batch: int = 1
    batched: tuple = ()
    interpret: bool = False
    debug: bool = False
    name: str = "kernel"
    target: Optional[str] = None
    options: tuple = ()

    @property
    def alias_map(self) -> dict:
        return dict(self.aliases)

    def input_batched(self, index: int) -> bool:
        return self.batch > 1 and bool(self.batched[index])

    def output_shapes(self) -> list:
        """`(shape, numpy dtype)` of each output, the batch dimension included."""
        lead = (self.batch,) if self.batch > 1 else ()
        return [(lead + tuple(b.shape), b.dtype.numpy) for b in self.kernel.outputs]


def kernel_scope(name: str) -> str:
    """The `jax.named_scope` a kernel's launches run under: its CUDA symbol, so one string
    finds the HLO op (`jit(f)/<symbol>/jtile_call`) and the GPU kernel in a profile."""
    return c_identifier(name)


def _innermost_scope() -> Optional[str]:
    """The innermost name scope open in this thread, or None (none, or jax moved the API)."""
    try:
        from jax._src import source_info_util

        stack = source_info_util.current_name_stack().stack
        return getattr(stack[-1], "name", None) if stack else None
    except (ImportError, AttributeError):  # pragma: no cover - a later jax
        return None


class _KernelCallPrimitive(Primitive):
    """`jtile_call`: a primitive whose binds run under the kernel's name scope.

    The scope is opened at bind time (not in the lowering rule) so that it is part of the
    equation's name stack: every lowering, the custom call and interpret mode's jax.numpy ops
    alike, and every transformation's re-bind inherit it. The vmap rule re-binds inside the
    outer bind, where the scope is already open; it is not opened twice.
    """

    def bind(self, *args, **params):
        scope = kernel_scope(params["call"].name)
        if _innermost_scope() == scope:
            return super().bind(*args, **params)
        with jax.named_scope(scope):
            return super().bind(*args, **params)


jtile_call_p = _KernelCallPrimitive("jtile_call")
jtile_call_p.multiple_results = True


# ---------------------------------------------------------------------------- abstract eval


def _output_aval(shape, dtype, avals):
    """The aval of one output. Inside shard_map it varies over the union of the axes its
    inputs vary over, as jax.numpy's own ops do: an output computed from an input that varies
    over `x` and another that varies over `y` differs along both."""
    plain = ShapedArray(shape, dtype)
    varying = frozenset().union(*(aval_varying_axes(a) for a in avals))
    if not varying:
        return plain
    like = next(a for a in avals if aval_varying_axes(a))
    spec = jax.sharding.PartitionSpec(*([None] * len(shape)))
    # The sharding must name the inputs' (manual) mesh, every dimension unsharded.
    sharding = jax.sharding.NamedSharding(like.sharding.mesh, spec)
    mat = getattr(like, "manual_axis_type", None)
    if mat is not None and hasattr(mat, "update"):  # jax 0.10: ManualAxisType
        # The output is an ordinary per-device value: varying, neither reduced nor unreduced.
        mat = mat.update(varying=varying, unreduced=frozenset(), reduced=frozenset())
        return ShapedArray(shape, dtype, sharding=sharding, manual_axis_type=mat)
    if hasattr(like, "vma"):  # releases that keep a plain frozenset
        return ShapedArray(shape, dtype, sharding=sharding, vma=varying)
    return plain


@jtile_call_p.def_abstract_eval
def _abstract_eval(*avals, call: KernelCall):
    kernel = call.kernel
    if len(avals) != kernel.num_inputs:
        raise JtileError(f"{call.name}: jtile_call got {len(avals)} operands for "
                         f"{kernel.num_inputs} kernel inputs")
    for index, (aval, buf) in enumerate(zip(avals, kernel.inputs)):
        lead = (call.batch,) if call.input_batched(index) else ()
        want = lead + tuple(buf.shape)
        if tuple(aval.shape) != want or np.dtype(aval.dtype) != buf.dtype.numpy:
            raise JtileError(f"{call.name}: operand {index} ({buf.name}) is "
                             f"{aval.dtype}{list(aval.shape)} but the kernel expects "
                             f"{buf.dtype}{list(want)}")
    return [_output_aval(shape, dtype, avals) for shape, dtype in call.output_shapes()]


# ---------------------------------------------------------------------------- eager calls

_eager_lock = threading.Lock()
_eager: dict = {}


def _impl(*args, call: KernelCall):
    # Eager calls run through jit like any JAX primitive without a hand-written impl; one
    # jitted function per call keeps the jit cache warm across calls.
    with _eager_lock:
        fn = _eager.get(call)
        if fn is None:
            fn = _eager[call] = jax.jit(partial(jtile_call_p.bind, call=call))
    return fn(*args)


jtile_call_p.def_impl(_impl)


# ---------------------------------------------------------------------------- interpret mode


def _interpret_lowering(ctx, *args, call: KernelCall):
    return mlir.lower_fun(partial(batching.interpret_call, call=call),
                          multiple_results=True)(ctx, *args)


# ---------------------------------------------------------------------------- CUDA

_build_lock = threading.Lock()
_builds: dict = {}


def _build(call: KernelCall, target):
    """Plans, generates and compiles a call for `target`, once per process."""
    key = (call, target.arch)
    with _build_lock:
        built = _builds.get(key)
    if built is not None:
        return built
    _, generated, binary = build(call.kernel, target, aliases=call.alias_map, batch=call.batch,
                                 batched=call.batched or None, options=call.options)
    if call.debug:
        print(f"// jtile: generated CUDA for {call.name} ({target.arch})\n{generated.source}")
    with _build_lock:
        _builds[key] = (generated, binary)
    return generated, binary


def _cuda_lowering(ctx, *args, call: KernelCall):
    if call.interpret:
        return _interpret_lowering(ctx, *args, call=call)
    from jtile.binding.ffi import launch_lowering

    try:
        target = resolve_target(call.target)
    except JtileTargetError as error:
        if call.target is not None:
            raise
        # Lowering for CUDA on a machine without one (jax.export, CI): name the jit-time knob.
        raise JtileTargetError(
            f"{call.name}: lowering for CUDA needs a target architecture and no CUDA GPU was "
            "found; pass compiler_params={'target': 'sm_90a'} to jtile.pallas_like or set "
            "JTILE_TARGET=sm_90a") from error
    generated, binary = _build(call, target)
    return launch_lowering(
        ctx, *args, cubin=binary.cubin, kernel_name=generated.kernel_name,
        grid=tuple(generated.grid), block=tuple(generated.block),
        cluster=tuple(generated.cluster), shared_memory_bytes=generated.shared_memory_bytes,
        cooperative=generated.cooperative,
        input_output_aliases=call.alias_map or None,
        tensor_maps=tuple(generated.tensor_maps),
        buffer_names=tuple(buffer.name for buffer in call.kernel.params))


def _other_platform_lowering(ctx, *args, call: KernelCall):
    if call.interpret:
        return _interpret_lowering(ctx, *args, call=call)
    platforms = ", ".join(getattr(ctx.module_context, "platforms", None) or ("this backend",))
    raise JtileRuntimeError(
        f"{call.name}: no CUDA GPU is available to run the compiled kernel (JAX is lowering for "
        f"{platforms}). Pass interpret=True to jtile.pallas_like, or set JTILE_INTERPRET=1, to "
        "run it with JAX operations on this backend.")


mlir.register_lowering(jtile_call_p, _other_platform_lowering)
mlir.register_lowering(jtile_call_p, _cuda_lowering, platform="cuda")
batching.register(jtile_call_p)
