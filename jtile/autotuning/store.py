"""Autotuning results on disk, beside the cubin cache, so a new process does not tune again.

One entry is one small JSON file, ``<cache dir>/autotune/<sha256 of the key>.json``, holding the
key's fields in full (kernel, argument shapes and dtypes, platform, device name, jtile version,
the configuration list), the winning configuration and every candidate's time or failure. The
fields are compared on load, so a hash collision or a hand-edited file can never hand back a
configuration tuned for something else. Writes go to a temporary file in the same directory that
is then renamed into place, under a per-key file lock (the cubin cache's scheme): concurrent
processes tune a given key once; the others wait and read what the first one wrote.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pathlib
import tempfile
import warnings
from typing import Iterator, Optional

import filelock

from jtile import config

# Bump when the entry layout changes, so old entries are ignored rather than misread.
SCHEMA_VERSION = 1
# A sweep of large kernels can take minutes; waiting processes give up (and tune on their own
# without the disk) only after this long.
_LOCK_TIMEOUT_SECONDS = 1800.0


def directory() -> pathlib.Path:
    """The folder of autotuning entries: ``autotune/`` inside the cubin cache directory."""
    return config.cache_dir() / "autotune"


def digest(fields: dict) -> str:
    """The hex sha256 naming the entry of `fields` (canonical JSON, keys sorted)."""
    return hashlib.sha256(_canonical(fields).encode("utf-8")).hexdigest()


def _canonical(value) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def entry_path(folder: pathlib.Path, key: str) -> pathlib.Path:
    """Where the entry named `key` lives."""
    return folder / f"{key}.json"


def load(folder: pathlib.Path, key: str, fields: dict) -> Optional[dict]:
    """Reads the entry for `key` whose stored fields equal `fields`, or returns None.

    A file that is unreadable, not JSON, of another schema or for other fields is a miss; a
    damaged one is deleted so that the next sweep can replace it.
    """
    path = entry_path(folder, key)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return None
    try:
        entry = json.loads(text)
        valid = (entry["schema"] == SCHEMA_VERSION and isinstance(entry["index"], int)
                 and isinstance(entry["config"], dict))
    except (json.JSONDecodeError, KeyError, TypeError):
        valid = False
    if not valid:
        with contextlib.suppress(OSError):
            path.unlink()
        return None
    if _canonical(entry.get("fields")) != _canonical(fields):
        return None
    return entry


def save(folder: pathlib.Path, key: str, entry: dict) -> None:
    """Writes `entry` atomically (temporary file, fsync, rename); warns instead of raising."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        data = json.dumps(dict(entry, schema=SCHEMA_VERSION), sort_keys=True, indent=1)
        temporary = None
        try:
            with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=folder,
                                             prefix=f".{key}.", suffix=".tmp",
                                             delete=False) as handle:
                temporary = handle.name
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, entry_path(folder, key))
        except BaseException:
            if temporary is not None:
                with contextlib.suppress(OSError):
                    os.unlink(temporary)
            raise
    except OSError as error:
        # Losing the entry only costs a new sweep in the next process.
        warnings.warn(f"jtile.autotune: could not write the tuning result in {folder}: {error}",
                      stacklevel=3)


@contextlib.contextmanager
def locked(folder: pathlib.Path, key: str) -> Iterator[bool]:
    """Holds the per-key file lock; yields False (unlocked) when the lock cannot be taken."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        lock = filelock.FileLock(str(folder / f"{key}.lock"), timeout=_LOCK_TIMEOUT_SECONDS)
        lock.acquire()
    except (OSError, filelock.Timeout) as error:
        warnings.warn(f"jtile.autotune: tuning without the lock in {folder}: {error}",
                      stacklevel=4)
        yield False
        return
    try:
        yield True
    finally:
        lock.release()
