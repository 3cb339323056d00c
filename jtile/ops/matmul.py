"""`jtile.ops.matmul`: `a @ b` with float32 accumulation, forward and backward as jtile GEMMs.

The forward is one launch of `jtile.ops.matmul_kernels.gemm_kernel`, a plain TileLang
`T.Pipelined` loop of `T.copy` and `T.gemm` that sm_90a compiles to TMA, an mbarrier ring, a
producer warpgroup and wgmma. The custom VJP's two products use the same kernel with the
transposes wgmma reads directly from shared memory: `da = g @ b^T` reads b as (N, K)
(K-major), `db = a^T @ g` reads a as (K, M) (M-major, which wgmma transposes for 16-bit
operands), so no operand is transposed in memory.
"""

from __future__ import annotations

import functools
import jax
import numpy as np

from jtile.errors import JtileTargetError
from jtile.ops import checks
from jtile.ops.matmul_kernels import gemm
from jtile.ops.mode import resolve_interpret
from jtile.ops.sharding import match_varying

__all__ = ["matmul"]

SIXTEEN_BIT = ("float16", "bfloat16")
FP8 = ("float8_e4m3fn", "float8_e5m2")
INPUT_DTYPES = SIXTEEN_BIT + FP8 + ("float32",)
OUTPUT_DTYPES = ("float32", "bfloat16", "float16")


def compile_arch(interpret: bool) -> str:
    """The architecture compiled kernels are planned for: the local GPU's (or `JTILE_TARGET`),
    and sm_90a for interpret mode, where the tile only sets the blocks' size."""
    if interpret:
        return "sm_90a"
    from jtile.compiler.target import default_target

    return default_target().arch


def _has_fp8_tensor_cores(arch: str) -> bool:
    from jtile.compiler.target import parse_target

    # jtile's float8 T.gemm reaches the tensor cores through wgmma only (sm_90a; elsewhere it
    # runs on the CUDA cores, far slower, which this op refuses; tcgen05 is not used).
    return parse_target(arch).has_wgmma


def _widen(x, dtype):
    """float8 operands are widened (exactly) to the 16-bit cotangent dtype for the backward
    products, whose transposed operands wgmma cannot read as float8 (see `matmul`)."""
    return x.astype(dtype) if np.dtype(x.dtype).name in FP8 else x


def _backward_dtype(a_dtype, g_dtype) -> str:
    """The dtype of the backward GEMMs' inputs: the operands' own for 16-bit inputs (the
    cotangent is rounded to it, as the tensor cores take one dtype per product); bfloat16 for
    float8 operands; float32 for float32 ones."""
    name = np.dtype(a_dtype).name
    if name in SIXTEEN_BIT or name == "float32":
        return name
    return "bfloat16" if np.dtype(g_dtype).name != "float16" else "float16"


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _matmul2d(a, b, out_dtype, interpret, arch):
    return _forward(a, b, out_dtype, interpret, arch)


def _forward(a, b, out_dtype, interpret, arch):
    if np.dtype(a.dtype).name in FP8:
        # wgmma reads float8 operands K-major only: B goes in as (N, K).
        return gemm(a, b.T, trans_b=True, out_dtype=out_dtype, interpret=interpret, arch=arch)
    return gemm(a, b, out_dtype=out_dtype, interpret=interpret, arch=arch)


def _matmul2d_fwd(a, b, out_dtype, interpret, arch):
    return _forward(a, b, out_dtype, interpret, arch), (a, b)


def _matmul2d_bwd(out_dtype, interpret, arch, saved, g):
    a, b = saved
    dtype = _backward_dtype(a.dtype, g.dtype)
    g = g.astype(dtype)
    # da (M, K) = g (M, N) @ b^T: b read as (K, N) = "(N, K) transposed" by the kernel.
    da = gemm(g, _widen(b, dtype), trans_b=True, out_dtype=a.dtype, interpret=interpret,
              arch=arch)
    # db (K, N) = a^T @ g: a read as (M, K) = "(K, M) transposed".
    db = gemm(_widen(a, dtype), g, trans_a=True, out_dtype=b.dtype, interpret=interpret,
              arch=arch)
    return match_varying(da, a), match_varying(db, b)


_matmul2d.defvjp(_matmul2d_fwd, _matmul2d_bwd)


