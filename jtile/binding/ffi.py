"""The XLA FFI custom call that launches a compiled jtile kernel.

jtile's custom call target, ``jtile_launch``, is implemented in C++ by ``xla_ffi/launcher.cc``
and exposed by the ``jtile._jtile_ffi`` extension (``jtile_launch_cooperative`` is the same
handler for kernels with a grid barrier). A lowering rule emits it with the cubin, the
launch configuration and the static description of each TMA tensor map as attributes, so the
lowered HLO is self-contained: the persistent compilation cache and ``jax.export`` keep working,
and the handler needs no Python at run time. ``import jtile`` registers the target (nothing is
compiled), so a deserialised export runs in a fresh process.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Mapping, Sequence
from types import ModuleType
from typing import Any

import jax
import numpy as np

from jtile.binding.tensor_maps import check_tensor_maps, flatten_tensor_maps
from jtile.codegen import TensorMapSpec
from jtile.errors import JtileError

TARGET_NAME = "jtile_launch"
# The same handler for kernels with a grid barrier (T.sync_grid): launched cooperatively and
# outside XLA's command buffers.
COOPERATIVE_TARGET_NAME = "jtile_launch_cooperative"
# The FFI type of the handler's per-call-site state (its encoded tensor maps).
STATE_TYPE_NAME = "jtile_launch_state"

_register_lock = threading.Lock()
_registered = False
_stateful = False


def _extension() -> ModuleType:
    """Returns the compiled extension module.

    Raises:
        JtileError: The extension was not built (jtile was not installed with pip).
    """
    try:
        from jtile import _jtile_ffi
    except ImportError as error:
        try:
            # Bazel builds the extension at the workspace root (BUILD.bazel), not inside jtile/.
            import _jtile_ffi  # type: ignore[import-not-found,no-redef]
        except ImportError:
            raise JtileError(
                "jtile's XLA FFI extension (jtile._jtile_ffi) is not built; install jtile with "
                "`python3 -m pip install -e .` from the repository root"
            ) from error
    return _jtile_ffi


def register() -> None:
    """Registers the ``jtile_launch`` FFI target with JAX for the CUDA platform.

    Registers the handler's state type first, then the target with its instantiate, initialize
    and execute stages. Idempotent and thread-safe. Needs no GPU: on a CPU-only jaxlib JAX keeps
    both registrations until a CUDA plugin appears (types before targets), so calling this early
    is harmless.

    Raises:
        JtileError: The extension was not built.
    """
    global _registered, _stateful
    if _registered:
        return
    with _register_lock:
        if _registered:
            return
        extension = _extension()
        try:
            jax.ffi.register_ffi_type(STATE_TYPE_NAME, extension.state_type(), platform="CUDA")
            stateful = True
        except (AttributeError, TypeError, ValueError, RuntimeError):
            # A jax whose FFI type registration differs: the handler then runs without
            # per-call-site state, encoding tensor maps on every launch instead of caching them.
            stateful = False
        for name, stages in extension.registrations(stateful=stateful).items():
            jax.ffi.register_ffi_target(name, stages, platform="CUDA", api_version=1)
        _stateful = stateful
        _registered = True


def register_at_import() -> None:
    """`register()` for ``import jtile``: a missing extension is not an error yet.

    Interpret mode needs no extension, so importing jtile must not fail without one; the first
    compiled launch calls `register()` again, which then raises the error that says how to
    build it.
    """
    try:
        register()
    except JtileError:
        pass


def handler_is_stateful() -> bool:
    """Whether the registered handler keeps per-call-site state (cached tensor maps)."""
    return _stateful


def launcher_stats() -> dict:
    """The launcher's counters in this process.

    Returns:
        ``tensor_maps_encoded``: CUtensorMaps encoded (a launch whose buffers did not move adds
        none); ``functions_resolved_at_initialize`` / ``functions_resolved_at_execute``: call
        sites whose kernel function was looked up, its module loaded on first use in a context,
        at the FFI initialize stage (before any command-buffer capture) or only at execute.
    """
    return dict(_extension().launcher_stats())


def tensor_map_encode_count() -> int:
    """How many CUtensorMaps the launcher has encoded in this process."""
    return launcher_stats()["tensor_maps_encoded"]


def driver_version() -> int | None:
    """Returns the CUDA driver's version (e.g. ``13000``), or None when no driver can be loaded."""
    return _extension().driver_version()


def cuda_available() -> bool:
    """Returns whether JAX has a CUDA backend with at least one device."""
    try:
        return len(jax.devices("cuda")) > 0
    except (RuntimeError, ValueError):
        # A CPU-only jaxlib, or a CUDA plugin that found no GPU or no driver.
        return False


