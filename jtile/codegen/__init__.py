"""CUDA code generation: a planned kernel to CUDA C++ source plus its launch configuration."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

INCLUDE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "include")


# CUtensorMapSwizzle value -> bytes of one swizzle span (0: no swizzle).
TMA_SWIZZLE_SPAN_BYTES = {0: 0, 1: 32, 2: 64, 3: 128}


@dataclass(frozen=True)
class TensorMapSpec:
    """A TMA tensor map the launcher encodes per launch (cuTensorMapEncodeTiled) from the
    address of one kernel parameter; it is passed after the buffers as a
    `const __grid_constant__ CUtensorMap`.

    Every tuple is innermost dimension first, as the driver takes them.

    Attributes:
        param: index of the buffer parameter (inputs then outputs) the map describes.
        dtype: CUtensorMapDataType value (e.g. 6 = FLOAT16, 9 = BFLOAT16, 0 = UINT8).
        dims: global extent of each dimension, in elements.
        strides: byte stride of dimensions 1..rank-1 (dimension 0 is contiguous).
        box: the tile one copy moves, in elements per dimension.
        swizzle: CUtensorMapSwizzle value (0 none, 1 = 32 B, 2 = 64 B, 3 = 128 B).
        l2_promotion: CUtensorMapL2promotion value (0 none, 1 = 64 B, 2 = 128 B, 3 = 256 B).
    """

    param: int
    dtype: int
    dims: tuple
    strides: tuple
    box: tuple
    swizzle: int = 0
    l2_promotion: int = 2

    RECORD_LENGTH = 25

    @property
    def rank(self) -> int:
        return len(self.dims)

    def record(self) -> tuple:
        """The fixed-length int64 record the custom call carries (RECORD_LENGTH values):
        param, dtype, rank, swizzle, l2_promotion, 0 (interleave), dims[5], strides[4]
        (dimensions 1..4), box[5], element strides[5] (all 1)."""
        pad = lambda values, n: tuple(values) + (0,) * (n - len(values))  # noqa: E731
        return ((self.param, self.dtype, self.rank, self.swizzle, self.l2_promotion, 0)
                + pad(self.dims, 5) + pad(self.strides, 4) + pad(self.box, 5)
                + pad((1,) * self.rank, 5))


@dataclass(frozen=True)
class GeneratedKernel:
    """The CUDA source of one kernel and how to launch it."""

    source: str
    kernel_name: str
    grid: tuple             # (x, y, z) blocks, the vmap batch folded into z
    block: tuple            # (threads, 1, 1)
    cluster: tuple          # (1, 1, 1) unless the kernel asks for clusters
    shared_memory_bytes: int  # dynamic shared memory per block
    tensor_maps: tuple = ()   # TensorMapSpec per CUtensorMap parameter, in parameter order
    cooperative: bool = False  # T.sync_grid: launched cooperatively, every block resident
    include_dirs: tuple = (INCLUDE_DIR,)


def generate(kernel, target, *, batch: int = 1, batched: Optional[tuple] = None) -> GeneratedKernel:
    """Generates CUDA for a kernel that went through `jtile.passes.run_passes`.

    Args:
        kernel: the planned kernel.
        target: the `jtile.compiler.target.Target` to generate for.
        batch: how many independent instances one launch runs (vmap folded into the grid).
        batched: per parameter (inputs then outputs), whether it has the leading batch
            dimension; outputs always do when batch > 1.
    """
    from jtile.codegen.cuda import generate_cuda

    return generate_cuda(kernel, target, batch=batch, batched=batched)
