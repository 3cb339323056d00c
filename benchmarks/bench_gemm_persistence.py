"""The Hopper GEMM run one block per tile against the same kernel as a persistent tile loop
(JTILE_PERSISTENT), beside XLA's dot, from one process.

The three are timed in interleaved rounds (XLA, one block per tile, persistent, XLA, ...), so
clock and temperature drift over the run reach all three alike; each row gives the median of
the rounds and the spread (max/min of a variant's rounds), which says how large a difference
is noise. Every result is checked against XLA's.
"""

from __future__ import annotations

import functools
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import jtile  # noqa: E402
from examples import gemm  # noqa: E402
from jtile.binding import primitive  # noqa: E402

SHAPES = ((4096, 4096, 4096), (8192, 8192, 8192), (4096, 8192, 4096))
CONFIGS = (dict(block_m=128, block_n=256, block_k=64, stages=4, threads=256),
           dict(block_m=256, block_n=128, block_k=64, stages=4, threads=256))
ROUNDS = 7


def _loop_ms(f, args, iters):
    start = time.perf_counter()
    for _ in range(iters):
        out = f(*args)
    jax.block_until_ready(out)
    return (time.perf_counter() - start) / iters * 1e3


def _jtile(cfg, persistent: bool):
    """A jitted GEMM planned with persistence on or off (the plan is made at the first call)."""
    os.environ["JTILE_PERSISTENT"] = "1" if persistent else "0"
    primitive._builds.clear()
    f = jax.jit(functools.partial(gemm.matmul, interpret=False, **cfg))
    return f


def row(m, n, k, dtype, cfg):
    a = jax.random.normal(jax.random.key(0), (m, k), jnp.float32).astype(dtype)
    b = jax.random.normal(jax.random.key(1), (k, n), jnp.float32).astype(dtype)
    variants = {"xla": jax.jit(jnp.dot)}
    for name, persistent in (("per-tile", False), ("persistent", True)):
        f = _jtile(cfg, persistent)
        jax.block_until_ready(f(a, b))   # planned and compiled under this setting
        variants[name] = f
    ref = np.asarray(variants["xla"](a, b), np.float32)
    for name in ("per-tile", "persistent"):
        got = np.asarray(variants[name](a, b), np.float32)
        err = float(np.max(np.abs(got - ref)) / np.max(np.abs(ref)))
        if err > 1e-2:
            print(f"  {name}: WRONG, max error {err:.1e} of the largest value", flush=True)
            return
    single = _loop_ms(variants["xla"], (a, b), 3)
    iters = max(3, int(250 / single))
    times = {name: [] for name in variants}
    for _ in range(ROUNDS):
        for name, f in variants.items():
            times[name].append(_loop_ms(f, (a, b), iters))
    med = {name: statistics.median(t) for name, t in times.items()}
    spread = {name: max(t) / min(t) for name, t in times.items()}
    flops = 2 * m * n * k
    label = " ".join(f"{key}={value}" for key, value in cfg.items())
    print(f"gemm {m}x{n}x{k} {jnp.dtype(dtype).name:<8} [{label}]  "
          f"xla {med['xla']:.3f} ms  per-tile {med['per-tile']:.3f} ms "
          f"(x{med['xla'] / med['per-tile']:.3f} xla, {flops / med['per-tile'] / 1e9:.0f} TFLOP/s)  "
          f"persistent {med['persistent']:.3f} ms (x{med['xla'] / med['persistent']:.3f} xla, "
          f"{flops / med['persistent'] / 1e9:.0f} TFLOP/s)  spread "
          + " ".join(f"{name} {s:.3f}" for name, s in spread.items()), flush=True)


def main():
    print("jax", jax.__version__, "devices", jax.devices(), flush=True)
    for m, n, k in SHAPES:
        for dtype in (jnp.float16, jnp.bfloat16):
            for cfg in CONFIGS:
                row(m, n, k, dtype, cfg)


if __name__ == "__main__":
    main()
