"""`jtile.autotune`: pick the fastest of several configurations of a function, per key.

As `triton.autotune` decorates a Triton kernel with a list of `triton.Config`s and the names of
the arguments whose values select a tuning, `jtile.autotune(configs=[...], key=[...])` decorates
a JAX-level function (one that calls `jtile.pallas_like` launchers, typically) with a list of
keyword-argument dicts. Calling the result binds `jtile_autotune_p`; when JAX lowers it for a
platform, the first lowering of a new key times every configuration there and keeps the winner
in memory and on disk beside the cubin cache, and later lowerings, in this process or another,
reuse it. In interpret mode the first configuration is taken without timing.
"""

from __future__ import annotations

import functools
import inspect
import json
import sys
import threading
from typing import Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jtile import config as jtile_config
from jtile.autotuning import store
from jtile.autotuning.primitive import TuneCall, autotune_p
from jtile.autotuning.sweep import Choice, describe, failure_reason, sweep
from jtile.autotuning.timing import Timer, default_timer, device_for
from jtile.errors import JtileError, JtileTargetError

__all__ = ["autotune", "Autotuned", "Choice"]

_JSON_SCALARS = (bool, int, float, str, type(None))


def autotune(configs: Sequence[dict], key: Optional[Sequence[str]] = None, *,
             timer: Optional[Timer] = None, name: Optional[str] = None,
             cache: bool = True) -> Callable[[Callable], "Autotuned"]:
    """Decorates a function so that each call runs the fastest of `configs`.

    ::

        @jtile.autotune(configs=[dict(block_m=128, block_n=128, stages=3),
                                 dict(block_m=128, block_n=256, stages=4)],
                        key=["a", "b"])
        def matmul(a, b, *, block_m, block_n, stages):
            return jtile.pallas_like(...)(a, b)

        c = jax.jit(matmul)(a, b)   # tuned while jit lowers, for a's and b's shapes/dtypes

    Tuning happens when JAX lowers the call (inside `jax.jit`, or through an implicit jit for
    an eager call): on the platform being lowered for, each configuration is lowered and
    compiled as its own jitted function and timed on random inputs of the call's shapes and
    dtypes, made on that platform's first device. A configuration that fails to trace, compile
    or run (too much shared memory, say) is skipped and its reason recorded; when all fail, a
    `JtileError` lists every reason. The winner is kept per key, in memory and as a JSON file
    in `<JTILE_CACHE_DIR>/autotune/` keyed by the function, the key's argument shapes, dtypes
    and values, the platform, the device name and the jtile version, so a new process does not
    tune again. A progress bar (tqdm) shows for more than four configurations, or when a sweep
    takes longer than five seconds. In interpret mode (`JTILE_INTERPRET=1`, or every jtile
    kernel of the first configuration built with `interpret=True`) the first configuration is
    used without timing.

    Args:
        configs: the configurations, each a dict of keyword arguments added to every call;
            values must be JSON scalars (int, float, str, bool, None).
        key: names of the function's parameters whose array shapes and dtypes (or, for static
            arguments, values) select a tuning; None (default): every argument of the call.
        timer: `timer(launch, config) -> seconds`, where `launch()` enqueues one run of the
            compiled candidate and returns its outputs (see `jtile.autotuning.default_timer`).
        name: the name the results are stored under (default: the function's module and
            qualified name).
        cache: read and write results on disk (also off with `JTILE_DISABLE_CACHE=1`).

    Returns:
        A decorator turning the function into an `Autotuned` callable.
    """
    def decorate(fn: Callable) -> "Autotuned":
        return Autotuned(fn, configs, key=key, timer=timer, name=name, cache=cache)

    return decorate


def _function_name(fn: Callable) -> str:
    target = inspect.unwrap(getattr(fn, "func", fn))
    module = getattr(target, "__module__", None) or "?"
    return f"{module}.{getattr(target, '__qualname__', getattr(target, '__name__', 'fn'))}"


def _is_array(leaf) -> bool:
    return isinstance(leaf, (jax.Array, np.ndarray, jax.core.Tracer))


