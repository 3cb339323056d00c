"""Shared by the examples: run compiled on a GPU, in interpret mode elsewhere; error checks."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

# Compiled CUDA on a GPU; the same kernels in interpret mode (jax.numpy) on a CPU.
INTERPRET = jax.default_backend() != "gpu"


def relative_error(out, ref) -> float:
    """||out - ref|| / ||ref|| in float64 (NaN anywhere gives NaN)."""
    out = np.asarray(jnp.asarray(out, jnp.float32), np.float64)
    ref = np.asarray(jnp.asarray(ref, jnp.float32), np.float64)
    return float(np.linalg.norm(out - ref) / max(np.linalg.norm(ref), 1e-30))


def check(name: str, out, ref, tolerance: float) -> float:
    err = relative_error(out, ref)
    status = "ok" if err <= tolerance else "FAILED"
    print(f"{name:<44} rel err {err:.2e} (bound {tolerance:.0e}) {status}")
    if not err <= tolerance:
        raise SystemExit(f"{name}: relative error {err} exceeds {tolerance}")
    return err