def _check(a, b, preferred_element_type) -> str:
    op = "matmul"
    for name, x in (("a", a), ("b", b)):
        checks.require_array(op, name, x)
        if np.dtype(x.dtype).name not in INPUT_DTYPES:
            raise checks.fail(op, f"{name} is {checks.describe(x)}; the op takes "
                                  f"{', '.join(INPUT_DTYPES)} (cast other dtypes first)")
        checks.require_nonempty(op, name, x)
    checks.require_rank(op, "a", a, 2)
    checks.require_rank(op, "b", b, 2)
    checks.require_same_dtype(op, ("a", "b"), (a, b))
    if a.shape[-1] != b.shape[-2]:
        raise checks.fail(op, f"a {checks.describe(a)} and b {checks.describe(b)}: a's last "
                              "axis (K) must equal b's second to last")
    if b.ndim > 2 and tuple(b.shape[:-2]) != tuple(a.shape[:-2]):
        raise checks.fail(op, f"a {checks.describe(a)} and b {checks.describe(b)}: a batched b "
                              "must have exactly a's batch axes (broadcast it explicitly "
                              "with jnp.broadcast_to, or pass a 2-D b shared by the batch)")
    name = np.dtype(a.dtype).name
    if preferred_element_type is None:
        return "bfloat16" if name in FP8 else name
    try:
        out = np.dtype(preferred_element_type).name
    except TypeError:
        out = str(preferred_element_type)
    if out not in OUTPUT_DTYPES:
        raise checks.fail(op, f"preferred_element_type={preferred_element_type!r}: the result "
                              f"can be {', '.join(OUTPUT_DTYPES)}")
    return out


def matmul(a, b, *, preferred_element_type=None, interpret=None):
    """`a @ b` with float32 accumulation on the tensor cores.

    The result has a's dtype for float16 and bfloat16 inputs (float32 accumulation rounded
    once, as `jnp.matmul` returns it), and bfloat16 for float8 inputs: float8 cannot hold the
    sums (e4m3 tops out at 448), and bfloat16 keeps float32's range at half the bytes.
    `preferred_element_type` (float32, bfloat16 or float16) overrides either, like
    `jnp.matmul`'s. float32 inputs are accepted and computed exactly in float32, on the CUDA
    cores (no tensor cores; for tests and references).

    On sm_90a the forward runs as TMA + wgmma GEMM tiles (128 x 256 x 64, four stages, two
    consumer warpgroups for large shapes; smaller tiles when the output has fewer than a wave
    of them). float8 needs sm_90a (wgmma); wgmma reads float8 operands K-major only, so b is
    transposed with `jnp` before the forward GEMM (one copy of b). The backward products of
    float8 inputs read their operands transposed, so the float8 operand is widened exactly to
    bfloat16 with `jnp` first and both products run as bfloat16 GEMMs; their results are
    rounded to the float8 input dtypes, as JAX's cotangents must be.

    Differentiable in a and b (a custom VJP: `da = g @ b^T`, `db = a^T @ g`, jtile GEMMs,
    `db` summed over a's batch axes when b has none); batchable with vmap; inside shard_map
    data-parallel (a sharded over rows) and tensor-parallel (b sharded over N) layouts give
    the cotangent of a replicated input replicated.

    Args:
        a: (..., M, K) float16, bfloat16, float8_e4m3fn, float8_e5m2 or float32; leading
            batch axes are folded into M.
        b: (K, N), shared by the batch, or (..., K, N) with exactly a's batch axes.
        preferred_element_type: the result's dtype, or None for the default above.
        interpret: True, False, or None (see `jtile.ops.mode.resolve_interpret`).

    Returns:
        (..., M, N) in the result dtype.

    Raises:
        JtileShapeError: dtypes outside the list, a and b of different dtypes, K mismatch,
            batch axes of b that differ from a's.
        JtileTargetError: float8 inputs compiled for a target other than sm_90a.
    """
    out_dtype = _check(a, b, preferred_element_type)
    interpret = resolve_interpret(interpret)
    arch = compile_arch(interpret)
    if np.dtype(a.dtype).name in FP8 and not _has_fp8_tensor_cores(arch):
        raise JtileTargetError(
            f"jtile.ops.matmul: a {checks.describe(a)} and b {checks.describe(b)}: float8 "
            f"products run on wgmma, which needs sm_90a; the target is {arch}. Cast the "
            "operands to bfloat16 (or pass interpret=True).")
    m, k = a.shape[-2:]
    n = b.shape[-1]
    batch = a.shape[:-2]
    if b.ndim == 2:
        out = _matmul2d(a.reshape(-1, k), b, out_dtype, interpret, arch)
        return out.reshape(batch + (m, n))
    # One 2-D product per batch entry; vmap folds the batch into each kernel's grid.
    product = jax.vmap(lambda x, y: _matmul2d(x, y, out_dtype, interpret, arch))
    out = product(a.reshape((-1, m, k)), b.reshape((-1, k, n)))
    return out.reshape(batch + (m, n))
