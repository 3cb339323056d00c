"""`jtile.ops.ragged_dot`: the mixture-of-experts grouped GEMM, `jax.lax.ragged_dot` on jtile.

The rows of `lhs` are split into consecutive groups by the runtime `group_sizes`; group g is
multiplied by the expert matrix `rhs[g]`. The kernels (`jtile.ops.ragged_dot_kernels`) are
compiled once per shapes and read their work from small tile tables computed on the device
(`jtile.ops.ragged_dot_schedule`), so any split of the rows runs without recompiling.

The custom VJP is two more jtile kernels: the lhs gradient is the same grouped GEMM of the
output gradient against the transposed expert matrices (wgmma reads B in either major for
f16/bf16, so no transposed copy of rhs is made), and the rhs gradient is the per-group
`lhs[rows of g]^T @ dout[rows of g]`, ragged in its contraction. For the latter, whichever of
lhs and dout is narrower is copied into a group-padded layout (every group starting on a tile
boundary, zeros between groups): at the Mixtral shape (32768 x 4096 -> 14336) that copy moves
about 0.5 GB, some 0.13 ms against a 5 ms GEMM, and it keeps the kernel a plain TMA + wgmma
loop with no masking of shared tiles.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

import jtile
from jtile.errors import JtileShapeError
from jtile.ops import checks
from jtile.ops.mode import resolve_interpret
from jtile.ops.ragged_dot_kernels import group_weight_grad_kernel, grouped_gemm_kernel
from jtile.ops.ragged_dot_schedule import group_tiles, pad_rows, row_tiles
from jtile.ops.sharding import match_varying

__all__ = ["ragged_dot"]

OP = "ragged_dot"
INPUT_DTYPES = ("float16", "bfloat16", "float8_e4m3fn")
OUTPUT_DTYPES = ("float32", "bfloat16", "float16")

# Tile shapes per kind of machine: (block_m, block_n, block_k, stages, threads).
# sm_90a: two consumer warpgroups on a 128 x 256 tile, the dense GEMM's best shape here; fp8
# takes K steps of 128 bytes as well. sm_80: mma.sync with a 128 x 128 tile. Interpret mode:
# small tiles, so that small test problems still span several tiles per group.
_GEMM_TILES = {
    "sm_90a": dict(block_m=128, block_n=256, block_k=64, stages=4, threads=256),
    "sm_90a_fp8": dict(block_m=128, block_n=256, block_k=128, stages=4, threads=256),
    "sm_80": dict(block_m=128, block_n=128, block_k=32, stages=3, threads=128),
    "interpret": dict(block_m=32, block_n=32, block_k=32, stages=2, threads=128),
}
_WEIGHT_GRAD_TILES = {
    "sm_90a": dict(block_rows=64, block_k=128, block_n=256, stages=4, threads=256),
    "sm_80": dict(block_rows=32, block_k=128, block_n=128, stages=3, threads=128),
    "interpret": dict(block_rows=32, block_k=32, block_n=32, stages=2, threads=128),
}


def machine(interpret: bool) -> str:
    """`interpret`, `sm_90a` (wgmma: Hopper) or `sm_80` (any other CUDA GPU)."""
    if interpret:
        return "interpret"
    from jtile.compiler.target import default_target

    return "sm_90a" if default_target().has_wgmma else "sm_80"


def gemm_tiles(kind: str, dtype) -> dict:
    """The grouped GEMM's tile shape on machine `kind` for inputs of `dtype`."""
    if kind == "sm_90a" and np.dtype(dtype).itemsize == 1:
        return _GEMM_TILES["sm_90a_fp8"]
    return _GEMM_TILES[kind]


def weight_grad_tiles(kind: str) -> dict:
    """The rhs-gradient kernel's tile shape on machine `kind`."""
    return _WEIGHT_GRAD_TILES[kind]


@functools.lru_cache(maxsize=None)
def _launcher(kernel, name: str, interpret: bool, **static):
    return jtile.pallas_like(functools.partial(kernel, **static), name=name, interpret=interpret)


def grouped_gemm(lhs, rhs, group_sizes, *, out_dtype, transpose_rhs, kind, interpret):
    """`lhs` (m, k) times `rhs[g]` ((g, k, n), or (g, n, k) with `transpose_rhs`) per group."""
    tiles = gemm_tiles(kind, lhs.dtype)
    table = row_tiles(group_sizes, lhs.shape[0], tiles["block_m"])
    launch = _launcher(grouped_gemm_kernel, "ragged_dot", interpret,
                       out_dtype=np.dtype(out_dtype).name, transpose_rhs=transpose_rhs, **tiles)
    return launch(lhs, rhs, table.group, table.row, table.end)


def group_weight_grad(lhs, dout, group_sizes, *, out_dtype, kind, interpret):
    """(g, k, n): `lhs[rows of g]^T @ dout[rows of g]` for every group g."""
    tiles = weight_grad_tiles(kind)
    table = group_tiles(group_sizes, lhs.shape[0], tiles["block_rows"])
    # Pad the narrower operand: it is the cheaper copy, and one zeroed side is enough.
    if lhs.shape[1] <= dout.shape[1]:
        x, y = pad_rows(lhs, group_sizes, table), dout
        x_start, y_start = table.padded_start, table.start
    else:
        x, y = lhs, pad_rows(dout, group_sizes, table)
        x_start, y_start = table.start, table.padded_start
    launch = _launcher(group_weight_grad_kernel, "ragged_dot_rhs_grad", interpret,
                       groups=group_sizes.shape[0], out_dtype=np.dtype(out_dtype).name,
                       **tiles)
    return launch(x, y, x_start, y_start, table.tiles)


