"""Ahead-of-time views of a kernel: `Lowered` (IR and CUDA) and `Compiled` (the cubin).

`pallas_like(...).lower(*args, target=)` returns a `Lowered`; it needs no GPU, so the IR, the
generated CUDA and the cubin for any supported architecture can be inspected on a laptop or in
CI. The functions here are also the compiled path's pipeline: the CUDA lowering rule of
`jtile_call_p` runs `plan_and_generate` then `compile_generated`, so what `.lower()` shows is
what a jitted call launches.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

from jtile.compiler.target import Target, default_target, parse_target
from jtile.errors import JtileError, JtileTargetError
from jtile.ir.nodes import Kernel
from jtile.ir.printer import kernel_text

__all__ = ["Lowered", "Compiled", "resolve_target", "lower_kernel", "plan_and_generate",
           "compile_generated", "build"]


def resolve_target(spec=None) -> Target:
    """The target named by `spec` ("sm_90a", a Target, ...), or the local GPU's when None.

    Raises:
        JtileTargetError: `spec` names no supported architecture, or it is None and there is
            neither a CUDA GPU nor `JTILE_TARGET`.
    """
    return default_target() if spec is None else parse_target(spec)


def plan_and_generate(kernel: Kernel, target: Target, *, aliases: Optional[dict] = None,
                      batch: int = 1, batched: Optional[tuple] = None):
    """Runs the passes for `target` and generates CUDA.

    Args:
        kernel: the traced kernel.
        target: the architecture to plan for.
        aliases: input index -> output index (input_output_aliases).
        batch: instances per launch (vmap folded into the grid).
        batched: per input, whether it carries the leading batch dimension.

    Returns:
        `(planned kernel, jtile.codegen.GeneratedKernel)`.
    """
    from jtile.codegen import generate
    from jtile.passes import run_passes

    planned = run_passes(kernel, target, aliases=aliases)
    flags = None
    if batch > 1:
        # The code generator wants one flag per parameter; outputs always carry the batch.
        inputs = tuple(batched) if batched is not None else (True,) * kernel.num_inputs
        flags = inputs + (True,) * (len(kernel.params) - kernel.num_inputs)
    return planned, generate(planned, target, batch=batch, batched=flags)


# ptxas's report when it cannot keep wgmmas asynchronous and waits after every one (C7514,
# C7515): about a third of the tensor cores' throughput lost without any other sign.
WGMMA_SERIALIZED = "wgmma.mma_async instructions are serialized"


def _waits_across_steps(planned: Kernel) -> bool:
    from jtile.ir import lowered as low
    from jtile.ir.walk import statements

    return any(isinstance(s, low.MbarrierPipeline) and (s.deferred_release or s.overlap)
               for s in statements(planned.body))


def build(kernel: Kernel, target: Target, *, aliases: Optional[dict] = None, batch: int = 1,
          batched=None, options: Sequence[str] = (), planned=None) -> tuple:
    """Plans, generates and compiles `kernel`: `(planned, generated, binary)`.

    When ptxas serializes the wgmmas of a ring whose waits reach across iterations (it could
    not prove the accumulators untouched in between), the kernel is planned again with a wait
    after each iteration's own wgmmas, which keeps them asynchronous; a kernel whose wgmmas
    stay serialized gets a JtilePerformanceWarning. `planned`: the `(planned, generated)` pair
    of `plan_and_generate`, when the caller has it already.
    """
    planned, generated = planned or plan_and_generate(kernel, target, aliases=aliases,
                                                      batch=batch, batched=batched)
    binary = compile_generated(generated, target, options=options)
    if WGMMA_SERIALIZED in binary.log and _waits_across_steps(planned):
        retry = kernel.replace(attrs=dict(kernel.attrs, wgmma_wait_each_step=True))
        planned2, generated2 = plan_and_generate(retry, target, aliases=aliases, batch=batch,
                                                 batched=batched)
        binary2 = compile_generated(generated2, target, options=options)
        if WGMMA_SERIALIZED not in binary2.log:
            planned, generated, binary = planned2, generated2, binary2
    if WGMMA_SERIALIZED in binary.log:
        import warnings

        from jtile.errors import JtilePerformanceWarning

        warnings.warn(JtilePerformanceWarning(
            f"{kernel.name} ({kernel.loc}): ptxas serialized its wgmmas (each waits for the "
            "one before): it found non-wgmma instructions touching an accumulator while a "
            "wgmma on it may run. Keep a T.gemm's accumulator out of other statements inside "
            "the pipelined loop"), stacklevel=2)
    return planned, generated, binary


def lower_kernel(kernel: Kernel, target: Target, *, aliases: Optional[dict] = None,
                 options: Sequence[str] = ()) -> "Lowered":
    """Plans and generates `kernel` for `target` ahead of time (`pallas_like(...).lower`)."""
    from jtile.passes import run_passes

    planned = run_passes(kernel, target, aliases=aliases)
    try:
        from jtile.codegen import generate

        generated = generate(planned, target)
    except ModuleNotFoundError as error:
        # A build without the code generator still shows the planned IR.
        if error.name != "jtile.codegen.cuda":
            raise
        generated = None
    return Lowered(kernel, planned, generated, target, options, aliases)


def compile_generated(generated, target: Target, *, options: Sequence[str] = ()):
    """Compiles generated CUDA to a cubin and checks its shared memory against the target.

    Returns:
        The `jtile.compiler.CompiledBinary`.

    Raises:
        JtileCompileError: the CUDA compiler failed or is missing.
        JtileTargetError: static plus dynamic shared memory exceeds the target's limit.
    """
    from jtile.compiler import compile_cuda

    binary = compile_cuda(generated.source, target, generated.kernel_name,
                          include_dirs=generated.include_dirs, options=tuple(options))
    total = binary.static_shared_memory_bytes + generated.shared_memory_bytes
    limit = target.max_shared_memory_per_block
    if total > limit:
        raise JtileTargetError(
            f"{generated.kernel_name}: the kernel uses {total} bytes of shared memory per block "
            f"({binary.static_shared_memory_bytes} static + {generated.shared_memory_bytes} "
            f"dynamic) but {target.arch} allows at most {limit}; use smaller tiles or fewer "
            "pipeline stages")
    return binary


@dataclass(frozen=True)
class Compiled:
    """A kernel compiled for one architecture.

    Attributes:
        cubin: the ELF image the launcher loads with `cuModuleLoadData`.
        kernel_name: the `extern "C"` entry point inside the cubin.
        target: the architecture, e.g. `"sm_90a"`.
        registers: 32-bit registers per thread, as ptxas reported.
        shared_memory_bytes: shared memory per block, static plus dynamic.
        grid, block, cluster: the launch configuration, `(x, y, z)` each.
        cooperative: the kernel holds a grid barrier (T.sync_grid) and is launched
            cooperatively, every block of its grid resident at once.
    """

    cubin: bytes
    kernel_name: str
    target: str
    registers: int
    shared_memory_bytes: int
    grid: tuple
    block: tuple
    cluster: tuple
    cooperative: bool = False


class Lowered:
    """A kernel planned and turned into CUDA for one target, not yet compiled.

    Made by `pallas_like(...).lower(*args, target=)`; needs no GPU.
    """

    def __init__(self, kernel: Kernel, planned: Kernel, generated, target: Target,
                 options: Sequence[str] = (), aliases: Optional[dict] = None):
        self._kernel = kernel
        self._aliases = aliases
        self._planned = planned
        self._generated = generated
        self._target = target
        self._options = tuple(options)
        self._compiled: Optional[Compiled] = None

    @property
    def target(self) -> str:
        """The architecture this was lowered for, e.g. `"sm_90a"`."""
        return self._target.arch

    @property
    def kernel_name(self) -> str:
        """The `extern "C"` name of the generated kernel."""
        return self._require_generated().kernel_name

    @property
    def kernel(self) -> Kernel:
        """The planned kernel IR."""
        return self._planned

    def ir_text(self) -> str:
        """The kernel's IR after the passes, in the printer's stable text form."""
        return kernel_text(self._planned)

    @property
    def has_cuda_source(self) -> bool:
        """Whether CUDA was generated (False only in a build without the code generator)."""
        return self._generated is not None

    def _require_generated(self):
        if self._generated is None:
            raise JtileError(
                f"{self._kernel.name}: the CUDA code generator (jtile.codegen.cuda) is not "
                "installed in this build, so there is no CUDA source; ir_text() still works")
        return self._generated

    def cuda_source(self) -> str:
        """The generated CUDA C++ translation unit."""
        return self._require_generated().source

    def compile(self) -> Compiled:
        """Compiles the CUDA to a cubin (through the disk cache); needs a compiler, no GPU."""
        if self._compiled is None:
            first = (self._planned, self._require_generated())
            self._planned, self._generated, binary = build(
                self._kernel, self._target, aliases=self._aliases, options=self._options,
                planned=first)
            generated = self._generated
            self._compiled = Compiled(
                cubin=binary.cubin, kernel_name=generated.kernel_name, target=self._target.arch,
                registers=binary.registers,
                shared_memory_bytes=binary.static_shared_memory_bytes
                + generated.shared_memory_bytes,
                grid=tuple(generated.grid), block=tuple(generated.block),
                cluster=tuple(generated.cluster), cooperative=generated.cooperative)
        return self._compiled

    def __repr__(self) -> str:
        return f"Lowered({self._kernel.name}, target={self.target})"
