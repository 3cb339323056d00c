"""Every ``JTILE_*`` environment variable, declared once, typed, and read at call time.

This module is the only place in jtile that looks at the environment. Each variable is read when
its accessor is called rather than at import, so a test (or a user in a notebook) can change the
environment and see the effect without reloading jtile.
"""

from __future__ import annotations

import os
import pathlib
import warnings
from dataclasses import dataclass
from typing import Optional
from types import ModuleType

from jtile.errors import JtileError, JtilePerformanceWarning

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")
COMPILERS = ("auto", "nvrtc", "nvcc")


@dataclass(frozen=True)
class Variable:
    """One environment variable jtile understands.

    Attributes:
        name: The variable's name, e.g. ``JTILE_DEBUG``.
        doc: One line on what it does, shown in error messages and ``describe()``.
    """

    name: str
    doc: str

    def raw(self) -> str | None:
        """Returns the variable's value with surrounding blanks removed, or None when unset."""
        value = os.environ.get(self.name)
        return None if value is None else value.strip()


INTERPRET = Variable(
    "JTILE_INTERPRET",
    "Run every kernel with the JAX interpreter instead of compiling it.",
)
CACHE_DIR = Variable(
    "JTILE_CACHE_DIR",
    "Directory of the on-disk cubin cache; autotuning results live in its autotune/ folder.",
)
DISABLE_CACHE = Variable(
    "JTILE_DISABLE_CACHE",
    "Set to 1 to compile every kernel afresh and autotune afresh, bypassing the disk cache.",
)
COMPILER = Variable(
    "JTILE_COMPILER", "CUDA compiler to use: auto (NVRTC, else nvcc), nvrtc or nvcc."
)
DEBUG = Variable(
    "JTILE_DEBUG", "Print the IR and generated CUDA, and keep line info for profilers."
)
TARGET = Variable(
    "JTILE_TARGET",
    "GPU architecture to compile for instead of the local GPU, e.g. sm_90a.",
)

PERSISTENT = Variable(
    "JTILE_PERSISTENT",
    "Set to 1 to run every warp-specialised kernel whose tiles do equal work as a persistent "
    "tile loop (one block per SM), 0 to run none so. Unset, the compiler makes a GEMM main "
    "loop (one T.gemm per stage) persistent when its epilogue can leave through TMA stores of "
    "two column panels at a time beside the full stage ring: on an H200 that ran 128x256 "
    "GEMMs 0.2-3.6% faster than one block per tile; attention measured no faster.",
)

TMA_STORE = Variable(
    "JTILE_TMA_STORE",
    "Set to 0 to write staged epilogues (a fragment stored through a shared tile) with the "
    "block's threads in 16-byte vectors instead of TMA stores on sm_90+. On by default: on an "
    "H200 the TMA-stored GEMMs measured 0-5% faster (one shape 1% slower, within noise).",
)

PINGPONG = Variable(
    "JTILE_PINGPONG",
    "Set to 1 to make a warp-specialised kernel's consumer warpgroups take turns at the first "
    "gemm of a ring whose body does other work between gemms (ping-pong: one group's softmax "
    "overlaps the other's gemms). Off by default: on an H200 it measured within noise of "
    "letting each group issue whenever it is ready.",
)

OVERLAP_GEMMS = Variable(
    "JTILE_OVERLAP_GEMMS",
    "Set to 0 to keep the second gemm of a two-gemm ring body (attention's O += P V) in its "
    "own iteration. By default it is issued one iteration late, overlapped with the next "
    "iteration's element-wise work (the softmax), where the ring has three stages or more, "
    "the softmax is long enough and the registers allow (passes/overlap_gemms.py): on an "
    "H200 head dim 64 attention with 128-key tiles ran 7% faster (full) and 1% (causal).",
)

OVERLAP_COPIES = Variable(
    "JTILE_OVERLAP_COPIES",
    "1 or 2: the register copies of P in the overlapped schedule of JTILE_OVERLAP_GEMMS. "
    "Unset: two where they fit the registers and the ring has three stages or more (P is "
    "refilled while the late gemm still reads the other copy), else one where the ring has "
    "three stages (P is refilled after that gemm is done), else no overlap. 1 also applies "
    "to rings of two stages.",
)

