"""Where the CUDA libraries and headers jtile compiles with are, as ``cuda-pathfinder`` finds them.

``cuda-pathfinder`` is the search ``cuda-bindings`` itself uses to open ``libnvrtc``, so the path
reported here is the library that actually compiles (and part of the cache key). It looks in the
``nvidia-*`` wheels of this environment first (the ``nvidia/cu13`` tree of CUDA 13, the
per-package trees of CUDA 12), then conda, the system loader and ``CUDA_HOME``/``CUDA_PATH``.
Both lookups are imported lazily: ``import jtile`` does not pay for them.

`remembered` keeps what a search found in a small file beside the kernel cache, so a process
whose kernels all come from that cache skips the search (importing ``cuda-pathfinder`` and
opening ``libnvrtc`` took about half of a warm compile). The file holds a stamp of what the
search depends on: the interpreter, the modification times of its site-packages directories
(every install changes them) and the environment variables the search reads; a different
stamp, or a remembered path that is gone, searches again.
"""

from __future__ import annotations

import json
import os
import site
import sys

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


_STAMP_VARIABLES = ("CUDA_HOME", "CUDA_PATH", "CONDA_PREFIX", "LD_LIBRARY_PATH")
_MEMO_FILE = "cuda_locations.json"


def _stamp() -> dict:
    directories = list(site.getsitepackages())
    user = site.getusersitepackages()
    directories += [user] if isinstance(user, str) else list(user)
    return {
        "python": sys.executable,
        "prefix": sys.prefix,
        "site": sorted([d, os.stat(d).st_mtime_ns] for d in set(directories) if os.path.isdir(d)),
        "env": {name: os.environ.get(name) for name in _STAMP_VARIABLES},
    }


def remembered(name: str, search, directory) -> str | None:
    """`search()`'s answer for `name`, from the file in `directory` when it was found there
    under the same stamp and still exists; else searched and written there. `directory`
    None (no kernel cache) always searches."""
    if directory is None:
        return search()
    path = os.path.join(str(directory), _MEMO_FILE)
    stamp = _stamp()
    try:
        with open(path, encoding="utf-8") as f:
            memo = json.load(f)
    except (OSError, ValueError):
        memo = {}
    if not isinstance(memo, dict) or memo.get("stamp") != stamp:
        memo = {"stamp": stamp}
    found = memo.get(name)
    if isinstance(found, str) and os.path.exists(found):
        return found
    found = search()
    if found is not None and os.path.exists(found):
        memo[name] = found
        try:
            os.makedirs(str(directory), exist_ok=True)
            temporary = f"{path}.{os.getpid()}.tmp"
            with open(temporary, "w", encoding="utf-8") as f:
                json.dump(memo, f)
            os.replace(temporary, path)   # whole, even with other processes writing
        except OSError:
            pass   # an unwritable cache only costs the next process the search
    return found
