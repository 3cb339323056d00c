"""Timing one autotuning candidate on the device: made-up inputs, warm-up, median of loops.

A timer is any callable ``timer(launch, config) -> seconds``. ``launch()`` enqueues one run of
the compiled candidate on its inputs and returns the outputs without waiting for them, so a
timer decides how to synchronise (``jax.block_until_ready``); ``config`` is the candidate's
keyword arguments, which lets a test pass a fake timer that never touches a device.
"""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable, Optional, Sequence

import jax
import numpy as np

__all__ = ["Timer", "default_timer", "random_inputs", "device_for"]

Timer = Callable[[Callable[[], Any], dict], float]

# Each timed loop runs for about this long, so launch overhead and timer resolution stay small
# next to the kernel time without making a sweep of many configurations slow.
_LOOP_SECONDS = 0.01
_MAX_ITERATIONS = 100
_LOOPS = 5


def default_timer(launch: Callable[[], Any], config: Optional[dict] = None) -> float:
    """Seconds per launch: the median over several loops of back-to-back launches.

    The first launch (which loads the module and may allocate) is not timed. One timed launch
    sizes the loops so each lasts about 10 ms; the median of five loops is returned.

    Args:
        launch: enqueues one run of the candidate and returns its outputs.
        config: the candidate's configuration (unused; part of the timer protocol).
    """
    del config
    jax.block_until_ready(launch())
    start = time.perf_counter()
    jax.block_until_ready(launch())
    once = max(time.perf_counter() - start, 1e-7)
    iterations = int(min(_MAX_ITERATIONS, max(1, _LOOP_SECONDS // once)))
    samples = []
    for _ in range(_LOOPS):
        start = time.perf_counter()
        out = None
        for _ in range(iterations):
            out = launch()
        jax.block_until_ready(out)
        samples.append((time.perf_counter() - start) / iterations)
    return statistics.median(samples)


def device_for(platform: str):
    """The first device JAX has for a lowering platform name (``"cuda"``, ``"cpu"``), or None."""
    names = (platform, "gpu") if platform in ("cuda", "rocm") else (platform,)
    for name in names:
        try:
            devices = jax.devices(name)
        except RuntimeError:
            continue
        if devices:
            return devices[0]
    return None


def random_inputs(specs: Sequence, device, seed: int = 0) -> list:
    """Random arrays of the given shapes and dtypes on `device`, never all zeros.

    Floating-point inputs are standard normal; integers are small positive values (1..3), so
    that inputs used as indices or segment ids stay in range; booleans are random bits.
    """
    rng = np.random.default_rng(seed)
    arrays = []
    for spec in specs:
        dtype = np.dtype(spec.dtype)
        shape = tuple(spec.shape)
        if dtype == np.bool_:
            host = rng.integers(0, 2, size=shape).astype(np.bool_)
        elif np.issubdtype(dtype, np.integer):
            host = rng.integers(1, 4, size=shape).astype(dtype)
        else:
            # float16, bfloat16 and float8 (ml_dtypes) convert from float32.
            host = rng.standard_normal(size=shape, dtype=np.float32).astype(dtype)
        arrays.append(jax.device_put(host, device))
    return arrays
