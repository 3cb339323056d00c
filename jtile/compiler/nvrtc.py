"""NVRTC through ``cuda-bindings``: CUDA C++ to a cubin inside this process, no toolkit needed.

``cuda.bindings.nvrtc`` opens ``libnvrtc`` through ``cuda-pathfinder``, which prefers the
``nvidia-cuda-nvrtc`` wheel (so ``pip install`` is all a user needs) and falls back to the
system. NVRTC ships no ``cuda_fp16.h``/``cuda_bf16.h`` of its own; they come from the
``nvidia-cuda-runtime`` wheel's include directory, passed with ``-I``. When ``cuda-bindings`` or
``libnvrtc`` is missing, ``available()`` is False and ``jtile.compiler`` falls back to nvcc.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import re
import time
from collections.abc import Sequence
from types import ModuleType

from jtile.compiler import CompiledBinary, cuda_locations
from jtile.compiler.ptxas_report import compile_error, find_kernel, parse_ptxas_report
from jtile.compiler.target import Target
from jtile.errors import JtileCompileError, JtileError

_SUCCESS = 0
_ERROR_COMPILATION = 6
_BASE_OPTIONS = (
    "-std=c++17",
    # Functions without __device__ (helpers in generated code) compile for the device.
    "-default-device",
    # ptxas' report gives registers, spills and shared memory without a GPU.
    "-Xptxas=-v",
    # Maps SASS back to the generated source for compute-sanitizer and Nsight Compute.
    "-lineinfo",
    # NVRTC 12.9+ keeps its own cache when a driver is present, and a hit there returns an
    # empty log, losing the ptxas report; jtile's disk cache makes NVRTC's redundant anyway.
    "--no-cache",
)
_INSTALL_HINT = (
    "`pip install 'cuda-bindings>=13,<14' 'nvidia-cuda-nvrtc>=13,<14' "
    "'nvidia-cuda-runtime>=13,<14'`"
)


def find_library() -> str | None:
    """Returns the path of the ``libnvrtc`` that ``cuda.bindings.nvrtc`` uses, or None.

    The pip wheel wins over the system, so the version jtile was tested with is used.
    """
    return cuda_locations.nvrtc_library()


def find_include_dir() -> str | None:
    """Returns the directory holding ``cuda_fp16.h`` and ``cuda_bf16.h``, or None."""
    return cuda_locations.cuda_include_dir()


def _memo_directory():
    """Where `cuda_locations.remembered` keeps what it found: the kernel cache's directory
    (None when the cache is off or has no directory)."""
    from jtile import config

    if not config.cache_enabled():
        return None
    try:
        return config.cache_dir()
    except JtileError:  # no platformdirs and no JTILE_CACHE_DIR: search every time
        return None


@functools.cache
def _cuda_include_dir() -> str | None:
    return cuda_locations.remembered("cuda_include", find_include_dir, _memo_directory())


@functools.cache
def _library_path() -> str | None:
    return cuda_locations.remembered("nvrtc", find_library, _memo_directory())


@functools.cache
def _bindings() -> ModuleType | None:
    """Returns ``cuda.bindings.nvrtc`` once it has loaded ``libnvrtc``, else None.

    Imported on first use: the bindings take a few hundred milliseconds to import.
    """
    if _library_path() is None:
        return None
    try:
        from cuda.bindings import nvrtc as bindings
    except ImportError:
        return None
    try:
        result, _, _ = bindings.nvrtcVersion()
    except (RuntimeError, OSError):
        # Raised when the bindings cannot open the library themselves.
        return None
    return bindings if int(result) == _SUCCESS else None


def available() -> bool:
    """Whether libnvrtc, ``cuda-bindings`` and the CUDA fp16/bf16 headers were found.

    Only looks: the bindings are imported by the first compile, so a process whose kernels
    all come from the disk cache never pays for that import.
    """
    if _library_path() is None or _cuda_include_dir() is None:
        return False
    try:
        return importlib.util.find_spec("cuda.bindings.nvrtc") is not None
    except (ImportError, ValueError):  # ValueError: a module entry of None (import blocked)
        return False


def version() -> tuple[int, int]:
    """Returns NVRTC's ``(major, minor)`` version, e.g. ``(13, 5)``.

    Raises:
        JtileCompileError: If NVRTC or ``cuda-bindings`` is not installed.
    """
    bindings = _require()
    result, major, minor = bindings.nvrtcVersion()
    _check(bindings, result, "nvrtcVersion")
    return int(major), int(minor)


def describe() -> str:
    """Returns the compiler's short name for logs and ``CompiledBinary.compiler``."""
    major, minor = version()
    return f"nvrtc {major}.{minor}"


def identity() -> str:
    """Returns everything about this NVRTC that changes its output, for the cache key.

    The headers are identified by their ``CUDA_VERSION``, as the runtime wheel may be
    upgraded apart from NVRTC.
    """
    path = _library_path()
    stat = os.stat(path)
    # The library file's size and time stand for its version without loading it.
    return f"nvrtc lib={path} size={stat.st_size} mtime={stat.st_mtime_ns} " \
           f"headers={_headers_version()}"


