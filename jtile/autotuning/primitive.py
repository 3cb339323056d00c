"""`jtile_autotune_p`: an autotuned call, whose configuration is chosen when JAX lowers it.

Binding the primitive records the call (the tuned function, its static arguments, the output
shapes); nothing is chosen at trace time. The lowering rule asks the tuner for the choice on
the platform being lowered for (timing the candidates there on the first lowering of a new key,
or reading an earlier choice from memory or disk) and then lowers the chosen configuration in
place, so `jax.jit`, `jax.export` and eager calls all go through the same choice.

- abstract evaluation: the output shapes recorded at bind time (every configuration must
  produce the same ones);
- eager calls: the primitive wrapped in `jax.jit`, as for `jtile_call_p`;
- batching: `jax.vmap` over the candidates, recorded in the call so that the batched shapes
  are tuned as a key of their own;
- no JVP rule: differentiate through a `jax.custom_vjp` whose forward and backward call
  autotuned functions (a clear error says so).
"""

from __future__ import annotations

import dataclasses
import threading
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
from jax.interpreters import ad, mlir
from jax.interpreters import batching as jax_batching

from jtile.binding.primitive import _output_aval
from jtile.errors import JtileError

try:  # The stable home since jax 0.4.3x; jax.core's Primitive is deprecated.
    from jax.extend.core import Primitive
except ImportError:  # pragma: no cover - older jax
    from jax.core import Primitive  # type: ignore[attr-defined,no-redef]

__all__ = ["TuneCall", "autotune_p"]


@dataclasses.dataclass(frozen=True)
class TuneCall:
    """Everything a `jtile_autotune_p` equation needs to lower, hashable (a primitive param).

    Attributes:
        tuned: the `jtile.Autotuned` function (compared by identity).
        treedef: the structure of `(args, kwargs)` of the call.
        statics: `(leaf position, type, value)` of each leaf that is not an array.
        num_leaves: how many leaves `treedef` has.
        leaf_names: per operand (array leaf), the parameter it was passed as.
        static_names: per static leaf, the parameter it was passed as.
        out_tree: the structure of the function's result.
        out_avals: `(shape, numpy dtype)` of each output leaf, vmap batches included.
        first: the index of the first configuration that traces (interpret mode's choice).
        interpret: every jtile kernel in the first configuration runs in interpret mode.
        vmaps: per enclosing `jax.vmap`, innermost first, each operand's batch axis or None.
    """

    tuned: Any
    treedef: Any
    statics: tuple
    num_leaves: int
    leaf_names: tuple
    static_names: tuple
    out_tree: Any
    out_avals: tuple
    first: int
    interpret: bool
    vmaps: tuple = ()

    def arguments(self, operands) -> tuple:
        """`(args, kwargs)` of the call, the operands put back between the static leaves."""
        leaves = [None] * self.num_leaves
        for position, _, value in self.statics:
            leaves[position] = value
        dynamic = iter(operands)
        static_positions = {position for position, _, _ in self.statics}
        for position in range(self.num_leaves):
            if position not in static_positions:
                leaves[position] = next(dynamic)
        return jax.tree_util.tree_unflatten(self.treedef, leaves)

    def candidate(self, index: int):
        """The function of the operands that runs configuration `index` (returns a list)."""

        def run(*operands):
            args, kwargs = self.arguments(operands)
            out = self.tuned.call_config(index, args, kwargs)
            return list(jax.tree_util.tree_leaves(out))

        for axes in self.vmaps:
            run = jax.vmap(run, in_axes=axes, out_axes=0)
        return run


autotune_p = Primitive("jtile_autotune")
autotune_p.multiple_results = True


@autotune_p.def_abstract_eval
def _abstract_eval(*avals, call: TuneCall):
    return [_output_aval(shape, dtype, avals) for shape, dtype in call.out_avals]


_eager_lock = threading.Lock()
_eager: dict = {}


def _impl(*args, call: TuneCall):
    # Eager calls lower (and so tune) through jit, once per call signature.
    with _eager_lock:
        fn = _eager.get(call)
        if fn is None:
            fn = _eager[call] = jax.jit(partial(autotune_p.bind, call=call))
    return fn(*args)


autotune_p.def_impl(_impl)


def _lowering(ctx, *args, call: TuneCall):
    platforms = tuple(getattr(ctx.module_context, "platforms", None) or ())
    choice = call.tuned.select(call, tuple(ctx.avals_in), platforms)
    return mlir.lower_fun(call.candidate(choice.index), multiple_results=True)(ctx, *args)


mlir.register_lowering(autotune_p, _lowering)


def _refuse_jvp(primals, tangents, *, call: TuneCall):
    del primals, tangents
    raise JtileError(
        f"jtile.autotune {call.tuned.name}: an autotuned call has no derivative of its own; "
        "wrap the forward and backward kernels in a jax.custom_vjp whose fwd and bwd call "
        "autotuned functions (examples/gemm.py's dot_autotuned does this)")


ad.primitive_jvps[autotune_p] = _refuse_jvp


def _batch(args, dims, call: TuneCall):
    size = next(x.shape[d] for x, d in zip(args, dims) if d is not None)
    operands = [x if d is None else jnp.moveaxis(x, d, 0) for x, d in zip(args, dims)]
    axes = tuple(None if d is None else 0 for d in dims)
    batched = dataclasses.replace(
        call, vmaps=call.vmaps + (axes,),
        out_avals=tuple(((size,) + tuple(shape), dtype) for shape, dtype in call.out_avals))
    outs = autotune_p.bind(*operands, call=batched)
    return list(outs), [0] * len(outs)


_fancy = getattr(jax_batching, "fancy_primitive_batchers", None)
if _fancy is not None:
    def _batch_rule(axis_data, args, dims, *, call):
        del axis_data
        if all(d is None for d in dims):
            outs = autotune_p.bind(*args, call=call)
            return outs, [None] * len(outs)
        return _batch(args, dims, call)

    _fancy[autotune_p] = _batch_rule
else:  # pragma: no cover - the older table, (args, dims, **params)
    jax_batching.primitive_batchers[autotune_p] = (
        lambda args, dims, *, call: _batch(args, dims, call))
