"""CUDA C++ to cubin: NVRTC in-process when it is installed, nvcc otherwise, through a disk cache.

The code generator hands ``compile_cuda`` one translation unit and the kernel's name; what comes
back is the cubin plus what ptxas said about the kernel (registers, spills, static shared
memory), so the binding can check launch limits before the kernel ever runs. Always a cubin,
never PTX: PTX from an NVRTC newer than the driver may fail to load.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType

from jtile import config
from jtile.compiler.target import Target
from jtile.errors import JtileCompileError

__all__ = ["CompiledBinary", "compile_cuda", "select_backend"]


@dataclass(frozen=True)
class CompiledBinary:
    """A kernel compiled to a cubin, with the resources ptxas reported for it.

    Attributes:
        cubin: The ELF image to pass to ``cuModuleLoadData``.
        kernel_name: The entry function's name, as given to the compiler.
        target: The architecture the cubin runs on (exactly that one).
        registers: 32-bit registers per thread.
        spill_bytes: Bytes of local-memory spill stores plus loads (0 when none).
        static_shared_memory_bytes: Statically declared ``__shared__`` bytes.
        log: The compiler's log, including the ptxas report.
        compiler: The compiler and its version, e.g. ``"nvrtc 13.5"``.
        compile_seconds: Wall time of the original compile (not of a cache load).
        cached: Whether this came from the disk cache rather than a compile.
    """

    cubin: bytes
    kernel_name: str
    target: Target
    registers: int
    spill_bytes: int
    static_shared_memory_bytes: int
    log: str
    compiler: str
    compile_seconds: float
    cached: bool = False


# Imported after CompiledBinary exists: the backends build it, and the package is their parent.
from jtile.compiler import cache, nvcc, nvrtc


def select_backend() -> ModuleType:
    """Returns the compiler module (``nvrtc`` or ``nvcc``) that ``JTILE_COMPILER`` asks for.

    Raises:
        JtileCompileError: If the requested compiler, or for ``auto`` either one, is missing.
    """
    choice = config.compiler()
    if choice in ("auto", "nvrtc") and nvrtc.available():
        return nvrtc
    if choice in ("auto", "nvcc") and nvcc.available():
        return nvcc
    wanted = {
        "auto": "neither NVRTC nor nvcc was found",
        "nvrtc": "JTILE_COMPILER=nvrtc but libnvrtc was not found",
        "nvcc": "JTILE_COMPILER=nvcc but nvcc is not on PATH or in /usr/local/cuda/bin",
    }[choice]
    raise JtileCompileError(
        f"cannot compile CUDA: {wanted}. Install NVRTC and the CUDA headers with "
        "`pip install nvidia-cuda-nvrtc nvidia-cuda-runtime` (CUDA 13), or install the CUDA "
        "toolkit and put nvcc on PATH."
    )


def compile_cuda(
    source: str,
    target: Target,
    kernel_name: str,
    *,
    include_dirs: Sequence[str] = (),
    options: Sequence[str] = (),
) -> CompiledBinary:
    """Compiles one CUDA translation unit to a cubin, reusing the disk cache when it can.

    Args:
        source: The CUDA C++ source; the kernel should be ``extern "C" __global__``.
        target: The architecture to compile for.
        kernel_name: The entry function whose ptxas report is returned.
        include_dirs: Extra ``-I`` directories, e.g. jtile's device header directory. Every
            header under them is part of the cache key, so editing one recompiles.
        options: Extra compiler options, passed through unchanged.

    Returns:
        The cubin and its resources; ``cached`` says whether a compile was skipped.

    Raises:
        JtileCompileError: If no compiler is installed or the source does not compile; the
            message quotes the log and the source lines around each error.
    """
    backend = select_backend()
    include_dirs = tuple(str(d) for d in include_dirs)
    options = tuple(options)

    def run_compiler() -> CompiledBinary:
        # Looked up on the module at call time so that tests can replace the backend's compile.
        return backend.compile(
            source, target, kernel_name, include_dirs=include_dirs, options=options
        )

    if not config.cache_enabled():
        return run_compiler()
    key = cache.cache_key(
        source=source,
        target=target,
        kernel_name=kernel_name,
        compiler=backend.identity(),
        options=options,
        include_dirs=include_dirs,
    )
    return cache.get_or_compile(key, run_compiler, directory=config.cache_dir())
