"""NVRTC through ctypes: CUDA C++ to a cubin inside this process, with no toolkit installed.

The library comes from the ``nvidia-cuda-nvrtc`` wheel when present (so ``pip install`` is all a
user needs), else from the system. NVRTC ships no ``cuda_fp16.h``/``cuda_bf16.h`` of its own;
they come from the ``nvidia-cuda-runtime`` wheel's include directory, passed with ``-I``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import glob
import os
import re
import site
import sys
import time
from collections.abc import Sequence

from jtile.compiler import CompiledBinary
from jtile.compiler.ptxas_report import compile_error, find_kernel, parse_ptxas_report
from jtile.compiler.target import Target
from jtile.errors import JtileCompileError

_SUCCESS = 0
_ERROR_COMPILATION = 6
# Wheel layouts: CUDA 13 wheels share one nvidia/cu13 tree; CUDA 12 wheels had one per package.
_WHEEL_LIB_DIRS = ("nvidia/cu13/lib", "nvidia/cuda_nvrtc/lib")
_WHEEL_INCLUDE_DIRS = ("nvidia/cu13/include", "nvidia/cuda_runtime/include")
_SYSTEM_CUDA = "/usr/local/cuda"
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


def _search_roots() -> list[str]:
    roots = list(site.getsitepackages())
    user_site = site.getusersitepackages()
    if isinstance(user_site, str):
        roots.append(user_site)
    # sys.path also covers virtualenvs and editable layouts that `site` does not list.
    roots.extend(p for p in sys.path if p and os.path.isdir(p))
    return list(dict.fromkeys(roots))


def find_library() -> str | None:
    """Returns the path of ``libnvrtc`` to load, or None when none is installed.

    The pip wheel wins over the system, so the version jtile was tested with is used.
    """
    for root in _search_roots():
        for sub in _WHEEL_LIB_DIRS:
            candidates = sorted(glob.glob(os.path.join(root, sub, "libnvrtc.so*")))
            if candidates:
                return candidates[0]
    found = ctypes.util.find_library("nvrtc")
    if found:
        return found
    candidates = sorted(glob.glob(os.path.join(_SYSTEM_CUDA, "lib64", "libnvrtc.so*")))
    return candidates[0] if candidates else None


def find_include_dir() -> str | None:
    """Returns the directory holding ``cuda_fp16.h`` and ``cuda_bf16.h``, or None."""
    for root in _search_roots():
        for sub in _WHEEL_INCLUDE_DIRS:
            path = os.path.join(root, sub)
            if os.path.isfile(os.path.join(path, "cuda_fp16.h")):
                return path
    path = os.path.join(_SYSTEM_CUDA, "include")
    return path if os.path.isfile(os.path.join(path, "cuda_fp16.h")) else None


@functools.cache
def _cuda_include_dir() -> str | None:
    return find_include_dir()


@functools.cache
def _library_path() -> str | None:
    return find_library()


@functools.cache
def _library() -> ctypes.CDLL | None:
    path = _library_path()
    if path is None:
        return None
    try:
        lib = ctypes.CDLL(path)
    except OSError:
        return None
    c_int_p = ctypes.POINTER(ctypes.c_int)
    size_p = ctypes.POINTER(ctypes.c_size_t)
    program = ctypes.c_void_p
    signatures = {
        "nvrtcVersion": (c_int_p, c_int_p),
        "nvrtcGetErrorString": (ctypes.c_int,),
        "nvrtcCreateProgram": (
            ctypes.POINTER(program),
            ctypes.c_char_p,
            ctypes.c_char_p,
            ctypes.c_int,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ),
        "nvrtcDestroyProgram": (ctypes.POINTER(program),),
        "nvrtcCompileProgram": (program, ctypes.c_int, ctypes.POINTER(ctypes.c_char_p)),
        "nvrtcGetProgramLogSize": (program, size_p),
        "nvrtcGetProgramLog": (program, ctypes.c_char_p),
        "nvrtcGetCUBINSize": (program, size_p),
        "nvrtcGetCUBIN": (program, ctypes.c_char_p),
    }
    for name, argtypes in signatures.items():
        function = getattr(lib, name)
        function.argtypes = argtypes
        function.restype = (
            ctypes.c_char_p if name == "nvrtcGetErrorString" else ctypes.c_int
        )
    return lib


def available() -> bool:
    """Whether libnvrtc can be loaded and the CUDA fp16/bf16 headers were found."""
    return _library() is not None and _cuda_include_dir() is not None


def version() -> tuple[int, int]:
    """Returns NVRTC's ``(major, minor)`` version, e.g. ``(13, 5)``.

    Raises:
        JtileCompileError: If NVRTC is not installed.
    """
    lib = _require()
    major, minor = ctypes.c_int(), ctypes.c_int()
    _check(
        lib, lib.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor)), "nvrtcVersion"
    )
    return major.value, minor.value


def describe() -> str:
    """Returns the compiler's short name for logs and ``CompiledBinary.compiler``."""
    major, minor = version()
    return f"nvrtc {major}.{minor}"