FOLD_ACCUMULATOR_CLEARS = Variable(
    "JTILE_FOLD_ACCUMULATOR_CLEARS",
    "Set to 0 to keep a T.clear of an accumulator as its own statement before the T.gemm "
    "into it. By default the gemm starts from zero itself (wgmma's scale-d; "
    "passes/fold_accumulator_clears.py), so the accumulator's old value is not kept alive.",
)

LATE_WGMMA_WAITS = Variable(
    "JTILE_LATE_WGMMA_WAITS",
    "Set to 0 to wait for every wgmma group of a ring body right after issuing it. By "
    "default, in a ring body of three gemms or more, each group is waited for just before the "
    "first statement that needs it (passes/late_wgmma_waits.py), so it runs beside the work "
    "in between (benchmarks/bench_attention_tiles.py --backward-variants is the A/B).",
)

PRODUCER_REGISTERS = Variable(
    "JTILE_PRODUCER_REGISTERS",
    "Registers per thread the producer warpgroup of a warp-specialised kernel keeps after "
    "setmaxnreg (24 to 256, a multiple of 8; default 24); the consumer warpgroups share the "
    "rest, up to 240 each (two consumer warpgroups get 240).",
)

VARIABLES = (INTERPRET, CACHE_DIR, DISABLE_CACHE, COMPILER, DEBUG, TARGET, PERSISTENT,
             TMA_STORE, PINGPONG, OVERLAP_GEMMS, OVERLAP_COPIES, FOLD_ACCUMULATOR_CLEARS,
             LATE_WGMMA_WAITS,
             PRODUCER_REGISTERS)


def _flag(variable: Variable, default: bool = False) -> bool:
    value = variable.raw()
    if value is None:
        return default
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise JtileError(
        f"{variable.name}={value!r} is not a boolean; use one of {', '.join(_TRUE)} to turn it on "
        f"or {', '.join(v for v in _FALSE if v)} (or leave it unset) to turn it off. "
        f"({variable.name}: {variable.doc})"
    )


def interpret() -> bool:
    """Whether kernels run in interpret mode (``JTILE_INTERPRET``, default off)."""
    return _flag(INTERPRET)


def persistent_tiles() -> Optional[bool]:
    """Whether the compiler runs eligible kernels as persistent tile loops
    (``JTILE_PERSISTENT``); None when unset: the compiler decides (`schedule_tiles`)."""
    if PERSISTENT.raw() is None:
        return None
    return _flag(PERSISTENT)


def tma_stores() -> bool:
    """Whether staged epilogues are written with TMA stores (``JTILE_TMA_STORE``, default
    on)."""
    return _flag(TMA_STORE, default=True)


def pingpong() -> bool:
    """Whether consumer warpgroups take turns at a ring's first gemm (``JTILE_PINGPONG``,
    default off)."""
    return _flag(PINGPONG)


def producer_registers() -> int:
    """Registers the producer warpgroup keeps (``JTILE_PRODUCER_REGISTERS``, default 24)."""
    value = PRODUCER_REGISTERS.raw()
    if value is None or value == "":
        return 24
    try:
        registers = int(value)
    except ValueError:
        registers = -1
    if not 24 <= registers <= 256 or registers % 8:
        raise JtileError(f"{PRODUCER_REGISTERS.name}={value!r} is not a register count: use a "
                         f"multiple of 8 from 24 to 256. ({PRODUCER_REGISTERS.name}: "
                         f"{PRODUCER_REGISTERS.doc})")
    return registers


def overlap_gemms() -> bool:
    """Whether a ring's second gemm overlaps the next iteration's work
    (``JTILE_OVERLAP_GEMMS``, default on where it applies)."""
    return _flag(OVERLAP_GEMMS, default=True)


