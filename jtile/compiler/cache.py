"""The on-disk cubin cache: a new process pays milliseconds, not a recompile.

One entry is one file, ``<key>.cubin``: a magic string, the length of a JSON metadata block,
the metadata (including the payload's length and sha256), then the cubin. Entries are written to
a temporary file in the same directory, fsync'd and renamed into place, so a reader sees either
nothing or a whole entry; an entry that fails its checks anyway (a full disk, a copy cut short)
is deleted and treated as a miss, since a truncated cubin would otherwise surface only at launch
as ``CUDA_ERROR_INVALID_IMAGE``. A per-key file lock makes concurrent processes compile a
given kernel once: the others wait, then load what the first one wrote.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib.metadata
import json
import os
import pathlib
import struct
import tempfile
import threading
import warnings
from collections.abc import Callable, Iterable, Sequence

import filelock

from jtile.compiler import CompiledBinary
from jtile.compiler.target import Target, parse_target
from jtile.errors import JtileError

# Bump when the key's fields or the entry layout change, so old entries are never misread.
SCHEMA_VERSION = 1
_MAGIC = b"JTILE-CUBIN\n"
_LENGTH = struct.Struct(">I")
_HEADER_SUFFIXES = (".h", ".hh", ".hpp", ".cuh", ".inl", ".inc")
_LOCK_TIMEOUT_SECONDS = 600.0


@dataclasses.dataclass
class CacheStats:
    """Counts of what the cache did in this process, for tests and ``JTILE_DEBUG`` output.

    Attributes:
        hits: Entries loaded instead of compiling.
        misses: Compiles run because no usable entry existed.
        corrupt: Entries found damaged and deleted (each also counts as a miss).
    """

    hits: int = 0
    misses: int = 0
    corrupt: int = 0


_stats = CacheStats()
_stats_lock = threading.Lock()


def stats() -> CacheStats:
    """Returns a copy of this process's cache counters."""
    with _stats_lock:
        return dataclasses.replace(_stats)


def reset_stats() -> None:
    """Sets this process's cache counters back to zero."""
    with _stats_lock:
        _stats.hits = _stats.misses = _stats.corrupt = 0


def _count(field: str) -> None:
    with _stats_lock:
        setattr(_stats, field, getattr(_stats, field) + 1)


def jtile_version() -> str:
    """Returns the installed jtile version, or ``"dev"`` for a source checkout."""
    try:
        return importlib.metadata.version("jtile")
    except importlib.metadata.PackageNotFoundError:
        return "dev"


def cache_key(
    *,
    source: str,
    target: Target,
    kernel_name: str,
    compiler: str,
    options: Sequence[str],
    include_dirs: Sequence[str],
) -> str:
    """Returns the hex sha256 naming the cache entry for one compile.

    Every field is hashed with its label and length, so no two different field lists can
    produce the same byte stream. Headers are hashed by content, because jtile's device header
    can change while its path stays the same.

    Args:
        source: The CUDA source.
        target: The architecture.
        kernel_name: The entry function whose report the entry records.
        compiler: The compiler's ``identity()``, which names its version.
        options: The caller's extra options, in order.
        include_dirs: The caller's ``-I`` directories, in order.
    """
    digest = hashlib.sha256()

    def field(label: str, value: str | bytes) -> None:
        data = value.encode() if isinstance(value, str) else value
        digest.update(label.encode() + b"\0" + struct.pack(">Q", len(data)) + data)

    field("schema", str(SCHEMA_VERSION))
    field("jtile", jtile_version())
    field("compiler", compiler)
    field("arch", target.arch)
    field("kernel", kernel_name)
    field("options", json.dumps(list(options)))
    for index, directory in enumerate(include_dirs):
        field(f"include[{index}]", directory)
        for relative, contents in _headers(directory):
            field(f"header[{index}]:{relative}", contents)
    field("source", source)
    return digest.hexdigest()


def _headers(directory: str) -> Iterable[tuple[str, bytes]]:
    root = pathlib.Path(directory)
    if not root.is_dir():
        return []
    files = sorted(
        p
        for p in root.rglob("*")
        if p.is_file() and p.suffix.lower() in _HEADER_SUFFIXES
    )
    return [(p.relative_to(root).as_posix(), p.read_bytes()) for p in files]


def entry_path(directory: pathlib.Path, key: str) -> pathlib.Path:
    """Returns where the entry for ``key`` lives."""
    return directory / f"{key}.cubin"


