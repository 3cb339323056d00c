"""nvcc as a fallback compiler, for machines with the CUDA toolkit but no NVRTC wheel.

Slower than NVRTC (a process start and a host-side preprocessing pass, about 0.5 to 1 s), and
unlike NVRTC it has no ``-default-device``: generated helpers must be marked ``__device__``.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence

from jtile.compiler import CompiledBinary
from jtile.compiler.ptxas_report import compile_error, find_kernel, parse_ptxas_report
from jtile.compiler.target import Target
from jtile.errors import JtileCompileError

_SYSTEM_NVCC = "/usr/local/cuda/bin/nvcc"
_BASE_OPTIONS = ("-std=c++17", "-Xptxas", "-v", "-lineinfo")
_VERSION = re.compile(r"release (\d+)\.(\d+), V([\d.]+)")


def find_nvcc() -> str | None:
    """Returns the nvcc to run: the one on PATH, else the toolkit's default location."""
    found = shutil.which("nvcc")
    if found:
        return found
    return _SYSTEM_NVCC if os.access(_SYSTEM_NVCC, os.X_OK) else None


@functools.cache
def _version_text(nvcc: str) -> str:
    try:
        completed = subprocess.run(
            [nvcc, "--version"], check=False, capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return completed.stdout if completed.returncode == 0 else ""


def _parsed_version() -> re.Match[str] | None:
    nvcc = find_nvcc()
    return _VERSION.search(_version_text(nvcc)) if nvcc else None


def available() -> bool:
    """Whether an nvcc that reports its version can be run."""
    return _parsed_version() is not None


def version() -> tuple[int, int]:
    """Returns nvcc's ``(major, minor)`` release, e.g. ``(13, 0)``.

    Raises:
        JtileCompileError: If nvcc is not installed.
    """
    match = _require()
    return int(match.group(1)), int(match.group(2))


def describe() -> str:
    """Returns the compiler's short name for logs and ``CompiledBinary.compiler``."""
    major, minor = version()
    return f"nvcc {major}.{minor}"


def identity() -> str:
    """Returns everything about this nvcc that changes its output, for the cache key."""
    match = _require()
    return f"nvcc {match.group(3)} path={find_nvcc()}"


def compile(
    source: str,
    target: Target,
    name: str,
    include_dirs: Sequence[str] = (),
    options: Sequence[str] = (),
) -> CompiledBinary:
    """Compiles CUDA C++ to a cubin with nvcc in a temporary directory, bypassing the cache.

    Args:
        source: The translation unit.
        target: The architecture; the cubin runs on that one only.
        name: The kernel's name; the file is called ``<name>.cu`` in diagnostics, and this
            entry's ptxas report is returned.
        include_dirs: ``-I`` directories.
        options: Extra nvcc options, appended after jtile's own.

    Returns:
        The cubin with its resources, ``cached=False``.

    Raises:
        JtileCompileError: If nvcc is missing or rejects the source.
    """
    _require()
    nvcc = find_nvcc()
    source_name = f"{name}.cu"
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="jtile-nvcc-") as workdir:
        source_path = os.path.join(workdir, source_name)
        cubin_path = os.path.join(workdir, f"{name}.cubin")
        with open(source_path, "w", encoding="utf-8") as handle:
            handle.write(source)
        command = [
            nvcc,
            "-cubin",
            f"-gencode=arch={target.compute_arch},code={target.arch}",
            *_BASE_OPTIONS,
            *(f"-I{d}" for d in include_dirs),
            *options,
            "-o",
            cubin_path,
            source_path,
        ]
        completed = subprocess.run(
            command, check=False, capture_output=True, text=True, cwd=workdir
        )
        log = (completed.stdout + completed.stderr).replace(workdir + os.sep, "")
        if completed.returncode != 0:
            raise compile_error(name, describe(), source, source_name, log)
        try:
            with open(cubin_path, "rb") as handle:
                cubin = handle.read()
        except OSError as error:
            raise JtileCompileError(
                f"{name}: nvcc exited cleanly but wrote no cubin ({error}).\n"
                f"command: {' '.join(command)}\ncompiler log:\n{log}"
            ) from None
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


def _require() -> re.Match[str]:
    match = _parsed_version()
    if match is None:
        raise JtileCompileError(
            "nvcc was not found or did not report its version; install the CUDA 13 toolkit and "
            "put nvcc on PATH, or `pip install nvidia-cuda-nvrtc nvidia-cuda-runtime`."
        )
    return match