def _dim3(name: str, value: Sequence[int]) -> tuple[int, int, int]:
    dims = tuple(int(v) for v in value)
    if len(dims) != 3 or any(d < 1 for d in dims):
        raise JtileError(f"jtile_launch: {name} must be three positive integers; got {value!r}")
    return dims  # type: ignore[return-value]


def launch_lowering(
    ctx: Any,
    *args: Any,
    cubin: bytes,
    kernel_name: str,
    grid: tuple[int, int, int],
    block: tuple[int, int, int],
    cluster: tuple[int, int, int],
    shared_memory_bytes: int,
    input_output_aliases: Mapping[int, int] | None = None,
    tensor_maps: Sequence[TensorMapSpec] = (),
    buffer_names: Sequence[str] | None = None,
    cooperative: bool = False,
) -> Sequence[Any]:
    """Emits the ``jtile_launch`` custom call inside a JAX lowering rule.

    The kernel receives one pointer per operand, then one per result (``ctx.avals_out``), in
    order, then one ``const __grid_constant__ CUtensorMap`` per entry of `tensor_maps`,
    matching the generated signature ``extern "C" __global__ void NAME(T0* p0, ...,
    const __grid_constant__ CUtensorMap m0, ...)``. The launcher encodes each map from its
    buffer's address, again only when the addresses change.

    Args:
        ctx: The ``jax.interpreters.mlir.LoweringRuleContext`` of the rule being lowered.
        *args: The operands' MLIR values, the kernel's inputs.
        cubin: The compiled kernel image for the target GPU.
        kernel_name: The ``extern "C"`` name of the kernel inside the cubin.
        grid: Blocks per grid, ``(x, y, z)``.
        block: Threads per block, ``(x, y, z)``.
        cluster: Blocks per cluster, ``(x, y, z)``; ``(1, 1, 1)`` launches without clusters.
            Each grid dimension must be a multiple of the cluster's.
        shared_memory_bytes: Dynamic shared memory per block; the launcher opts in to it once
            per function (static plus dynamic shared memory above 48 KiB needs that).
        input_output_aliases: ``{input index: output index}`` for outputs that reuse an input's
            buffer, as in ``pallas_call``.
        tensor_maps: the kernel's TMA tensor maps (``GeneratedKernel.tensor_maps``), in
            parameter order; checked here against the buffers they describe.
        buffer_names: the kernel's parameter names, inputs then outputs, for messages.
        cooperative: the kernel holds a grid barrier (T.sync_grid): launch it cooperatively
            (``jtile_launch_cooperative``), with clusters refused.

    Returns:
        The custom call's results, one MLIR value per output.

    Raises:
        JtileError: A launch dimension is not three positive integers, or the shared memory size
            is negative.
        JtileTargetError: A tensor map breaks a TMA rule or does not fit its buffer.
    """
    register()
    grid = _dim3("grid", grid)
    block = _dim3("block", block)
    cluster = _dim3("cluster", cluster)
    for axis, (g, c) in enumerate(zip(grid, cluster)):
        if g % c:
            raise JtileError(
                f"{kernel_name}: grid dimension {axis} ({g}) is not a multiple of the cluster "
                f"dimension ({c})"
            )
    if shared_memory_bytes < 0:
        raise JtileError(f"{kernel_name}: shared_memory_bytes must be >= 0; got {shared_memory_bytes}")
    avals = list(ctx.avals_in) + list(ctx.avals_out)
    names = list(buffer_names) if buffer_names is not None else []
    names += [f"p{i}" for i in range(len(names), len(avals))]
    check_tensor_maps(kernel_name, tensor_maps,
                      [(name, tuple(aval.shape), aval.dtype) for name, aval in zip(names, avals)])
    if cooperative and cluster != (1, 1, 1):
        raise JtileError(f"{kernel_name}: a kernel with a grid barrier (T.sync_grid) cannot "
                         f"be launched in clusters; got cluster {cluster}")
    aliases = dict(input_output_aliases) if input_output_aliases else None
    rule = jax.ffi.ffi_lowering(COOPERATIVE_TARGET_NAME if cooperative else TARGET_NAME,
                                operand_output_aliases=aliases)
    return rule(
        ctx,
        *args,
        # The handler keys its per-context module cache by this hash, so a cubin is loaded
        # once per device however many custom calls carry it.
        cubin=np.frombuffer(cubin, dtype=np.uint8),
        module_hash=hashlib.sha256(cubin).hexdigest(),
        kernel_name=kernel_name,
        grid_x=grid[0],
        grid_y=grid[1],
        grid_z=grid[2],
        block_x=block[0],
        block_y=block[1],
        block_z=block[2],
        cluster_x=cluster[0],
        cluster_y=cluster[1],
        cluster_z=cluster[2],
        shared_memory_bytes=int(shared_memory_bytes),
        tensor_maps=flatten_tensor_maps(tensor_maps),
    )
