"""The GEMM kernel behind `jtile.ops.matmul` (and the linear cross-entropy's backward), and its
tile choice per shape.

One kernel family covers the forward and both backward products: `C = op(A) @ op(B)`, op
transposing where asked, float32 accumulation, optionally added to an existing float32 C (the
accumulating form updates C in place through `input_output_aliases`). It is a
plain TileLang GEMM: a `T.Pipelined` loop of `T.copy` global -> shared and `T.gemm`, which
sm_90a compiles to TMA loads into swizzled shared memory, an mbarrier stage ring, a producer
warpgroup and wgmma; sm_80 to cp.async and mma.sync. Sizes the TMA engine cannot address (a
row of a 16-bit array whose length is not a multiple of 8) fall back to cp.async on sm_90a.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

import jtile
import jtile.language as T

F32 = "float32"
# A full wave of blocks on an H100/H200 (132 SMs): tiles are shrunk until a problem gives this
# many blocks, so a small GEMM still reaches every SM.
WAVE = 132
# The fewest K tiles a split-K run takes: shorter runs spend more on their pipeline's fill and
# their partial outputs than the extra SMs give back.
MIN_SPLIT_STEPS = 16
# The bytes of one shared-tile row along K: the 128-byte swizzle span TMA and wgmma read best.
K_ROW_BYTES = 128


@dataclass(frozen=True)
class GemmTiling:
    """One block's share of a GEMM and how it is pipelined.

    Attributes:
        block_m, block_n: the block's output tile.
        block_k: the depth of one pipeline stage (128 bytes of each operand row).
        stages: shared-memory stages in flight.
        threads: threads per block: one consumer warpgroup per 64 rows of a 128-row tile.
    """

    block_m: int
    block_n: int
    block_k: int
    stages: int
    threads: int


def gemm_tiling(m: int, n: int, dtype, arch: str = "sm_90a") -> GemmTiling:
    """The tile for an (m, n) output with operands of `dtype`, compiled for `arch`.

    Large outputs take 128 x 256 tiles over two consumer warpgroups (the tile of
    benchmarks/bench.py that gets closest to cuBLAS on an H200: each warpgroup issues
    m64n256 wgmmas and the 128-byte K rows keep TMA at its widest swizzle). Outputs with fewer
    than a wave of such tiles shrink N to 128, then M to 64, then N to 64, so more SMs take
    part. Four stages on sm_90 (192 KB of 227 KB shared memory at 128 x 256 x 64 bf16), three
    on older GPUs, whose blocks hold at most 163 KB.
    """
    itemsize = np.dtype(dtype).itemsize
    block_k = K_ROW_BYTES // itemsize
    block_m = 128 if m > 64 else 64
    block_n = 256 if n > 128 else (128 if n > 64 else 64)

    def blocks(bm, bn):
        return -(-m // bm) * -(-n // bn)

    while blocks(block_m, block_n) < WAVE:
        if block_n > 128:
            block_n = 128
        elif block_m > 64:
            block_m = 64
        elif block_n > 64:
            block_n = 64
        else:
            break
    hopper = arch.startswith("sm_9") or arch.startswith("sm_1")
    stages = 4 if hopper else 3
    threads = 256 if block_m == 128 else 128
    return GemmTiling(block_m, block_n, block_k, stages, threads)


def _gemm_body(A, B, C, C_in, t: GemmTiling, trans_a: bool, trans_b: bool, splits: int = 1):
    """The block program shared by the kernels: C (+)= op(A) @ op(B) over (M, N) tiles; with
    `splits` > 1, C is (splits, M, N) and block z sums the z-th of `splits` runs of K tiles
    (split-K: a small output with a long K reaches more SMs), its last run reading zeros past
    K."""
    M, N = C.shape[-2:]
    K = A.shape[0] if trans_a else A.shape[1]
    steps = T.ceildiv(T.ceildiv(K, t.block_k), splits)
    grid = (T.ceildiv(N, t.block_n), T.ceildiv(M, t.block_m)) + ((splits,) if splits > 1 else ())
    with T.Kernel(*grid, threads=t.threads) as ids:
        bx, by, bz = ids if splits > 1 else ids + (0,)
        a_tile = T.alloc_shared((t.block_k, t.block_m) if trans_a else (t.block_m, t.block_k),
                                A.dtype)
        b_tile = T.alloc_shared((t.block_n, t.block_k) if trans_b else (t.block_k, t.block_n),
                                B.dtype)
        acc = T.alloc_fragment((t.block_m, t.block_n), F32)
        if C_in is not None:
            T.copy(C_in[by * t.block_m, bx * t.block_n], acc)
        else:
            T.clear(acc)
        for kk in T.Pipelined(steps, num_stages=t.stages):
            k = bz * steps + kk if splits > 1 else kk
            if trans_a:
                T.copy(A[k * t.block_k, by * t.block_m], a_tile)
            else:
                T.copy(A[by * t.block_m, k * t.block_k], a_tile)
            if trans_b:
                T.copy(B[bx * t.block_n, k * t.block_k], b_tile)
            else:
                T.copy(B[k * t.block_k, bx * t.block_n], b_tile)
            T.gemm(a_tile, b_tile, acc, transpose_A=trans_a, transpose_B=trans_b)
        if splits > 1:
            T.copy(acc, C[bz, by * t.block_m, bx * t.block_n])
        else:
            T.copy(acc, C[by * t.block_m, bx * t.block_n])


def _output_shape(A, B, trans_a: bool, trans_b: bool) -> tuple:
    return (A.shape[1] if trans_a else A.shape[0], B.shape[0] if trans_b else B.shape[1])


def gemm_kernel(A, B, *, tiling: GemmTiling, trans_a: bool, trans_b: bool, out_dtype: str):
    """`C = op(A) @ op(B)` with float32 accumulation, rounded once to `out_dtype`.

    Shapes: A (M, K), or (K, M) when `trans_a`; B (K, N), or (N, K) when `trans_b`; both in
    global memory with one dtype (float16, bfloat16, float8_e4m3/e5m2 or float32); C (M, N).
    Shared tiles hold one stage of each operand; the accumulator is a (block_m, block_n)
    float32 register fragment. Any arch from sm_80; TMA + wgmma on sm_90a, where float8
    operands must be K-major (A untransposed, B transposed).
    """
    C = T.empty(_output_shape(A, B, trans_a, trans_b), out_dtype)
    _gemm_body(A, B, C, None, tiling, trans_a, trans_b)
    return C


def gemm_split_kernel(A, B, *, tiling: GemmTiling, trans_a: bool, trans_b: bool, splits: int):
    """`C[z] = op(A[:, Kz]) @ op(B[Kz, :])`, float32 (splits, M, N): the products of `splits`
    runs of K, summed by the caller. Shapes otherwise as `gemm_kernel`'s."""
    C = T.empty((splits,) + _output_shape(A, B, trans_a, trans_b), F32)
    _gemm_body(A, B, C, None, tiling, trans_a, trans_b, splits)
    return C