def _forward(lhs, rhs, group_sizes, out_dtype, interpret):
    kind = machine(interpret)
    if kind != "interpret" and np.dtype(lhs.dtype).itemsize == 1:
        # wgmma reads fp8 operands K-major only: give it the experts as (g, n, k).
        return grouped_gemm(lhs, jnp.swapaxes(rhs, 1, 2), group_sizes, out_dtype=out_dtype,
                            transpose_rhs=True, kind=kind, interpret=interpret)
    return grouped_gemm(lhs, rhs, group_sizes, out_dtype=out_dtype, transpose_rhs=False,
                        kind=kind, interpret=interpret)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def _ragged_dot(lhs, rhs, group_sizes, out_dtype, interpret):
    return _forward(lhs, rhs, group_sizes, out_dtype, interpret)


def _ragged_dot_fwd(lhs, rhs, group_sizes, out_dtype, interpret):
    return _forward(lhs, rhs, group_sizes, out_dtype, interpret), (lhs, rhs, group_sizes)


def _ragged_dot_bwd(out_dtype, interpret, saved, dout):
    lhs, rhs, group_sizes = saved
    if np.dtype(lhs.dtype).itemsize == 1:
        raise JtileShapeError(
            f"jtile.ops.{OP}: the gradient of a float8_e4m3fn ragged_dot is not implemented; "
            "differentiate a bfloat16 or float16 ragged_dot (cast the inputs) instead")
    kind = machine(interpret)
    dout = dout.astype(lhs.dtype)
    dlhs = grouped_gemm(dout, rhs, group_sizes, out_dtype=lhs.dtype, transpose_rhs=True,
                        kind=kind, interpret=interpret)
    drhs = group_weight_grad(lhs, dout, group_sizes, out_dtype=rhs.dtype, kind=kind,
                             interpret=interpret)
    return match_varying(dlhs, lhs), match_varying(drhs, rhs), None


_ragged_dot.defvjp(_ragged_dot_fwd, _ragged_dot_bwd)


def _check(lhs, rhs, group_sizes, preferred_element_type):
    checks.require_array(OP, "lhs", lhs)
    checks.require_array(OP, "rhs", rhs)
    checks.require_integer(OP, "group_sizes", group_sizes)
    if lhs.ndim != 2:
        raise checks.fail(OP, f"lhs is {checks.describe(lhs)}; it must be (m, k)")
    if rhs.ndim != 3:
        raise checks.fail(OP, f"rhs is {checks.describe(rhs)}; it must be (g, k, n): one "
                              "(k, n) matrix per group")
    if group_sizes.ndim != 1 or group_sizes.shape[0] != rhs.shape[0]:
        raise checks.fail(OP, f"group_sizes is {checks.describe(group_sizes)} but must have "
                              f"shape [{rhs.shape[0]}]: one size per group of rhs "
                              f"{checks.describe(rhs)}")
    if rhs.shape[1] != lhs.shape[1]:
        raise checks.fail(OP, f"lhs {checks.describe(lhs)} and rhs {checks.describe(rhs)}: "
                              "lhs's k (axis 1) must equal rhs's k (axis 1)")
    for name, x in (("lhs", lhs), ("rhs", rhs)):
        if np.dtype(x.dtype).name not in INPUT_DTYPES:
            raise checks.fail(OP, f"{name} is {checks.describe(x)}; the op takes "
                                  f"{', '.join(INPUT_DTYPES)} (cast float32 inputs to bfloat16)")
    checks.require_same_dtype(OP, ("lhs", "rhs"), (lhs, rhs))
    for name, x in (("lhs", lhs), ("rhs", rhs)):
        checks.require_nonempty(OP, name, x)
    if preferred_element_type is None:
        return np.dtype(lhs.dtype)
    out = np.dtype(preferred_element_type)
    if out.name not in OUTPUT_DTYPES and out != np.dtype(lhs.dtype):
        raise checks.fail(OP, f"preferred_element_type={out.name} is not supported; use one "
                              f"of {', '.join(OUTPUT_DTYPES)} (float32 accumulation inside)")
    return out


def ragged_dot(lhs, rhs, group_sizes, *, preferred_element_type=None, interpret=None):
    """Grouped matrix product: `jax.lax.ragged_dot` as jtile kernels.

    The rows of `lhs` form consecutive groups of `group_sizes[0]`, `group_sizes[1]`, ... rows;
    group g's rows are multiplied by `rhs[g]`. Rows past `sum(group_sizes)` come out zero, and
    groups past row m are cut at m, as `jax.lax.ragged_dot` gives them. Products accumulate
    in float32. Differentiable in lhs and rhs (not for float8 inputs); batchable with vmap;
    inside shard_map the gradient of replicated experts comes back replicated.

    Args:
        lhs: (m, k) float16, bfloat16 or float8_e4m3fn (fp8 needs sm_90a compiled).
        rhs: (g, k, n) of lhs's dtype.
        group_sizes: (g,) integer array, runtime values >= 0 (negative sizes count as empty
            groups); any split runs without recompiling.
        preferred_element_type: the output dtype: None (lhs's dtype, as JAX gives it),
            float32, bfloat16 or float16.
        interpret: True, False, or None (see `jtile.ops.mode.resolve_interpret`).

    Returns:
        (m, n) array of `preferred_element_type` (default lhs's dtype).

    Raises:
        JtileShapeError: ranks, k, dtypes or group_sizes that break the rules above.
    """
    out_dtype = _check(lhs, rhs, group_sizes, preferred_element_type)
    interpret = resolve_interpret(interpret)
    return _ragged_dot(lhs, rhs, group_sizes.astype(jnp.int32), out_dtype, interpret)
