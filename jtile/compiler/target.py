"""GPU targets: which architecture a kernel is compiled for, and what that architecture offers.

A ``Target`` answers the questions the passes ask before they choose an instruction ("may I use
TMA?", "how much shared memory may one block have?"), so a kernel that needs something the
target lacks is refused with a clear error before any CUDA is compiled.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

from jtile import config
from jtile.errors import JtileTargetError

# Architectures NVRTC 13 accepts for cubin output; sm_70 and older were dropped by CUDA 13.
SUPPORTED_ARCHS: tuple[tuple[int, int], ...] = (
    (7, 5),
    (8, 0),
    (8, 6),
    (8, 7),
    (8, 8),
    (8, 9),
    (9, 0),
    (10, 0),
    (10, 3),
    (11, 0),
    (12, 0),
    (12, 1),
)
# Arch-specific ("a") variants only exist from Hopper on; their instructions (wgmma, tcgen05,
# setmaxnreg, ...) run on that exact chip and nowhere else.
_FIRST_ARCH_SPECIFIC_MAJOR = 9

# Largest dynamic shared memory one block may opt in to (cudaFuncAttributeMaxDynamicShared-
# MemorySize), from the CUDA programming guide's per-compute-capability table: the SM's shared
# memory less the 1 KB the driver reserves per block.
_MAX_SHARED_MEMORY_PER_BLOCK = {
    (7, 5): 65536,
    (8, 0): 166912,
    (8, 6): 101376,
    (8, 7): 166912,  # Orin keeps A100's 164 KB shared memory per SM.
    (8, 8): 101376,
    (8, 9): 101376,
    (9, 0): 232448,
    (10, 0): 232448,
    (10, 3): 232448,
    (11, 0): 232448,
    (12, 0): 101376,
    (12, 1): 101376,
}

_ARCH_PATTERN = re.compile(r"^(?:sm_?)?(\d{2,3})(a?)$")


@dataclass(frozen=True)
class Target:
    """A GPU architecture to compile for.

    Attributes:
        arch: The name nvcc and NVRTC take, e.g. ``"sm_80"``, ``"sm_90a"``, ``"sm_100a"``.
        major: Compute capability major version (9 for Hopper).
        minor: Compute capability minor version.
        arch_specific: Whether this is the ``a`` variant, which unlocks instructions that run
            only on this exact chip (wgmma on sm_90a, tcgen05 on sm_100a) at the price of
            forward compatibility.
        sm_count: The streaming multiprocessors of the GPU the code will run on, when known
            (the local GPU's, for ``default_target``): a persistent kernel launches that many
            blocks. It never changes the generated code, only the launch.
    """

    arch: str
    major: int
    minor: int
    arch_specific: bool
    sm_count: int | None = None

    @property
    def capability(self) -> tuple[int, int]:
        """The compute capability as a ``(major, minor)`` tuple, for ordered comparisons."""
        return (self.major, self.minor)

    @property
    def compute_arch(self) -> str:
        """The virtual architecture name, e.g. ``"compute_90a"`` (nvcc's ``-gencode arch=``)."""
        return "compute_" + self.arch[len("sm_") :]

    @property
    def has_ldmatrix(self) -> bool:
        """``ldmatrix.sync`` (shared memory to mma fragments): sm_75 and later."""
        return self.capability >= (7, 5)

    @property
    def has_cp_async(self) -> bool:
        """``cp.async`` (asynchronous global to shared copies, no register staging): sm_80+."""
        return self.capability >= (8, 0)

    @property
    def has_mma_sync_bf16(self) -> bool:
        """``mma.sync.aligned.m16n8k16`` with bf16 inputs: sm_80 and later."""
        return self.capability >= (8, 0)

    @property
    def has_mbarrier(self) -> bool:
        """Transaction-counting ``mbarrier`` (``expect_tx``, ``try_wait.parity``): sm_90+.

        sm_80 has a basic mbarrier, but jtile uses it only with TMA, which needs the sm_90 form.
        """
        return self.capability >= (9, 0)

    @property
    def has_tma(self) -> bool:
        """The Tensor Memory Accelerator (``cp.async.bulk.tensor``): sm_90 and later."""
        return self.capability >= (9, 0)

    @property
    def has_clusters(self) -> bool:
        """Thread block clusters and distributed shared memory: sm_90 and later."""
        return self.capability >= (9, 0)

    @property
    def has_wgmma(self) -> bool:
        """Warpgroup MMA (``wgmma.mma_async``): sm_90a only; Blackwell replaced it by tcgen05."""
        return self.capability == (9, 0) and self.arch_specific

    @property
    def has_tcgen05(self) -> bool:
        """Fifth-generation tensor core instructions (``tcgen05.mma``): sm_100a, sm_103a, sm_110a.

        Consumer Blackwell (sm_120) lacks them, and they need the arch-specific variant.
        """
        return self.arch_specific and self.major in (10, 11)

    @property
    def has_tmem(self) -> bool:
        """Tensor memory (``tcgen05.alloc``, 128 lanes x 512 columns of 32 bits per SM)."""
        return self.has_tcgen05

    @property
    def max_shared_memory_per_block(self) -> int:
        """Bytes of shared memory one block may use after opting in to the maximum."""
        return _MAX_SHARED_MEMORY_PER_BLOCK[self.capability]

    @property
    def static_shared_memory_limit(self) -> int:
        """Bytes of statically declared ``__shared__`` memory; more must be dynamic (48 KB)."""
        return 49152

    def __str__(self) -> str:
        return self.arch


def supported_archs() -> tuple[str, ...]:
    """Returns the names of every architecture jtile compiles for, oldest first."""
    names = []
    for major, minor in SUPPORTED_ARCHS:
        names.append(f"sm_{major}{minor}")
        if major >= _FIRST_ARCH_SPECIFIC_MAJOR:
            names.append(f"sm_{major}{minor}a")
    return tuple(names)


def _unsupported(text: object, why: str) -> JtileTargetError:
    return JtileTargetError(
        f"target {text!r} is not supported: {why}. Supported targets: "
        f"{', '.join(supported_archs())} (also written as '90a' or (9, 0))."
    )


def make_target(major: int, minor: int, arch_specific: bool = False) -> Target:
    """Builds a validated ``Target`` from a compute capability.

    Args:
        major: Compute capability major version.
        minor: Compute capability minor version.
        arch_specific: Whether to use the ``a`` variant (Hopper and later only).

    Raises:
        JtileTargetError: If NVRTC 13 cannot compile for that architecture.
    """
    name = f"sm_{major}{minor}{'a' if arch_specific else ''}"
    if (major, minor) not in SUPPORTED_ARCHS:
        why = (
            "CUDA 13 dropped architectures before sm_75"
            if (major, minor) < (7, 5)
            else "unknown architecture"
        )
        raise _unsupported(name, why)
    if arch_specific and major < _FIRST_ARCH_SPECIFIC_MAJOR:
        raise _unsupported(name, "arch-specific 'a' variants start at sm_90a")
    return Target(arch=name, major=major, minor=minor, arch_specific=arch_specific)


def parse_target(spec: str | tuple[int, int] | Target) -> Target:
    """Turns a user's description of an architecture into a ``Target``.

    Args:
        spec: ``"sm_90a"``, ``"sm90a"``, ``"90a"``, ``"sm_80"``, a ``(major, minor)`` tuple (which
            picks the ``a`` variant on sm_90 and sm_100-class chips, like ``default_target``),
            or a ``Target``, returned unchanged.

    Returns:
        The validated target.

    Raises:
        JtileTargetError: If the text is malformed or names an architecture NVRTC 13 rejects.
    """
    if isinstance(spec, Target):
        return spec
    if isinstance(spec, tuple):
        if len(spec) != 2 or not all(isinstance(v, int) for v in spec):
            raise _unsupported(spec, "a tuple must be (major, minor) integers")
        major, minor = spec
        return make_target(
            major, minor, arch_specific=_prefers_arch_specific(major, minor)
        )
    if not isinstance(spec, str):
        raise _unsupported(
            spec, f"expected a string such as 'sm_90a', got {type(spec).__name__}"
        )
    match = _ARCH_PATTERN.match(spec.strip().lower())
    if match is None:
        raise _unsupported(spec, "expected the form sm_XY or sm_XYa")
    digits, suffix = match.groups()
    major, minor = int(digits[:-1]), int(digits[-1])
    return make_target(major, minor, arch_specific=suffix == "a")


def _prefers_arch_specific(major: int, minor: int) -> bool:
    # Hopper's and datacenter Blackwell's best instructions (wgmma, tcgen05, TMA multicast) exist
    # only in the "a" variant, and a cubin runs on its exact chip anyway.
    return (major, minor) in ((9, 0), (10, 0), (10, 3), (11, 0))


def default_target() -> Target:
    """Returns the target to compile for when the caller names none.

    ``JTILE_TARGET`` wins; otherwise the first local CUDA GPU as JAX sees it, using the ``a``
    variant on sm_90 and sm_100-class chips.

    Raises:
        JtileTargetError: If no target is forced and JAX sees no CUDA GPU.
    """
    override = config.target_override()
    if override is not None:
        return parse_target(override)
    local = _local_gpu()
    if local is None:
        raise JtileTargetError(
            "no CUDA GPU was found to compile for; pass target= (e.g. target='sm_90a') or set "
            "JTILE_TARGET=sm_90a to compile without a GPU."
        )
    capability, sm_count = local
    return dataclasses.replace(parse_target(capability), sm_count=sm_count)


def _local_gpu() -> tuple[tuple[int, int], int | None] | None:
    """The first local CUDA GPU's compute capability and SM count, as JAX reports them."""
    import jax

    try:
        devices = jax.devices("gpu")
    except RuntimeError:  # jax raises this when no GPU backend is present.
        return None
    for device in devices:
        text = getattr(device, "compute_capability", None)
        if text:
            major, _, minor = str(text).partition(".")
            sm_count = getattr(device, "core_count", None)
            return (int(major), int(minor or 0)), (int(sm_count) if sm_count else None)
    return None
