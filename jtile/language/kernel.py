"""`T.Kernel` and the block/thread indices it binds."""

from __future__ import annotations

import numpy as np

from jtile.ir.nodes import BinOp, Expr, VarKind, as_expr
from jtile.trace.builder import current
from jtile.trace.kernel_sequence import close_kernel
from jtile.trace.source import caller_location

MAX_THREADS = 1024
# Blocks smaller than a warp, as TileLang allows for small SIMT kernels: every lane a tile
# layout uses exists. T.gemm (warp-wide mma.sync / wgmma) still needs whole warps.
PARTIAL_WARP_THREADS = (1, 2, 4, 8, 16)


def _static_positive(value, what: str, builder, loc) -> int:
    if isinstance(value, Expr) or isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise builder.error(f"{what} must be a static Python int (shapes are static), got "
                            f"{value!r}", loc, op="T.Kernel")
    if value <= 0:
        raise builder.error(f"{what} must be positive, got {value}", loc, op="T.Kernel")
    return int(value)


def open_kernel(builder, grid, threads, loc):
    """Binds the launch shape and the block/thread variables (shared by T.Kernel and grid=)."""
    from jtile.language.allocate import settle_output_shapes

    settle_output_shapes(builder)
    if builder.grid is not None:
        if builder.kernel_body is None:
            how = ("jtile.pallas_like(grid=...) already opens the kernel around the whole body"
                   if builder.implicit_grid else "it is inside another `with T.Kernel(...)`")
            raise builder.error(f"nested kernels are not supported: {how}. Kernels run one "
                                "after another: open each `with T.Kernel(...)` after the "
                                "previous one ends", loc, op="T.Kernel")
        # A second block after the first ended: a second launch (jtile.trace.kernel_sequence).
        close_kernel(builder)
    if not 1 <= len(grid) <= 3:
        raise builder.error(f"the grid has {len(grid)} dimensions; 1 to 3 are supported", loc,
                            op="T.Kernel")
    if threads is None:
        threads = 128  # TileLang's default
    extents = ()
    if isinstance(threads, (list, tuple)):
        # TileLang pads (x,) and (x, y) to (x, y, 1). A multi-dimensional block runs as a 1-D
        # one of x*y*z threads, x fastest as in CUDA; T.get_thread_binding(d) unflattens it.
        if not 1 <= len(threads) <= 3:
            raise builder.error(f"threads={tuple(threads)} must have 1 to 3 extents", loc,
                                op="T.Kernel")
        extents = tuple(_static_positive(t, f"threads extent {i}", builder, loc)
                        for i, t in enumerate(threads))
        threads = int(np.prod(extents))
        if all(t == 1 for t in extents[1:]):
            extents = ()
    grid = tuple(_static_positive(g, f"grid extent {i}", builder, loc) for i, g in enumerate(grid))
    threads = _static_positive(threads, "threads", builder, loc)
    if threads > MAX_THREADS or (threads % 32 and threads not in PARTIAL_WARP_THREADS):
        raise builder.error(
            f"threads={threads}: a block is whole warps (a multiple of 32, at most "
            f"{MAX_THREADS}) or one partial warp of 1, 2, 4, 8 or 16 threads; jtile spreads "
            "tiles over a power-of-two number of lanes, and a warp that holds fewer threads "
            "than the lanes it is given cannot take part in their shuffles", loc, op="T.Kernel")
    builder.grid = grid
    builder.kernel_loc = loc
    builder.threads = threads
    names = ("bx", "by", "bz")
    builder.block_vars = tuple(builder.new_var(names[i], VarKind.BLOCK, i) for i in range(len(grid)))
    builder.thread_var = builder.new_var("tx", VarKind.THREAD)
    builder.thread_extents = extents


def _cluster_dims(value, grid, builder, loc):
    """TileLang's cluster_dims (an int or up to 3 ints) as (x, y, z); None when (1, 1, 1)."""
    if value is None:
        return None
    dims = list(value) if isinstance(value, (list, tuple)) else [value]
    if not 1 <= len(dims) <= 3:
        raise builder.error(f"cluster_dims={value!r} must have 1 to 3 extents", loc,
                            op="T.Kernel")
    dims = [_static_positive(d, "a cluster_dims extent", builder, loc) for d in dims]
    dims += [1] * (3 - len(dims))
    if dims == [1, 1, 1]:
        return None
    padded = tuple(grid) + (1,) * (3 - len(grid))
    for axis, (c, g) in enumerate(zip(dims, padded)):
        if g % c:
            raise builder.error(f"cluster_dims={tuple(dims)} does not divide the grid "
                                f"{tuple(grid)} along axis {'xyz'[axis]} ({g} % {c} != 0); "
                                "every cluster must be whole", loc, op="T.Kernel")
    if dims[0] * dims[1] * dims[2] > MAX_PORTABLE_CLUSTER:
        raise builder.error(f"cluster_dims={tuple(dims)} has {dims[0] * dims[1] * dims[2]} "
                            f"blocks; at most {MAX_PORTABLE_CLUSTER} (the portable cluster "
                            "size) are supported", loc, op="T.Kernel")
    return tuple(dims)