@functools.cache
def _headers_version() -> str:
    include_dir = _cuda_include_dir()
    try:
        with open(
            os.path.join(include_dir or "", "cuda.h"),
            encoding="utf-8",
            errors="replace",
        ) as f:
            match = re.search(r"#define\s+CUDA_VERSION\s+(\d+)", f.read())
    except OSError:
        return f"{include_dir}"
    return f"{include_dir}:{match.group(1) if match else 'unknown'}"


def compile(
    source: str,
    target: Target,
    name: str,
    include_dirs: Sequence[str] = (),
    options: Sequence[str] = (),
) -> CompiledBinary:
    """Compiles CUDA C++ to a cubin with NVRTC, bypassing the cache.

    Args:
        source: The translation unit.
        target: The architecture; the cubin runs on that one only.
        name: The kernel's name; the program is called ``<name>.cu`` in diagnostics, and this
            entry's ptxas report is returned.
        include_dirs: ``-I`` directories, searched before the CUDA headers.
        options: Extra NVRTC options, appended after jtile's own.

    Returns:
        The cubin with its resources, ``cached=False``.

    Raises:
        JtileCompileError: If NVRTC is missing or rejects the source.
    """
    bindings = _require()
    cuda_include = _cuda_include_dir()
    if cuda_include is None:
        raise JtileCompileError(
            f"{name}: NVRTC has no cuda_fp16.h/cuda_bf16.h of its own and none were found; "
            "`pip install 'nvidia-cuda-runtime>=13,<14'` provides them."
        )
    source_name = f"{name}.cu"
    all_options = [
        f"--gpu-architecture={target.arch}",
        *_BASE_OPTIONS,
        *(f"-I{d}" for d in include_dirs),
        f"-I{cuda_include}",
        *options,
    ]
    start = time.perf_counter()
    result, program = bindings.nvrtcCreateProgram(
        source.encode(), source_name.encode(), 0, [], []
    )
    _check(bindings, result, "nvrtcCreateProgram")
    try:
        encoded = [o.encode() for o in all_options]
        (result,) = bindings.nvrtcCompileProgram(program, len(encoded), encoded)
        log = _program_log(bindings, program)
        if int(result) == _ERROR_COMPILATION:
            raise compile_error(name, describe(), source, source_name, log)
        _check(bindings, result, "nvrtcCompileProgram", log=log, options=all_options)
        result, size = bindings.nvrtcGetCUBINSize(program)
        _check(bindings, result, "nvrtcGetCUBINSize")
        buffer = bytearray(size)
        (result,) = bindings.nvrtcGetCUBIN(program, buffer)
        _check(bindings, result, "nvrtcGetCUBIN")
        cubin = bytes(buffer)
    finally:
        bindings.nvrtcDestroyProgram(program)
    seconds = time.perf_counter() - start
    resources = find_kernel(parse_ptxas_report(log), name, log)
    return CompiledBinary(
        cubin=cubin,
        kernel_name=name,
        target=target,
        registers=resources.registers,
        spill_bytes=resources.spill_bytes,
        static_shared_memory_bytes=resources.static_shared_memory_bytes,
        log=log,
        compiler=describe(),
        compile_seconds=seconds,
        cached=False,
    )


def _require() -> ModuleType:
    bindings = _bindings()
    if bindings is not None:
        return bindings
    if _library_path() is None:
        missing = "NVRTC was not found (cuda-pathfinder found no libnvrtc)"
    else:
        missing = (
            f"NVRTC was found at {_library_path()} but cuda-bindings cannot call it "
            "(cuda-bindings missing, or not a CUDA 13 release)"
        )
    raise JtileCompileError(
        f"{missing}; {_INSTALL_HINT}, or set JTILE_COMPILER=nvcc to use the CUDA toolkit's nvcc."
    )


def _program_log(bindings: ModuleType, program) -> str:
    result, size = bindings.nvrtcGetProgramLogSize(program)
    if int(result) != _SUCCESS or size <= 1:
        return ""
    buffer = bytearray(size)
    (result,) = bindings.nvrtcGetProgramLog(program, buffer)
    if int(result) != _SUCCESS:
        return ""
    # The log ends at its NUL terminator, as a C string does.
    return bytes(buffer).split(b"\0", 1)[0].decode("utf-8", errors="replace")


def _check(
    bindings: ModuleType,
    result,
    call: str,
    log: str = "",
    options: Sequence[str] = (),
) -> None:
    code = int(result)
    if code == _SUCCESS:
        return
    # Older bindings return some results as plain ints; nvrtcGetErrorString takes the enum.
    _, reason = bindings.nvrtcGetErrorString(bindings.nvrtcResult(code))
    message = f"{call} failed with {(reason or b'unknown error').decode()} ({code})"
    if options:
        message += f"; options were: {' '.join(options)}"
    if log:
        message += f"\ncompiler log:\n{log}"
    raise JtileCompileError(message)
