"""TMA tensor maps at lowering time: checked against the buffers they describe, then flattened
into the `tensor_maps` attribute of the `jtile_launch` custom call.

The launcher (`xla_ffi/tensor_maps.cc`) encodes each `jtile.codegen.TensorMapSpec` with
`cuTensorMapEncodeTiled` from the address of its buffer on every launch whose addresses
changed. The driver refuses a bad description only then, on the GPU, with a bare
`CUDA_ERROR_INVALID_VALUE`; the same rules are checked here, at `jax.jit` lowering time and on
any machine, so the common mistakes surface with the kernel's and the buffer's names.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from jtile.codegen import TMA_SWIZZLE_SPAN_BYTES, TensorMapSpec
from jtile.errors import JtileTargetError

__all__ = ["DATA_TYPES", "SWIZZLE_SPAN_BYTES", "check_tensor_maps", "flatten_tensor_maps"]

RECORD_LENGTH = TensorMapSpec.RECORD_LENGTH

# CUtensorMapDataType value -> (name, bytes per element); the whole-byte types only.
DATA_TYPES = {
    0: ("UINT8", 1), 1: ("UINT16", 2), 2: ("UINT32", 4), 3: ("INT32", 4), 4: ("UINT64", 8),
    5: ("INT64", 8), 6: ("FLOAT16", 2), 7: ("FLOAT32", 4), 8: ("FLOAT64", 8),
    9: ("BFLOAT16", 2), 10: ("FLOAT32_FTZ", 4), 11: ("TFLOAT32", 4), 12: ("TFLOAT32_FTZ", 4),
}
SWIZZLE_SPAN_BYTES = TMA_SWIZZLE_SPAN_BYTES
MAX_RANK = 5
MAX_DIM = 1 << 31
MAX_STRIDE = 1 << 40
MAX_BOX = 256


def _describe(index: int, spec: TensorMapSpec) -> str:
    name = DATA_TYPES.get(spec.dtype, (f"dtype {spec.dtype}",))[0]
    return (f"tensor map {index} ({name}, dims {list(spec.dims)}, byte strides "
            f"{list(spec.strides)}, box {list(spec.box)}, swizzle {spec.swizzle})")


def check_tensor_maps(kernel_name: str, specs: Sequence[TensorMapSpec],
                      buffers: Sequence[tuple]) -> None:
    """Checks each tensor map against the TMA rules and the buffer it describes.

    Dimensions are innermost first, as the driver takes them (see `TensorMapSpec`).

    Args:
        kernel_name: the kernel's name, for messages.
        specs: the kernel's tensor maps, in parameter order.
        buffers: `(name, shape, numpy dtype)` of every kernel parameter, inputs then outputs,
            shapes as launched (a vmap batch dimension included).

    Raises:
        JtileTargetError: a map breaks a rule: rank 1..5; dims 1..2^31; byte strides positive
            multiples of 16 below 2^40; box dims 1..256; inner box bytes a multiple of 16 and no
            more than the swizzle span; swizzle and L2 promotion values the driver knows; an
            element size equal to the buffer's; a footprint inside the buffer.
    """
    for index, spec in enumerate(specs):
        def refuse(rule: str, where: str = "") -> JtileTargetError:
            return JtileTargetError(f"{kernel_name}: {_describe(index, spec)}{where}: {rule}")

        if not 0 <= spec.param < len(buffers):
            raise refuse(f"buffer index {spec.param} does not name one of the kernel's "
                         f"{len(buffers)} buffers (inputs then outputs)")
        name, shape, dtype = buffers[spec.param]
        itemsize = np.dtype(dtype).itemsize
        where = f" of buffer {spec.param} '{name}' ({np.dtype(dtype).name}{list(shape)})"
        rank = spec.rank
        if not 1 <= rank <= MAX_RANK:
            raise refuse(f"rank {rank} is outside 1..{MAX_RANK}, the ranks TMA supports", where)
        if len(spec.box) != rank or len(spec.strides) != rank - 1:
            raise refuse(f"a rank-{rank} map needs {rank} box dims and {rank - 1} byte strides; "
                         f"got {len(spec.box)} and {len(spec.strides)}", where)
        if spec.dtype not in DATA_TYPES:
            raise refuse(f"data type {spec.dtype} is not a CUtensorMapDataType of whole bytes "
                         "(0..12)", where)
        type_name, element_bytes = DATA_TYPES[spec.dtype]
        if element_bytes != itemsize:
            raise refuse(f"{type_name} elements are {element_bytes} bytes but the buffer's are "
                         f"{itemsize}", where)
        if spec.swizzle not in SWIZZLE_SPAN_BYTES:
            raise refuse(f"swizzle {spec.swizzle} is not 0 (none), 1 (32B), 2 (64B) or 3 "
                         "(128B)", where)
        if spec.l2_promotion not in (0, 1, 2, 3):
            raise refuse(f"L2 promotion {spec.l2_promotion} is not 0 (none), 1 (64B), 2 (128B) "
                         "or 3 (256B)", where)
        for axis, extent in enumerate(spec.dims):
            if not 1 <= extent <= MAX_DIM:
                raise refuse(f"dimension {axis} has extent {extent}; global dims must be in "
                             "1..2^31", where)
        for axis, extent in enumerate(spec.box):
            if not 1 <= extent <= MAX_BOX:
                raise refuse(f"box dimension {axis} is {extent}; box dims must be in "
                             f"1..{MAX_BOX}", where)
        for axis, stride in enumerate(spec.strides, start=1):
            if stride <= 0 or stride % 16 or stride >= MAX_STRIDE:
                raise refuse(f"the byte stride of dimension {axis} is {stride}; global strides "
                             "must be positive multiples of 16 bytes below 2^40 (a row of a "
                             "TMA-copied tensor must be a multiple of 16 bytes long)", where)
        inner_bytes = spec.box[0] * element_bytes
        if inner_bytes % 16:
            raise refuse(f"the inner box dimension is {inner_bytes} bytes; it must be a "
                         "multiple of 16 bytes", where)
        span = SWIZZLE_SPAN_BYTES[spec.swizzle]
        if span and inner_bytes > span:
            raise refuse(f"the inner box dimension is {inner_bytes} bytes, more than the "
                         f"{span}-byte swizzle span", where)
        footprint = spec.dims[0] * element_bytes + sum(
            (extent - 1) * stride for extent, stride in zip(spec.dims[1:], spec.strides))
        size = int(np.prod(shape, dtype=np.int64)) * itemsize
        if footprint > size:
            raise refuse(f"the map spans {footprint} bytes but the buffer holds {size}", where)


def flatten_tensor_maps(specs: Sequence[TensorMapSpec]) -> np.ndarray:
    """The `tensor_maps` attribute: every spec's `record()`, concatenated, as int64.

    Empty (shape `(0,)`) for a kernel without tensor maps; XLA's FFI passes it as an empty
    array attribute.
    """
    values = [value for spec in specs for value in spec.record()]
    flat = np.asarray(values, dtype=np.int64).reshape(-1)
    if flat.size != RECORD_LENGTH * len(specs):  # a record() that broke the contract
        raise JtileTargetError(
            f"tensor map records hold {flat.size} values for {len(specs)} maps; each record "
            f"must hold {RECORD_LENGTH}")
    return flat
