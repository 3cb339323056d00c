"""`T.Kernel` and the block/thread indices it binds."""

from __future__ import annotations

import numpy as np

from jtile.ir.nodes import BinOp, Expr, VarKind, as_expr
from jtile.trace.builder import current
from jtile.trace.source import caller_location

MAX_THREADS = 1024


def _static_positive(value, what: str, builder, loc) -> int:
    if isinstance(value, Expr) or isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise builder.error(f"{what} must be a static Python int (shapes are static), got "
                            f"{value!r}", loc, op="T.Kernel")
    if value <= 0:
        raise builder.error(f"{what} must be positive, got {value}", loc, op="T.Kernel")
    return int(value)


def open_kernel(builder, grid, threads, loc):
    """Binds the launch shape and the block/thread variables (shared by T.Kernel and grid=)."""
    if builder.grid is not None:
        raise builder.error("a kernel opens `with T.Kernel(...)` once; nested or repeated "
                            "kernels are not supported", loc, op="T.Kernel")
    if not 1 <= len(grid) <= 3:
        raise builder.error(f"the grid has {len(grid)} dimensions; 1 to 3 are supported", loc,
                            op="T.Kernel")
    if isinstance(threads, (list, tuple)):
        if len(threads) != 1:
            raise builder.error(f"threads={tuple(threads)}: only 1-D thread blocks are supported",
                                loc, op="T.Kernel")
        threads = threads[0]
    grid = tuple(_static_positive(g, f"grid extent {i}", builder, loc) for i, g in enumerate(grid))
    threads = _static_positive(threads, "threads", builder, loc)
    if threads % 32 or threads > MAX_THREADS:
        raise builder.error(f"threads={threads} must be a multiple of 32 (whole warps) and at "
                            f"most {MAX_THREADS}", loc, op="T.Kernel")
    builder.grid = grid
    builder.threads = threads
    names = ("bx", "by", "bz")
    builder.block_vars = tuple(builder.new_var(names[i], VarKind.BLOCK, i) for i in range(len(grid)))
    builder.thread_var = builder.new_var("tx", VarKind.THREAD)


class Kernel:
    """Opens the kernel: `with T.Kernel(gx[, gy[, gz]], threads=128) as bx:` (or `(bx, by)`).

    The grid extents are static ints; each block runs the body with its own block index.
    `threads` is the number of threads of a block: a multiple of 32, at most 1024.
    """

    def __init__(self, *grid, threads=128, prelude=None, cluster_dims=None):
        self._loc = caller_location()
        self._builder = current("T.Kernel")
        self._grid = grid
        self._threads = threads
        self._block = None

    def __enter__(self):
        builder = self._builder
        open_kernel(builder, self._grid, self._threads, self._loc)
        self._block = builder.block()
        self._body = self._block.__enter__()
        vars_ = builder.block_vars
        return vars_[0] if len(vars_) == 1 else vars_

    def __exit__(self, exc_type, exc, tb):
        self._block.__exit__(exc_type, exc, tb)
        if exc_type is None:
            self._builder.kernel_body = tuple(self._body)
        return False


def program_id(axis: int = 0) -> Expr:
    """The block index along `axis` (0, 1 or 2)."""
    builder = current("T.program_id")
    loc = caller_location()
    if builder.grid is None:
        raise builder.error("T.program_id needs an open kernel (grid= or T.Kernel)", loc)
    if not 0 <= axis < len(builder.block_vars):
        raise builder.error(f"T.program_id({axis}): the grid has {len(builder.block_vars)} "
                            "dimensions", loc)
    return builder.block_vars[axis]


def get_block_binding(dim: int = 0) -> Expr:
    """TileLang's name for `program_id`."""
    return program_id(dim)


def get_thread_binding(dim: int = 0) -> Expr:
    """The thread's index in its block (blocks are 1-D, so only dim 0)."""
    builder = current("T.get_thread_binding")
    loc = caller_location()
    if builder.thread_var is None:
        raise builder.error("T.get_thread_binding needs an open kernel", loc)
    if dim != 0:
        raise builder.error(f"T.get_thread_binding({dim}): thread blocks are 1-D", loc)
    return builder.thread_var


def ceildiv(a, b):
    """`(a + b - 1) // b`; a Python int when both are ints (grid extents stay static)."""
    if isinstance(a, (int, np.integer)) and isinstance(b, (int, np.integer)):
        return -(-int(a) // int(b))
    a, b = as_expr(a), as_expr(b)
    return BinOp("floordiv", a + b - 1, b, a.dtype)
