"""Compiling every kernel an op launches, on the CPU: each launch is lowered and compiled for a
target (no GPU needed), then run in interpret mode so the op goes on to its next kernel."""

from __future__ import annotations

import jax


def compile_every_launch(monkeypatch, target: str = "sm_90a") -> list:
    """Patches `KernelLauncher.__call__` for the test; returns the list it fills with
    `(launcher name, jtile.Compiled)` per launch, in order."""
    from jtile.binding.pallas_like import KernelLauncher

    compiled = []
    original = KernelLauncher.__call__

    def lower_instead(self, *args):
        specs = [jax.ShapeDtypeStruct(a.shape, a.dtype) for a in args]
        compiled.append((self.__name__, self.lower(*specs, target=target).compile()))
        return original(self, *args)

    monkeypatch.setattr(KernelLauncher, "__call__", lower_instead)
    return compiled
