"""`Lowered` and `Compiled` of a function of several kernels (`jtile.trace.kernel_sequence`).

`pallas_like(f).lower(...)` on a function with several `with T.Kernel(...)` blocks (or with
`T.alloc_global` workspaces) returns a `LoweredSequence`, a `jtile.Lowered` whose `launches`
are one ordinary `Lowered` per block, in launch order. `ir_text()` and `cuda_source()` show
every launch, each under a `// launch i of n: <kernel> ...` line; the CUDA is one translation
unit per launch (each compiles on its own, as each launch loads its own cubin), joined for
reading. `compile()` compiles every launch and returns a `CompiledSequence`: `launches` holds
each `Compiled`, `registers` and `shared_memory_bytes` are the largest of any launch, and
`cubin` names the launch to take it from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

from jtile.binding.lowered import Lowered, lower_kernel
from jtile.compiler.target import Target
from jtile.errors import JtileError
from jtile.trace.kernel_sequence import KernelSequence

__all__ = ["LoweredSequence", "CompiledSequence", "lower_sequence"]


def lower_sequence(sequence: KernelSequence, target: Target, *,
                   options: Sequence[str] = ()) -> "LoweredSequence":
    """Plans and generates every launch of `sequence` for `target` (no GPU needed)."""
    launches = tuple(lower_kernel(launch.kernel, target, aliases=launch.alias_map,
                                  options=options) for launch in sequence.launches)
    return LoweredSequence(sequence, launches, target)


def _heading(n: int, count: int, lowered: Lowered) -> str:
    return f"// launch {n + 1} of {count}: {lowered.kernel.name} ({lowered.kernel.loc})"


@dataclass(frozen=True)
class CompiledSequence:
    """Every launch of a function of several kernels, compiled for one architecture.

    Attributes:
        launches: one `jtile.Compiled` per launch, in launch order.
        target: the architecture, e.g. `"sm_90a"`.
    """

    launches: tuple
    target: str

    @property
    def registers(self) -> int:
        """The most 32-bit registers per thread of any launch."""
        return max(c.registers for c in self.launches)

    @property
    def shared_memory_bytes(self) -> int:
        """The most shared memory per block (static plus dynamic) of any launch."""
        return max(c.shared_memory_bytes for c in self.launches)

    @property
    def kernel_names(self) -> tuple:
        return tuple(c.kernel_name for c in self.launches)

    @property
    def cubin(self) -> bytes:
        if len(self.launches) == 1:
            return self.launches[0].cubin
        raise JtileError(f"the function launches {len(self.launches)} kernels "
                         f"({', '.join(self.kernel_names)}), each from its own cubin; take "
                         "one from .launches[i].cubin")


class LoweredSequence(Lowered):
    """A function of several kernels, planned and turned into CUDA for one target."""

    def __init__(self, sequence: KernelSequence, launches: tuple, target: Target):
        # No single kernel stands for the whole function: every per-kernel view is taken
        # from `launches`, so Lowered's own fields are left unset.
        self._sequence = sequence
        self._launches = launches
        self._target = target
        self._compiled: Optional[CompiledSequence] = None

    @property
    def launches(self) -> tuple:
        """One `jtile.Lowered` per `with T.Kernel(...)` block, in launch order."""
        return self._launches

    @property
    def kernel_name(self) -> str:
        """The kernel's name when there is one launch; else a JtileError naming them."""
        if len(self._launches) == 1:
            return self._launches[0].kernel_name
        raise JtileError(f"{self._sequence.name}: the function launches "
                         f"{len(self._launches)} kernels ({', '.join(self.kernel_names)}); "
                         "take one from .launches[i].kernel_name")

    @property
    def kernel_names(self) -> tuple:
        """The `extern "C"` name of each launch's kernel, in launch order."""
        return tuple(lowered.kernel_name for lowered in self._launches)

    @property
    def kernel(self):
        """The planned kernel IR when there is one launch; else a JtileError."""
        if len(self._launches) == 1:
            return self._launches[0].kernel
        raise JtileError(f"{self._sequence.name}: the function launches "
                         f"{len(self._launches)} kernels; take one from .launches[i].kernel")

    @property
    def has_cuda_source(self) -> bool:
        return all(lowered.has_cuda_source for lowered in self._launches)

    def ir_text(self) -> str:
        """Each launch's IR after the passes, in launch order, each under a heading line."""
        count = len(self._launches)
        return "\n".join(f"{_heading(n, count, lowered)}\n{lowered.ir_text()}"
                         for n, lowered in enumerate(self._launches))

    def cuda_source(self) -> str:
        """Each launch's CUDA translation unit, in launch order, each under a heading line."""
        count = len(self._launches)
        return "\n".join(f"{_heading(n, count, lowered)}\n{lowered.cuda_source()}"
                         for n, lowered in enumerate(self._launches))

    def compile(self) -> CompiledSequence:  # type: ignore[override]
        """Compiles every launch (through the disk cache); needs a compiler, no GPU."""
        if self._compiled is None:
            compiled = tuple(lowered.compile() for lowered in self._launches)
            self._compiled = CompiledSequence(compiled, self._target.arch)
        return self._compiled

    def __repr__(self) -> str:
        count = len(self._launches)
        return (f"Lowered({self._sequence.name}: {count} launch{'es' if count > 1 else ''}, "
                f"target={self.target})")
