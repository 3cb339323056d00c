"""Autotuned functions shared by the tests and the subprocesses they start."""

import json
import os

import jax.numpy as jnp

import jtile

SCALE_CONFIGS = [dict(scale=1.0), dict(scale=2.0), dict(scale=3.0)]
# The fake timer's answer per configuration: the middle one is the fastest.
FAKE_SECONDS = {1.0: 3e-3, 2.0: 1e-3, 3.0: 2e-3}


class RecordingTimer:
    """A fake timer: returns FAKE_SECONDS for each configuration and records every call."""

    def __init__(self, log_path=None):
        self.calls = []
        self._log_path = log_path

    def __call__(self, launch, config):
        del launch  # nothing runs: the timings are made up
        self.calls.append(dict(config))
        if self._log_path:
            with open(self._log_path, "a") as log:
                log.write(json.dumps(config) + "\n")
        return FAKE_SECONDS[config["scale"]]


def scaled_sum(x, y, *, scale):
    """x * scale + y, tuned over `scale` (each configuration gives a different result, so the
    result shows which one ran)."""
    return x * scale + y


def make_scaled_sum(timer, **options):
    return jtile.autotune(configs=SCALE_CONFIGS, timer=timer,
                          name="tests.autotune.scaled_sum", **options)(scaled_sum)


def subprocess_main():
    """Runs the tuned function once in a fresh process and prints what happened as JSON."""
    import numpy as np

    timer = RecordingTimer(os.environ.get("TIMER_LOG"))
    tuned = make_scaled_sum(timer)
    x = jnp.asarray(np.arange(1, 9, dtype=np.float32))
    y = jnp.asarray(np.full(8, 0.5, np.float32))
    out = tuned(x, y)
    (choice,) = tuned.choices
    print(json.dumps({"calls": len(timer.calls), "index": choice.index,
                      "source": choice.source, "out": np.asarray(out).tolist()}))


if __name__ == "__main__":
    subprocess_main()
