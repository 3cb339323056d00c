"""jtile's exceptions: every user mistake is a JtileError that names where it happened."""

from __future__ import annotations


class JtileError(Exception):
    """Base class of every error jtile raises for a user mistake.

    Messages read ``kernel (file:line): what was wrong``: the kernel's name and the source
    line of the offending ``T.`` call come first, then the buffers, shapes and the broken rule.
    """


class JtileTraceError(JtileError):
    """The kernel body broke a rule of the tile language while it was traced."""


class JtileShapeError(JtileTraceError):
    """Buffers or index expressions have shapes or dtypes that do not fit together."""


class JtileTargetError(JtileError):
    """The kernel needs a hardware feature or a resource the target does not have."""


class JtileCompileError(JtileError):
    """The CUDA compiler rejected generated code (a jtile bug, or a toolchain problem)."""


class JtileRuntimeError(JtileError):
    """The kernel cannot run here: no GPU, no driver, or a launch that failed."""


class JtilePerformanceWarning(UserWarning):
    """The kernel runs correctly but without an optimisation it asked for (a T.Pipelined loop
    that nothing could be issued ahead in, say); the message says why."""