def load(directory: pathlib.Path, key: str) -> CompiledBinary | None:
    """Loads a verified entry, or returns None (deleting the file) when it is absent or damaged.

    Args:
        directory: The cache directory.
        key: The entry's key from ``cache_key``.

    Returns:
        The binary with ``cached=True``, or None on a miss.
    """
    path = entry_path(directory, key)
    try:
        blob = path.read_bytes()
    except OSError:
        return None
    binary = _decode(blob, key)
    if binary is None:
        _count("corrupt")
        try:
            path.unlink()
        except OSError:
            pass
    return binary


def _decode(blob: bytes, key: str) -> CompiledBinary | None:
    start = len(_MAGIC) + _LENGTH.size
    if len(blob) < start or not blob.startswith(_MAGIC):
        return None
    (meta_length,) = _LENGTH.unpack_from(blob, len(_MAGIC))
    try:
        meta = json.loads(blob[start : start + meta_length].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    payload = blob[start + meta_length :]
    try:
        if (
            meta["schema"] != SCHEMA_VERSION
            or meta["key"] != key
            or meta["payload_length"] != len(payload)
            or meta["payload_sha256"] != hashlib.sha256(payload).hexdigest()
        ):
            return None
        return CompiledBinary(
            cubin=payload,
            kernel_name=meta["kernel_name"],
            target=parse_target(meta["arch"]),
            registers=meta["registers"],
            spill_bytes=meta["spill_bytes"],
            static_shared_memory_bytes=meta["static_shared_memory_bytes"],
            log=meta["log"],
            compiler=meta["compiler"],
            compile_seconds=meta["compile_seconds"],
            cached=True,
        )
    except (KeyError, TypeError, ValueError, JtileError):
        # Valid JSON with missing or ill-typed fields is damage too, not a reason to crash.
        return None


def _encode(key: str, binary: CompiledBinary) -> bytes:
    meta = {
        "schema": SCHEMA_VERSION,
        "key": key,
        "kernel_name": binary.kernel_name,
        "arch": binary.target.arch,
        "registers": binary.registers,
        "spill_bytes": binary.spill_bytes,
        "static_shared_memory_bytes": binary.static_shared_memory_bytes,
        "log": binary.log,
        "compiler": binary.compiler,
        "compile_seconds": binary.compile_seconds,
        "payload_length": len(binary.cubin),
        "payload_sha256": hashlib.sha256(binary.cubin).hexdigest(),
    }
    encoded = json.dumps(meta, sort_keys=True).encode("utf-8")
    return _MAGIC + _LENGTH.pack(len(encoded)) + encoded + binary.cubin


def store(directory: pathlib.Path, key: str, binary: CompiledBinary) -> pathlib.Path:
    """Writes an entry atomically: temp file in the same directory, fsync, rename.

    Args:
        directory: The cache directory, created if missing.
        key: The entry's key from ``cache_key``.
        binary: What to store.

    Returns:
        The entry's path.

    Raises:
        OSError: If the directory cannot be written.
    """
    directory.mkdir(parents=True, exist_ok=True)
    path = entry_path(directory, key)
    temporary = None
    try:
        with tempfile.NamedTemporaryFile(
            dir=directory, prefix=f".{key}.", suffix=".tmp", delete=False
        ) as handle:
            temporary = handle.name
            handle.write(_encode(key, binary))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        if temporary is not None:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
        raise
    _fsync_directory(directory)
    return path


def _fsync_directory(directory: pathlib.Path) -> None:
    # Makes the rename itself durable across a power cut; not possible on every platform.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def get_or_compile(
    key: str,
    compile_fn: Callable[[], CompiledBinary],
    *,
    directory: pathlib.Path,
) -> CompiledBinary:
    """Returns the cached binary for ``key``, compiling and storing it on a miss.

    Args:
        key: The entry's key from ``cache_key``.
        compile_fn: Compiles the kernel; called at most once, and only on a miss.
        directory: The cache directory.

    Returns:
        The binary; ``cached`` is True when no compile ran in this call.
    """
    hit = load(directory, key)
    if hit is not None:
        _count("hits")
        return hit
    try:
        directory.mkdir(parents=True, exist_ok=True)
        lock = filelock.FileLock(
            str(directory / f"{key}.lock"), timeout=_LOCK_TIMEOUT_SECONDS
        )
        lock.acquire()
    except (OSError, filelock.Timeout) as error:
        warnings.warn(
            f"jtile: compiling without the cache at {directory}: {error}", stacklevel=3
        )
        _count("misses")
        return compile_fn()
    try:
        # Another process may have compiled this key while we waited for the lock.
        hit = load(directory, key)
        if hit is not None:
            _count("hits")
            return hit
        _count("misses")
        binary = compile_fn()
        try:
            store(directory, key, binary)
        except OSError as error:
            warnings.warn(
                f"jtile: could not write the cache entry in {directory}: {error}",
                stacklevel=3,
            )
        return binary
    finally:
        lock.release()
