"""How a `jtile.ops` function decides between compiled CUDA and interpret mode."""

from __future__ import annotations

from typing import Optional

import jax

from jtile import config


def resolve_interpret(interpret: Optional[bool]) -> bool:
    """Whether an op runs its kernels in interpret mode.

    Args:
        interpret: the op's `interpret=` argument. True or False is obeyed as given; None
            follows `JTILE_INTERPRET` when it is set to true, and otherwise picks interpret mode
            exactly when JAX's default backend is not a GPU (a CPU-only machine, a TPU), so that
            the ops run everywhere without an argument and compile wherever they can.

    Returns:
        True for interpret mode.
    """
    if interpret is not None:
        return bool(interpret)
    if config.interpret():
        return True
    return jax.default_backend() != "gpu"
