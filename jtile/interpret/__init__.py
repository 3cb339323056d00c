"""Interpret mode: jtile kernels evaluated with jax.numpy on any backend, the CPU included.

It is the semantic reference the compiled GPU path is tested against.
"""

from jtile.interpret.run import interpret

__all__ = ["interpret"]