def overlap_copies():
    """The register copies of P the overlapped schedule must use (``JTILE_OVERLAP_COPIES``:
    1 or 2), or None to let the pass choose."""
    value = OVERLAP_COPIES.raw()
    if value is None or value == "":
        return None
    if value not in ("1", "2"):
        raise JtileError(f"{OVERLAP_COPIES.name}={value!r} is not a copy count: use 1 or 2. "
                         f"({OVERLAP_COPIES.name}: {OVERLAP_COPIES.doc})")
    return int(value)


def fold_accumulator_clears() -> bool:
    """Whether T.clear before a T.gemm into the same accumulator folds into the gemm
    (``JTILE_FOLD_ACCUMULATOR_CLEARS``, default on)."""
    return _flag(FOLD_ACCUMULATOR_CLEARS, default=True)


def late_wgmma_waits() -> bool:
    """Whether wgmma groups are waited for where first needed (``JTILE_LATE_WGMMA_WAITS``,
    default on)."""
    return _flag(LATE_WGMMA_WAITS, default=True)


def debug() -> bool:
    """Whether debug output is on (``JTILE_DEBUG``, default off)."""
    return _flag(DEBUG)


_NO_CACHE_LOCATION = (
    f"{CACHE_DIR.name} is unset and platformdirs is not installed (an install made with "
    f"--no-deps), so jtile has no cubin cache directory; `pip install platformdirs` or set "
    f"{CACHE_DIR.name}."
)


def cache_enabled() -> bool:
    """Whether the on-disk cubin cache is used.

    Off when ``JTILE_DISABLE_CACHE`` is true, and also, with a ``JtilePerformanceWarning``, when
    there is no directory to put it in (``JTILE_CACHE_DIR`` unset and platformdirs missing):
    kernels still compile, each process afresh.
    """
    if _flag(DISABLE_CACHE):
        return False
    if CACHE_DIR.raw() or _platformdirs() is not None:
        return True
    warnings.warn(_NO_CACHE_LOCATION, JtilePerformanceWarning, stacklevel=2)
    return False


def cache_dir() -> pathlib.Path:
    """The cubin cache directory: ``JTILE_CACHE_DIR``, else platformdirs' user cache directory.

    The default comes from ``platformdirs.user_cache_dir("jtile")`` alone (on Linux
    ``$XDG_CACHE_HOME/jtile`` or ``~/.cache/jtile``), so jtile agrees with every other tool that
    asks platformdirs.

    Raises:
        JtileError: If ``JTILE_CACHE_DIR`` is unset and platformdirs is not installed.
    """
    value = CACHE_DIR.raw()
    if value:
        return pathlib.Path(value).expanduser()
    platformdirs = _platformdirs()
    if platformdirs is None:
        raise JtileError(f"{_NO_CACHE_LOCATION} ({CACHE_DIR.name}: {CACHE_DIR.doc})")
    return pathlib.Path(platformdirs.user_cache_dir("jtile"))


def _platformdirs() -> ModuleType | None:
    # A declared dependency; only an install made with --no-deps (an offline GPU host) lacks it.
    try:
        import platformdirs
    except ImportError:
        return None
    return platformdirs


def compiler() -> str:
    """The CUDA compiler choice (``JTILE_COMPILER``): ``"auto"``, ``"nvrtc"`` or ``"nvcc"``."""
    value = COMPILER.raw()
    if not value:
        return "auto"
    lowered = value.lower()
    if lowered not in COMPILERS:
        raise JtileError(
            f"{COMPILER.name}={value!r} is not a known compiler; use one of {', '.join(COMPILERS)}. "
            f"({COMPILER.name}: {COMPILER.doc})"
        )
    return lowered


def target_override() -> str | None:
    """The architecture forced by ``JTILE_TARGET`` (e.g. ``"sm_90a"``), or None when unset.

    The text is returned as given; ``jtile.compiler.target.parse_target`` validates it, so a bad
    value is reported together with the list of supported architectures.
    """
    value = TARGET.raw()
    return value or None


def describe() -> str:
    """Returns one line per variable with its current value, for bug reports."""
    lines = []
    for variable in VARIABLES:
        value = os.environ.get(variable.name)
        shown = "<unset>" if value is None else repr(value)
        lines.append(f"{variable.name}={shown}  # {variable.doc}")
    return "\n".join(lines)