def identity() -> str:
    """Returns everything about this NVRTC that changes its output, for the cache key.

    The headers are identified by their ``CUDA_VERSION``, as the runtime wheel may be
    upgraded apart from NVRTC.
    """
    return f"{describe()} lib={_library_path()} headers={_headers_version()}"


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
    lib = _require()
    cuda_include = _cuda_include_dir()
    if cuda_include is None:
        raise JtileCompileError(
            f"{name}: NVRTC has no cuda_fp16.h/cuda_bf16.h of its own and none were found; "
            "`pip install nvidia-cuda-runtime` (CUDA 13) provides them."
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
    program = ctypes.c_void_p()
    _check(
        lib,
        lib.nvrtcCreateProgram(
            ctypes.byref(program), source.encode(), source_name.encode(), 0, None, None
        ),
        "nvrtcCreateProgram",
    )
    try:
        encoded = [o.encode() for o in all_options]
        argv = (ctypes.c_char_p * len(encoded))(*encoded)
        result = lib.nvrtcCompileProgram(program, len(encoded), argv)
        log = _program_log(lib, program)
        if result == _ERROR_COMPILATION:
            raise compile_error(name, describe(), source, source_name, log)
        _check(lib, result, "nvrtcCompileProgram", log=log, options=all_options)
        size = ctypes.c_size_t()
        _check(
            lib, lib.nvrtcGetCUBINSize(program, ctypes.byref(size)), "nvrtcGetCUBINSize"
        )
        buffer = ctypes.create_string_buffer(size.value)
        _check(lib, lib.nvrtcGetCUBIN(program, buffer), "nvrtcGetCUBIN")
        cubin = buffer.raw
    finally:
        lib.nvrtcDestroyProgram(ctypes.byref(program))
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


def _require() -> ctypes.CDLL:
    lib = _library()
    if lib is None:
        raise JtileCompileError(
            "NVRTC was not found; `pip install nvidia-cuda-nvrtc nvidia-cuda-runtime` (CUDA 13), "
            "or set JTILE_COMPILER=nvcc to use the CUDA toolkit's nvcc."
        )
    return lib


def _program_log(lib: ctypes.CDLL, program: ctypes.c_void_p) -> str:
    size = ctypes.c_size_t()
    if (
        lib.nvrtcGetProgramLogSize(program, ctypes.byref(size)) != _SUCCESS
        or size.value <= 1
    ):
        return ""
    buffer = ctypes.create_string_buffer(size.value)
    if lib.nvrtcGetProgramLog(program, buffer) != _SUCCESS:
        return ""
    return buffer.value.decode("utf-8", errors="replace")


def _check(
    lib: ctypes.CDLL,
    result: int,
    call: str,
    log: str = "",
    options: Sequence[str] = (),
) -> None:
    if result == _SUCCESS:
        return
    reason = (lib.nvrtcGetErrorString(result) or b"unknown error").decode()
    message = f"{call} failed with {reason} ({result})"
    if options:
        message += f"; options were: {' '.join(options)}"
    if log:
        message += f"\ncompiler log:\n{log}"
    raise JtileCompileError(message)