class Autotuned:
    """A function that runs the fastest of its configurations; made by `jtile.autotune`.

    Works under `jax.jit`, `jax.vmap` and inside `jax.custom_vjp` functions. `choices` lists
    what was picked in this process; `choose(*args)` tunes ahead of time and returns the choice.
    """

    def __init__(self, fn: Callable, configs: Sequence[dict], *, key, timer, name, cache):
        if not callable(fn):
            raise JtileError(f"jtile.autotune: expected a function to decorate; got {fn!r}")
        self._fn = fn
        self.name = name or _function_name(fn)
        self._signature = self._signature_of(fn)
        self.configs = self._check_configs(configs)
        self._key = self._check_key(key)
        self._timer = timer or default_timer
        self._cache = bool(cache)
        self._lock = threading.Lock()
        self._prepared: dict = {}
        self._choices: dict = {}   # disk key digest -> Choice
        self._latest: dict = {}    # TuneCall -> the Choice its last lowering used
        self.__name__ = getattr(fn, "__name__", "autotuned")
        self.__doc__ = getattr(fn, "__doc__", None)

    # ------------------------------------------------------------------ checks

    @staticmethod
    def _signature_of(fn):
        try:
            return inspect.signature(fn)
        except (TypeError, ValueError):
            return None

    def _parameter_names(self) -> Optional[set]:
        """The names the function accepts, or None when it takes **kwargs (anything goes)."""
        if self._signature is None:
            return None
        params = self._signature.parameters.values()
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
            return None
        return {p.name for p in params if p.kind is not inspect.Parameter.VAR_POSITIONAL}

    def _check_configs(self, configs) -> tuple:
        if isinstance(configs, dict) or not isinstance(configs, (list, tuple)) or not configs:
            raise JtileError(f"jtile.autotune {self.name}: configs must be a non-empty list of "
                             f"dicts of keyword arguments; got {configs!r}")
        accepted = self._parameter_names()
        checked = []
        for index, cfg in enumerate(configs):
            if not isinstance(cfg, dict) or not all(isinstance(k, str) for k in cfg):
                raise JtileError(f"jtile.autotune {self.name}: configs[{index}] is {cfg!r}; "
                                 "each configuration is a dict of keyword arguments")
            unknown = sorted(set(cfg) - accepted) if accepted is not None else []
            if unknown:
                raise JtileError(f"jtile.autotune {self.name}: configs[{index}] sets {unknown}, "
                                 f"which the function does not take; it takes "
                                 f"{sorted(accepted)}")
            bad = {k: v for k, v in cfg.items() if not isinstance(v, _JSON_SCALARS)}
            if bad:
                raise JtileError(f"jtile.autotune {self.name}: configs[{index}] has values "
                                 f"{bad!r}; configuration values are int, float, str, bool or "
                                 "None, so that the winner can be stored on disk")
            checked.append(dict(cfg))
        return tuple(checked)

    def _check_key(self, key) -> Optional[tuple]:
        if key is None:
            return None
        if isinstance(key, str) or not all(isinstance(k, str) for k in key):
            raise JtileError(f"jtile.autotune {self.name}: key must be a list of parameter "
                             f"names; got {key!r}")
        accepted = self._parameter_names()
        unknown = sorted(set(key) - accepted) if accepted is not None else []
        if unknown:
            raise JtileError(f"jtile.autotune {self.name}: key names {unknown}, which are not "
                             f"parameters of the function; it takes {sorted(accepted)}")
        tuned = sorted(set(key) & {k for cfg in self.configs for k in cfg})
        if tuned:
            raise JtileError(f"jtile.autotune {self.name}: key names {tuned}, which the "
                             "configurations set; the key names arguments of the call")
        return tuple(key)

    # ------------------------------------------------------------------ calling

    def call_config(self, index: int, args: tuple, kwargs: dict):
        """Calls the function with configuration `index` added to the keyword arguments."""
        return self._fn(*args, **kwargs, **self.configs[index])

    def _leaf_names(self, args, kwargs) -> list:
        params = list(self._signature.parameters.values()) if self._signature else []
        positional = [p for p in params if p.kind in (inspect.Parameter.POSITIONAL_ONLY,
                                                      inspect.Parameter.POSITIONAL_OR_KEYWORD)]
        names = []
        for index, arg in enumerate(args):
            name = positional[index].name if index < len(positional) else f"args[{index}]"
            names += [name] * len(jax.tree_util.tree_leaves(arg))
        for name in sorted(kwargs):  # dicts flatten in sorted key order
            names += [name] * len(jax.tree_util.tree_leaves(kwargs[name]))
        return names

    def _prepare(self, args, kwargs, placeholders: bool = False):
        """The TuneCall for these arguments and the operands to bind (cached per signature).

        With `placeholders`, `jax.ShapeDtypeStruct` leaves stand for arrays (`choose`).
        """
        fixed = sorted(set(kwargs) & {k for cfg in self.configs for k in cfg})
        if fixed:
            raise JtileError(f"jtile.autotune {self.name}: the call passes {fixed}, which the "
                             "autotuner chooses; call the undecorated function to fix them")
        leaves, treedef = jax.tree_util.tree_flatten((args, kwargs))
        names = self._leaf_names(args, kwargs)
        operands, statics, operand_names, static_names = [], [], [], []
        for position, (leaf, name) in enumerate(zip(leaves, names)):
            if isinstance(leaf, jax.ShapeDtypeStruct) and not placeholders:
                raise JtileError(f"jtile.autotune {self.name}: argument {name} is a "
                                 "jax.ShapeDtypeStruct; call with arrays, or use .choose(...) "
                                 "to tune without data")
            if isinstance(leaf, np.ndarray):
                leaf = jnp.asarray(leaf)
            if _is_array(leaf) or isinstance(leaf, jax.ShapeDtypeStruct):
                operands.append(leaf)
                operand_names.append(name)
                continue
            try:
                hash(leaf)
            except TypeError:
                raise JtileError(f"jtile.autotune {self.name}: argument {name} is {leaf!r}, "
                                 "which is neither an array nor hashable; static arguments "
                                 "must be hashable") from None
            # The type is kept so that equal-comparing values (1, 1.0, True) stay apart.
            statics.append((position, type(leaf), leaf))
            static_names.append(name)
        specs = tuple(jax.ShapeDtypeStruct(tuple(x.shape), np.dtype(x.dtype)) for x in operands)
        signature = (treedef, tuple(statics),
                     tuple((s.shape, s.dtype) for s in specs))
        with self._lock:
            call = self._prepared.get(signature)
        if call is None:
            call = self._trace_first(treedef, tuple(statics), len(leaves), tuple(operand_names),
                                     tuple(static_names), specs)
            with self._lock:
                call = self._prepared.setdefault(signature, call)
        return call, operands

    def _trace_first(self, treedef, statics, num_leaves, operand_names, static_names, specs):
        """Traces configurations in order until one works: its outputs define the call's."""
        reasons = {}
        for index in range(len(self.configs)):
            # Only the argument layout of this draft is used, to rebuild the call.
            draft = TuneCall(self, treedef, statics, num_leaves, operand_names, static_names,
                             None, (), index, False)
            outs = []

            def traced(*operands, index=index, draft=draft, outs=outs):
                args, kwargs = draft.arguments(operands)
                flat, out_tree = jax.tree_util.tree_flatten(self.call_config(index, args, kwargs))
                outs.append(out_tree)
                return flat

            try:
                closed = jax.make_jaxpr(traced)(*specs)
            except Exception as error:  # the next configuration may trace
                reasons[index] = failure_reason(error)
                continue
            out_avals = tuple((tuple(a.shape), np.dtype(a.dtype)) for a in closed.out_avals)
            interpret = _interpret_only(closed.jaxpr)
            return TuneCall(self, treedef, statics, num_leaves, operand_names, static_names,
                            outs[0], out_avals, index, interpret)
        lines = "\n".join(f"  [{i}] {r}" for i, r in reasons.items())
        raise JtileError(f"jtile.autotune {self.name}: no configuration could be traced for "
                         f"these arguments:\n{lines}")

    def __call__(self, *args, **kwargs):
        call, operands = self._prepare(args, kwargs)
        outs = autotune_p.bind(*operands, call=call)
        return jax.tree_util.tree_unflatten(call.out_tree, list(outs))

    # ------------------------------------------------------------------ choosing

    def _key_fields(self, call: TuneCall, avals_in: Sequence, platform: str) -> dict:
        wanted = set(self._key) if self._key is not None else None
        arguments: dict = {}
        for name, aval in zip(call.leaf_names, avals_in):
            if wanted is None or name in wanted:
                arguments.setdefault(name, []).append(
                    f"{np.dtype(aval.dtype).name}{list(aval.shape)}")
        for name, (_, _, value) in zip(call.static_names, call.statics):
            if wanted is None or name in wanted:
                arguments.setdefault(name, []).append(repr(value))
        device = device_for(platform)
        target = None
        if platform == "cuda":
            try:
                from jtile.binding.lowered import resolve_target

                target = resolve_target(None).arch
            except JtileTargetError:
                target = None
        from jtile.compiler.cache import jtile_version

        return {"function": self.name, "jtile": jtile_version(), "platform": platform,
                "device": getattr(device, "device_kind", None), "target": target,
                "args": arguments, "vmap": [list(axes) for axes in call.vmaps],
                "configs": json.loads(json.dumps(list(self.configs)))}

    def select(self, call: TuneCall, avals_in: Sequence, platforms: Sequence[str]) -> Choice:
        """The configuration to lower `call` with on `platforms` (tuning on a new key).

        Called by the lowering rule of `jtile_autotune_p`; not meant to be called directly.
        """
        if call.interpret or jtile_config.interpret() or len(platforms) != 1:
            choice = Choice(index=call.first, config=dict(self.configs[call.first]),
                            source="first")
        else:
            choice = self._tuned(call, avals_in, platforms[0])
        with self._lock:
            self._latest[call] = choice
        return choice

    def _tuned(self, call: TuneCall, avals_in: Sequence, platform: str) -> Choice:
        fields = self._key_fields(call, avals_in, platform)
        digest = store.digest(fields)
        with self._lock:
            hit = self._choices.get(digest)
        if hit is not None:
            return hit
        use_disk = self._cache and jtile_config.cache_enabled()
        if not use_disk:
            return self._remember(digest, self._sweep(call, avals_in, platform, fields))
        folder = store.directory()
        entry = store.load(folder, digest, fields)
        if entry is None:
            with store.locked(folder, digest):
                # Another process may have tuned this key while we waited for the lock.
                entry = store.load(folder, digest, fields)
                if entry is None:
                    choice = self._sweep(call, avals_in, platform, fields)
                    store.save(folder, digest, choice.to_entry())
                    return self._remember(digest, choice)
        return self._remember(digest, Choice.from_entry(entry))

    def _remember(self, digest: str, choice: Choice) -> Choice:
        if jtile_config.debug():
            print(describe(self.name, self.configs, choice), file=sys.stderr)
        with self._lock:
            return self._choices.setdefault(digest, choice)

    def _sweep(self, call, avals_in, platform, fields) -> Choice:
        specs = [jax.ShapeDtypeStruct(tuple(a.shape), np.dtype(a.dtype)) for a in avals_in]
        return sweep(self.name, self.configs, call.candidate, specs, platform, self._timer,
                     call.out_avals, fields)

    @property
    def choices(self) -> list:
        """The choices made or loaded in this process, one per tuning key, oldest first."""
        with self._lock:
            return list(self._choices.values())

    def choose(self, *args, **kwargs) -> Choice:
        """Tunes for these arguments now (by lowering the call) and returns the choice.

        Arguments may be arrays or `jax.ShapeDtypeStruct`s. Lowering is for JAX's default
        backend, so on a GPU machine this times the configurations on the GPU.
        """
        call, operands = self._prepare(args, kwargs, placeholders=True)
        specs = [jax.ShapeDtypeStruct(tuple(x.shape), x.dtype) for x in operands]
        jax.jit(functools.partial(autotune_p.bind, call=call)).trace(*specs).lower()
        with self._lock:
            return self._latest[call]

    def __repr__(self) -> str:
        return f"jtile.autotune({self.name}, {len(self.configs)} configs)"


def _interpret_only(jaxpr) -> bool:
    """Whether the jaxpr launches jtile kernels and all of them in interpret mode."""
    flags = list(_interpret_flags(jaxpr))
    return bool(flags) and all(flags)


def _interpret_flags(jaxpr):
    from jtile.binding.primitive import jtile_call_p

    for eqn in jaxpr.eqns:
        if eqn.primitive in (jtile_call_p, autotune_p):
            yield bool(eqn.params["call"].interpret)
        for value in eqn.params.values():
            for sub in _sub_jaxprs(value):
                yield from _interpret_flags(sub)


def _sub_jaxprs(value):
    if hasattr(value, "jaxpr") and hasattr(value.jaxpr, "eqns"):  # ClosedJaxpr
        yield value.jaxpr
    elif hasattr(value, "eqns"):  # Jaxpr
        yield value
    elif isinstance(value, (tuple, list)):
        for item in value:
            yield from _sub_jaxprs(item)
