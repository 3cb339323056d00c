"""Where the CUDA libraries and headers jtile compiles with are, as ``cuda-pathfinder`` finds them.

``cuda-pathfinder`` is the search ``cuda-bindings`` itself uses to open ``libnvrtc``, so the path
reported here is the library that actually compiles (and part of the cache key). It looks in the
``nvidia-*`` wheels of this environment first (the ``nvidia/cu13`` tree of CUDA 13, the
per-package trees of CUDA 12), then conda, the system loader and ``CUDA_HOME``/``CUDA_PATH``.
Both lookups are imported lazily: ``import jtile`` does not pay for them.
"""

from __future__ import annotations

import os

# A toolkit in the default place still counts when neither wheel nor CUDA_HOME points at one.
_SYSTEM_CUDA_INCLUDE = "/usr/local/cuda/include"
# NVRTC has no half/bfloat16 headers of its own; these two must be on its include path.
_REQUIRED_HEADERS = ("cuda_fp16.h", "cuda_bf16.h")


def nvrtc_library() -> str | None:
    """Opens ``libnvrtc`` the way ``cuda.bindings.nvrtc`` does and returns its path.

    Returns:
        The absolute path of the loaded library (``"<unknown>"`` when it was already loaded
        by another package and its path cannot be read back), or None when ``cuda-pathfinder``
        is not installed or finds no ``libnvrtc``.
    """
    try:
        from cuda.pathfinder import DynamicLibNotFoundError, load_nvidia_dynamic_lib
    except ImportError:
        return None
    try:
        loaded = load_nvidia_dynamic_lib("nvrtc")
    except (DynamicLibNotFoundError, RuntimeError, OSError):
        return None
    return loaded.abs_path or "<unknown>"


def cuda_include_dir() -> str | None:
    """Returns the directory holding ``cuda_fp16.h`` and ``cuda_bf16.h``, or None.

    The ``nvidia-cuda-runtime`` wheel's include directory (found by ``cuda-pathfinder`` as the
    ``cudart`` headers) comes first, so the headers match the NVRTC wheel beside them; a
    toolkit under ``/usr/local/cuda`` is the last resort.
    """
    candidates = []
    try:
        from cuda.pathfinder import find_nvidia_header_directory
    except ImportError:
        pass
    else:
        try:
            found = find_nvidia_header_directory("cudart")
        except (RuntimeError, ValueError, OSError):
            found = None
        if found:
            candidates.append(found)
    candidates.append(_SYSTEM_CUDA_INCLUDE)
    for directory in candidates:
        if all(os.path.isfile(os.path.join(directory, h)) for h in _REQUIRED_HEADERS):
            return directory
    return None
