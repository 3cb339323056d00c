"""One autotuning sweep: lower every configuration for the platform, time those that compile.

Each candidate is its own jitted function with the configuration fixed, lowered for the
platform JAX is lowering the caller for. A configuration that cannot be traced, lowered or
compiled (a JtileError for too much shared memory, say) or that fails while running is skipped
and its reason recorded; the fastest of the rest wins. Timing happens here, inside the caller's
lowering, on inputs made up on the device; the candidates never re-enter the lowering that
started the sweep, because each is lowered as a separate function with a fixed configuration.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from typing import Callable, Sequence

import jax

from jtile.autotuning.timing import Timer, device_for, random_inputs
from jtile.errors import JtileError

# Sweeps of more configurations than this show a progress bar at once; shorter ones only when
# they run for longer than _SLOW_SECONDS.
_FEW_CONFIGS = 4
_SLOW_SECONDS = 5.0
_REASON_CHARS = 600


@dataclasses.dataclass(frozen=True)
class Choice:
    """The configuration picked for one tuning key, and how it was picked.

    Attributes:
        index: the position of the winner in the configuration list.
        config: the winner's keyword arguments.
        seconds: per configuration index, the measured seconds per launch (timed ones only).
        failures: per configuration index, why it was skipped.
        source: ``"tuned"`` (timed in this process), ``"disk"`` (read from an earlier
            process's entry) or ``"first"`` (interpret mode, or lowering for several platforms
            at once: the first configuration, untimed).
        fields: the tuning key's fields, as stored on disk.
    """

    index: int
    config: dict
    seconds: dict = dataclasses.field(default_factory=dict)
    failures: dict = dataclasses.field(default_factory=dict)
    source: str = "tuned"
    fields: dict = dataclasses.field(default_factory=dict)

    def to_entry(self) -> dict:
        """The JSON-ready disk entry (configuration indices become strings)."""
        return {"fields": self.fields, "index": self.index, "config": self.config,
                "seconds": {str(i): s for i, s in self.seconds.items()},
                "failures": {str(i): r for i, r in self.failures.items()}}

    @classmethod
    def from_entry(cls, entry: dict) -> "Choice":
        """The choice an earlier process stored, with ``source="disk"``."""
        return cls(index=entry["index"], config=dict(entry["config"]),
                   seconds={int(i): s for i, s in (entry.get("seconds") or {}).items()},
                   failures={int(i): r for i, r in (entry.get("failures") or {}).items()},
                   source="disk", fields=entry["fields"])


def failure_reason(error: BaseException) -> str:
    """One line naming the exception and its message, cut to a readable length."""
    text = " ".join(str(error).split()) or "(no message)"
    if len(text) > _REASON_CHARS:
        text = text[:_REASON_CHARS] + " ..."
    return f"{type(error).__name__}: {text}"


def _label(config: dict) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in config.items())


class _NoProgress:
    """Stands in for a tqdm bar when tqdm is not installed."""

    def update(self, n: int = 1) -> None:
        del n

    def set_postfix_str(self, text: str, refresh: bool = True) -> None:
        del text, refresh

    def close(self) -> None:
        pass


def _progress(total: int, name: str):
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm is a dependency; a bare offline install may still lack it
        return _NoProgress()
    return tqdm(total=total, desc=f"jtile.autotune {name}", unit="config", leave=False,
                file=sys.stderr, delay=0.0 if total > _FEW_CONFIGS else _SLOW_SECONDS)


class _Launch:
    """One candidate ready to time: compiled and given device inputs on its first call."""

    def __init__(self, lowered, inputs: Callable[[], list]):
        self._lowered = lowered
        self._inputs = inputs
        self._compiled = None

    def __call__(self):
        if self._compiled is None:
            self._compiled = self._lowered.compile()
        return self._compiled(*self._inputs())


def sweep(name: str, configs: Sequence[dict], candidate: Callable[[int], Callable],
          specs: Sequence, platform: str, timer: Timer, out_avals: Sequence,
          fields: dict) -> Choice:
    """Times every configuration and returns the fastest.

    Args:
        name: the tuned function's name, for the progress bar and errors.
        configs: the configurations, in order.
        candidate: `index -> function of the operands` with that configuration fixed.
        specs: `jax.ShapeDtypeStruct` of each operand.
        platform: the lowering platform (`"cuda"`, `"cpu"`, ...).
        timer: `timer(launch, config) -> seconds`.
        out_avals: `(shape, dtype)` of each output the caller expects.
        fields: the tuning key, recorded in the result.

    Raises:
        JtileError: no configuration could be timed; names every configuration's reason.
    """
    made: list = []

    def inputs() -> list:
        # Made once per sweep, on first use: a fake timer never allocates on a device.
        if not made:
            device = device_for(platform)
            if device is None:
                raise JtileError(f"jtile.autotune {name}: JAX has no {platform} device to time "
                                 "the candidates on")
            made.append(random_inputs(specs, device))
        return made[0]

    seconds, failures = {}, {}
    bar = _progress(len(configs), name)
    try:
        for index, config in enumerate(configs):
            bar.set_postfix_str(_label(config), refresh=False)  # the delay still applies
            try:
                traced = jax.jit(candidate(index)).trace(*specs)
                got = tuple((tuple(a.shape), a.dtype) for a in jax.tree_util.tree_leaves(
                    traced.out_info))
                if got != tuple(out_avals):
                    raise JtileError(f"the outputs are {got}, but the first configuration that "
                                     f"traces gives {tuple(out_avals)}")
                lowered = traced.lower(lowering_platforms=(platform,))
                measured = float(timer(_Launch(lowered, inputs), dict(config)))
                if not (math.isfinite(measured) and measured > 0):
                    raise JtileError(f"the timer returned {measured!r}; expected positive "
                                     "seconds")
                seconds[index] = measured
            except Exception as error:  # a failing configuration is skipped, never fatal
                failures[index] = failure_reason(error)
            bar.update(1)
    finally:
        bar.close()
    if not seconds:
        lines = "\n".join(f"  [{i}] {_label(c)}: {failures.get(i, '?')}"
                          for i, c in enumerate(configs))
        raise JtileError(f"jtile.autotune {name}: every configuration failed on {platform} "
                         f"for {fields.get('args')}:\n{lines}")
    best = min(seconds, key=lambda i: (seconds[i], i))
    return Choice(index=best, config=dict(configs[best]), seconds=seconds, failures=failures,
                  source="tuned", fields=fields)


def describe(name: str, configs: Sequence[dict], choice: Choice) -> str:
    """A few lines listing each configuration's time or failure, the winner marked."""
    lines = [f"jtile.autotune {name}: {choice.source} {_label(choice.config)}"]
    for index, config in enumerate(configs):
        mark = "*" if index == choice.index else " "
        if index in choice.seconds:
            status = f"{choice.seconds[index] * 1e3:.4f} ms"
        else:
            status = choice.failures.get(index, "not timed")
        lines.append(f" {mark}[{index}] {_label(config)}: {status}")
    return "\n".join(lines)
