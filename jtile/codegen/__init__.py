"""CUDA code generation: a planned kernel to CUDA C++ source plus its launch configuration."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

INCLUDE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "include")


@dataclass(frozen=True)
class GeneratedKernel:
    """The CUDA source of one kernel and how to launch it."""

    source: str
    kernel_name: str
    grid: tuple             # (x, y, z) blocks, the vmap batch folded into z
    block: tuple            # (threads, 1, 1)
    cluster: tuple          # (1, 1, 1) unless the kernel asks for clusters
    shared_memory_bytes: int  # dynamic shared memory per block
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
