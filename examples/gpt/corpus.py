"""A character-level corpus every machine has: Python's own standard-library sources.

The `.py` files under `sysconfig.get_paths()["stdlib"]` are read in sorted path order up to a
byte budget (installed third-party packages are skipped, so the text depends only on the
Python version). Each distinct byte becomes a token; the vocabulary is padded to a multiple of
128 so that its size suits the vocabulary chunks of `jtile.ops.linear_cross_entropy`.
"""

from __future__ import annotations

import dataclasses
import os
import sysconfig

import numpy as np

# Directories under the standard library that hold installed packages, not Python's sources.
_THIRD_PARTY = ("site-packages", "dist-packages")

VOCAB_MULTIPLE = 128


@dataclasses.dataclass(frozen=True)
class Corpus:
    """Token ids of the corpus text and the byte each id stands for.

    Attributes:
        tokens: (n,) int32 token ids.
        byte_of_id: (ids,) uint8, the byte value of each id that occurs in the text.
        vocab_size: the model's vocabulary, `len(byte_of_id)` rounded up to VOCAB_MULTIPLE
            (the padding ids never occur as inputs or targets).
        files: how many source files were read.
    """

    tokens: np.ndarray
    byte_of_id: np.ndarray
    vocab_size: int
    files: int

    def decode(self, ids) -> str:
        """The text of a sequence of token ids (padding ids are dropped)."""
        ids = np.asarray(ids)
        ids = ids[ids < len(self.byte_of_id)]
        return bytes(self.byte_of_id[ids]).decode("utf-8", errors="replace")


def stdlib_sources() -> list[str]:
    """Paths of the standard library's `.py` files, sorted (installed packages excluded)."""
    root = sysconfig.get_paths()["stdlib"]
    paths = []
    for folder, subfolders, names in os.walk(root):
        subfolders[:] = sorted(d for d in subfolders if d not in _THIRD_PARTY)
        paths.extend(os.path.join(folder, n) for n in names if n.endswith(".py"))
    return sorted(paths)


def load_corpus(byte_budget: int) -> Corpus:
    """Reads standard-library sources up to `byte_budget` bytes and tokenises them by byte.

    Raises:
        SystemExit: fewer than 1024 bytes could be read (no standard library sources found).
    """
    chunks, size = [], 0
    for path in stdlib_sources():
        if size >= byte_budget:
            break
        try:
            with open(path, "rb") as f:
                data = f.read(byte_budget - size)
        except OSError:  # an unreadable file is skipped; the corpus stays deterministic
            continue
        chunks.append(data)
        size += len(data)
    text = np.frombuffer(b"".join(chunks), np.uint8)
    if text.size < 1024:
        raise SystemExit(f"only {text.size} bytes of standard-library sources found under "
                         f"{sysconfig.get_paths()['stdlib']}; the corpus needs at least 1024")
    byte_of_id = np.unique(text)
    id_of_byte = np.zeros(256, np.int32)
    id_of_byte[byte_of_id] = np.arange(len(byte_of_id), dtype=np.int32)
    vocab = -(-len(byte_of_id) // VOCAB_MULTIPLE) * VOCAB_MULTIPLE
    return Corpus(id_of_byte[text], byte_of_id, vocab, len(chunks))


def batches(corpus: Corpus, *, steps: int, batch: int, seq: int, seed: int):
    """Yields `steps` pairs (inputs, targets) of (batch, seq) int32 windows of the corpus.

    Window starts are drawn with a fixed seed, so every model sees the same batches; targets
    are the inputs shifted by one token (the next character).
    """
    if len(corpus.tokens) < seq + 2:
        raise SystemExit(f"the corpus has {len(corpus.tokens)} tokens, fewer than one window "
                         f"of seq {seq} + 1; raise --corpus-bytes")
    rng = np.random.default_rng(seed)
    offsets = np.arange(seq + 1)
    for _ in range(steps):
        starts = rng.integers(0, len(corpus.tokens) - seq - 1, size=batch)
        window = corpus.tokens[starts[:, None] + offsets]
        yield window[:, :-1], window[:, 1:]