def split_k(m: int, n: int, k: int, tiling: GemmTiling) -> int:
    """How many runs of K an (m, n, k) product splits into: enough blocks for a wave when the
    output alone gives fewer than half of one, each run at least MIN_SPLIT_STEPS K tiles."""
    blocks = -(-m // tiling.block_m) * -(-n // tiling.block_n)
    if 2 * blocks > WAVE:
        return 1
    k_tiles = -(-k // tiling.block_k)
    return max(1, min(-(-WAVE // blocks), k_tiles // MIN_SPLIT_STEPS))


def gemm_accumulate_kernel(A, B, C_in, *, tiling: GemmTiling, trans_a: bool, trans_b: bool):
    """`C = C_in + op(A) @ op(B)` in float32; compiled, C is aliased to C_in (in place).

    Shapes as `gemm_kernel`'s; C_in and C are float32 (M, N) in global memory. Each block
    loads its C tile into the accumulator fragment before the K loop. Any arch from sm_80.
    """
    C = T.empty(_output_shape(A, B, trans_a, trans_b), F32)
    _gemm_body(A, B, C, C_in, tiling, trans_a, trans_b)
    return C


@functools.lru_cache(maxsize=None)
def gemm_launcher(tiling: GemmTiling, trans_a: bool, trans_b: bool, out_dtype: str,
                  accumulate: bool, interpret: bool, splits: int = 1):
    """The `jtile.pallas_like` callable of one `gemm_kernel` configuration."""
    if splits > 1:
        kernel = functools.partial(gemm_split_kernel, tiling=tiling, trans_a=trans_a,
                                   trans_b=trans_b, splits=splits)
    elif accumulate:
        kernel = functools.partial(gemm_accumulate_kernel, tiling=tiling, trans_a=trans_a,
                                   trans_b=trans_b)
    else:
        kernel = functools.partial(gemm_kernel, tiling=tiling, trans_a=trans_a,
                                   trans_b=trans_b, out_dtype=out_dtype)
    name = "matmul" + ("_acc" if accumulate else "") + ("_split" if splits > 1 else "") + \
        ("_ta" if trans_a else "") + ("_tb" if trans_b else "")
    # The in-place update saves a second float32 C on the GPU.
    aliases = {2: 0} if accumulate else None
    return jtile.pallas_like(kernel, name=name, interpret=interpret,
                             input_output_aliases=aliases)


def gemm(a, b, *, trans_a=False, trans_b=False, out_dtype, interpret: bool, arch: str,
         accumulate_into=None):
    """`op(a) @ op(b)` of 2-D arrays with one jtile GEMM launch, the tile chosen per shape.

    Args:
        a, b: 2-D arrays of one dtype.
        trans_a, trans_b: read a as (K, M) / b as (N, K) and transpose them in the kernel.
        out_dtype: the result's dtype (float32 accumulation, rounded once).
        interpret: interpret mode.
        arch: the architecture the tile is chosen for.
        accumulate_into: an optional float32 (M, N) array the product is added to, in place.
    """
    m = a.shape[1] if trans_a else a.shape[0]
    n = b.shape[0] if trans_b else b.shape[1]
    k = a.shape[0] if trans_a else a.shape[1]
    tiling = gemm_tiling(m, n, a.dtype, arch)
    out_name = np.dtype(out_dtype).name
    splits = split_k(m, n, k, tiling)
    if splits > 1:
        parts = gemm_launcher(tiling, trans_a, trans_b, F32, False, interpret, splits)(a, b)
        total = parts.sum(axis=0)
        if accumulate_into is not None:
            return accumulate_into + total
        return total.astype(out_dtype)
    if accumulate_into is None:
        return gemm_launcher(tiling, trans_a, trans_b, out_name, False, interpret)(a, b)
    return gemm_launcher(tiling, trans_a, trans_b, F32, True, interpret)(a, b, accumulate_into)