# CUDA guarantees clusters of up to 8 blocks; larger ones need a non-portable opt-in.
MAX_PORTABLE_CLUSTER = 8


class Kernel:
    """Opens the kernel: `with T.Kernel(gx[, gy[, gz]], threads=128) as bx:` (or `(bx, by)`).

    The grid extents are static ints; each block runs the body with its own block index.
    `threads` is the number of threads of a block: a multiple of 32, at most 1024, or a single
    partial warp of 1, 2, 4, 8 or 16 threads (no T.gemm there: it needs whole warps); a tuple
    `(x, y[, z])` whose product is that number gives a multi-dimensional block, indexed with
    `T.get_thread_binding(dim)`.
    `cluster_dims` (an int or up to 3 ints, sm_90+) groups blocks into thread-block clusters
    that are co-scheduled on one GPC; each must divide the grid, at most 8 blocks per cluster.
    The launch sets the cluster dimension; in interpret mode clusters change nothing.
    `prelude` (raw C code injected before the kernel) is refused: write the code with T ops.

    A function may open several blocks one after another (not one inside another): each is
    its own launch, in program order, and sees what the earlier ones wrote to global memory
    (outputs and `T.alloc_global` workspaces; `jtile.trace.kernel_sequence`). On-chip buffers
    and block/thread indices belong to their block.
    """

    def __init__(self, *grid, threads=None, prelude=None, cluster_dims=None, is_cpu=False,
                 **unknown):
        self._loc = caller_location()
        self._builder = current("T.Kernel")
        if unknown:
            raise self._builder.error(
                f"T.Kernel({', '.join(f'{k}=' for k in unknown)}...): jtile's T.Kernel takes the "
                "grid extents, threads= and cluster_dims= (TileLang's prelude= and is_cpu= are "
                "refused by name); other arguments of newer TileLang releases are not "
                "supported", self._loc, op="T.Kernel")
        self._grid = grid
        self._threads = threads
        self._cluster_dims = cluster_dims
        self._block = None
        if prelude is not None:
            raise self._builder.error(
                "T.Kernel(prelude=...) injects raw C source before the kernel; jtile generates "
                "all of the kernel's code itself, so it is not supported. Write the code with "
                "T ops instead", self._loc, op="T.Kernel")
        if is_cpu:
            raise self._builder.error(
                "T.Kernel(is_cpu=True) builds a CPU kernel; jtile generates CUDA only. Run a "
                "kernel on the CPU with jtile.pallas_like(..., interpret=True)", self._loc,
                op="T.Kernel")

    def __enter__(self):
        builder = self._builder
        open_kernel(builder, self._grid, self._threads, self._loc)
        cluster = _cluster_dims(self._cluster_dims, builder.grid, builder, self._loc)
        if cluster is not None:
            builder.attrs["cluster_dims"] = cluster
            builder.attrs["cluster_loc"] = self._loc
        self._block = builder.block()
        self._body = self._block.__enter__()
        vars_ = builder.block_vars
        return vars_[0] if len(vars_) == 1 else vars_

    def __exit__(self, exc_type, exc, tb):
        self._block.__exit__(exc_type, exc, tb)
        if exc_type is None:
            self._builder.kernel_body = tuple(self._body)
        return False


def ClusterKernel(*grid, cluster_dims, threads=None, prelude=None):
    """TileLang's name for `T.Kernel(..., cluster_dims=...)` (sm_90+)."""
    return Kernel(*grid, threads=threads, prelude=prelude, cluster_dims=cluster_dims)


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
    """The thread's index in its block along `dim` (threadIdx.x / .y / .z).

    A block opened with `threads=n` is 1-D, so only dim 0. With `threads=(x, y[, z])` the
    block runs as x*y*z threads, x fastest as in CUDA: dim 0 is `tid % x`, dim 1
    `tid // x % y`, dim 2 `tid // (x * y)`. Any arch.
    """
    builder = current("T.get_thread_binding")
    loc = caller_location()
    if builder.thread_var is None:
        raise builder.error("T.get_thread_binding needs an open kernel", loc)
    extents = builder.thread_extents
    if not extents:
        if dim != 0:
            raise builder.error(f"T.get_thread_binding({dim}): thread blocks are 1-D", loc)
        return builder.thread_var
    if not 0 <= dim < len(extents):
        raise builder.error(f"T.get_thread_binding({dim}): the thread block {extents} has "
                            f"{len(extents)} dimensions", loc)
    inner = int(np.prod(extents[:dim]))
    index = builder.thread_var if inner == 1 else builder.thread_var // inner
    return index if dim == len(extents) - 1 else index % extents[dim]


def ceildiv(a, b):
    """`(a + b - 1) // b`; a Python int when both are ints (grid extents stay static), a shape
    symbol's expression when one is a `T.const` / `T.dynamic` name not bound yet."""
    from jtile.language.tensor import SymbolicDim

    if isinstance(a, (int, np.integer)) and isinstance(b, (int, np.integer)):
        return -(-int(a) // int(b))
    if isinstance(a, SymbolicDim) or isinstance(b, SymbolicDim):
        return (a + b - 1) // b
    a, b = as_expr(a), as_expr(b)
    return BinOp("floordiv", a + b - 1, b, a.dtype)
