"""The two kernels of `jtile.ops.linear_cross_entropy` that compute logits tiles and reduce them
at once, so that no logits array wider than one vocabulary chunk ever exists.

Both are the GEMM of `jtile.ops.matmul_kernels` (a `T.Pipelined` loop of `T.copy` + `T.gemm`:
TMA, an mbarrier ring and wgmma on sm_90a) with an epilogue on the float32 accumulator:

- `lce_forward_kernel`: a (rows x 256) logits tile is reduced in registers to each row's
  logsumexp over the tile's columns (columns past the vocabulary count as -inf), written to a
  small (rows, vocab blocks) array that the caller combines; the block holding a row's label
  also writes that logit.
- `lce_dlogits_kernel`: a logits tile of one vocabulary chunk is recomputed and turned into
  `g * (exp(logit - lse) - onehot(label))`, stored in the operands' dtype for the two GEMMs
  that produce dh and dw from it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

import jtile
import jtile.language as T
from jtile.ops.matmul_kernels import WAVE, GemmTiling

F32 = "float32"
LOG2_E = 1.4426950408889634
LN_2 = 0.6931471805599453


@dataclass(frozen=True)
class LogitsTiling:
    """The logits tile of one block: a GEMM tiling whose N is a slice of the vocabulary.

    The 128 x 256 tile (two consumer warpgroups, each holding 64 full rows) keeps a row's 256
    logits inside one warpgroup, so the row reductions need no shared memory.
    """

    gemm: GemmTiling

    @property
    def block_rows(self) -> int:
        return self.gemm.block_m

    @property
    def block_cols(self) -> int:
        return self.gemm.block_n


def logits_tiling(rows: int, dtype, arch: str = "sm_90a", vocab: int | None = None
                  ) -> LogitsTiling:
    """The logits tile for `rows` rows of `dtype` operands and a `vocab`-wide vocabulary
    (None: wide) compiled for `arch`.

    16-bit operands: 128 x 256 x 64 tiles, four stages on sm_90 (three before it, whose
    blocks hold less shared memory). A vocabulary of 128 columns or fewer takes 128-column
    tiles (half of a 256-column tile would be padding), and 64-row tiles of one warpgroup
    serve fewer than 128 rows, or launches of fewer blocks than two per multiprocessor (a
    character-level model's 128-token vocabulary: 128-row tiles left the GPU half idle).
    float32 operands run on the CUDA cores, whose accumulator layout reduces rows through
    shared memory: 64 x 128 tiles keep that scratch small.
    """
    itemsize = np.dtype(dtype).itemsize
    block_k = 128 // itemsize
    hopper = arch.startswith("sm_9") or arch.startswith("sm_1")
    if itemsize == 4:
        return LogitsTiling(GemmTiling(64, 128, block_k, 3, 128))
    block_n = 128 if vocab is not None and vocab <= 128 else 256
    column_blocks = 1 if vocab is None else -(-vocab // block_n)
    few_blocks = vocab is not None and -(-rows // 128) * column_blocks < 2 * WAVE
    block_m = 128 if rows > 64 and not few_blocks else 64
    return LogitsTiling(GemmTiling(block_m, block_n, block_k, 4 if hopper else 3,
                                   256 if block_m == 128 else 128))


def _logits_tile(H, W, acc, bx, by, t: GemmTiling):
    """acc = H[rows of block by] @ W[:, columns of block bx], float32 accumulation."""
    D = H.shape[1]
    h_tile = T.alloc_shared((t.block_m, t.block_k), H.dtype)
    w_tile = T.alloc_shared((t.block_k, t.block_n), W.dtype)
    T.clear(acc)
    for k in T.Pipelined(T.ceildiv(D, t.block_k), num_stages=t.stages):
        T.copy(H[by * t.block_m, k * t.block_k], h_tile)
        T.copy(W[k * t.block_k, bx * t.block_n], w_tile)
        T.gemm(h_tile, w_tile, acc)


def lce_forward_kernel(H, W, Labels, *, tiling: LogitsTiling, vocab: int):
    """Per-row logsumexp of each vocabulary block, and each row's label logit.

    Shapes: H (N, D) and W (D, V') in global memory, one float dtype, W's columns from
    `vocab` on being padding (V' rounded up so that TMA can address W's rows); Labels (N,)
    int32 with the label's column in [0, vocab), or -1 for none. Outputs: Partial
    (N, ceil(V' / 256)) float32, the logsumexp of the block's logits (columns >= vocab
    excluded); Picked (N,) float32, the
    logit of the label's column (not written for rows without a label). Logits exist only as
    one (128, 256) float32 register fragment per block. Any arch from sm_80; TMA + wgmma on
    sm_90a for 16-bit operands.
    """
    N = H.shape[0]
    V = vocab
    t = tiling.gemm
    bm, bn = t.block_m, t.block_n
    vocab_blocks = -(-W.shape[1] // bn)
    Partial = T.empty((N, vocab_blocks), F32)
    Picked = T.empty((N,), F32)
    with T.Kernel(vocab_blocks, T.ceildiv(N, bm), threads=t.threads) as (bx, by):
        acc = T.alloc_fragment((bm, bn), F32)
        label = T.alloc_fragment((bm,), "int32")
        row_max = T.alloc_fragment((bm,), F32)
        row_sum = T.alloc_fragment((bm,), F32)
        _logits_tile(H, W, acc, bx, by, t)
        for i in T.Parallel(bm):
            label[i] = Labels[T.min(by * bm + i, N - 1)] - bx * bn
        for i, j in T.Parallel(bm, bn):
            # Exactly one block (the label's) writes a row's logit, one thread of it.
            with T.If((j == label[i]) & (by * bm + i < N)):
                Picked[by * bm + i] = acc[i, j]
        if V % bn:
            for i, j in T.Parallel(bm, bn):
                acc[i, j] = T.if_then_else(bx * bn + j < V, acc[i, j], -T.infinity(F32))
        T.reduce_max(acc, row_max, dim=1)
        for i, j in T.Parallel(bm, bn):
            acc[i, j] = T.exp2((acc[i, j] - row_max[i]) * LOG2_E)
        T.reduce_sum(acc, row_sum, dim=1)
        for i in T.Parallel(bm):
            with T.If(by * bm + i < N):
                # Every block has a column < V, so row_sum >= 1 and the log is finite.
                Partial[by * bm + i, bx] = row_max[i] + T.log2(row_sum[i]) * LN_2
    return Partial, Picked


def lce_dlogits_kernel(H, W, Labels, Lse, G, *, tiling: LogitsTiling):
    """dlogits of one vocabulary chunk: `g * (softmax - onehot(label))`, in H's dtype.

    Shapes: H (N, D) and W (D, C) (the chunk's columns of the weight) in global memory;
    Labels (N,) int32, the label's column within the chunk (outside [0, C) when the label
    lies in another chunk or there is none); Lse and G (N,) float32, each row's logsumexp
    over the whole vocabulary and its loss cotangent. Output (N, C). The logits are
    recomputed tile by tile in a (128, 256) float32 fragment and never stored. Any arch from
    sm_80; TMA + wgmma on sm_90a for 16-bit operands.
    """
    N = H.shape[0]
    C = W.shape[1]
    t = tiling.gemm
    bm, bn = t.block_m, t.block_n
    DL = T.empty((N, C), H.dtype)
    with T.Kernel(T.ceildiv(C, bn), T.ceildiv(N, bm), threads=t.threads) as (bx, by):
        acc = T.alloc_fragment((bm, bn), F32)
        label = T.alloc_fragment((bm,), "int32")
        lse = T.alloc_fragment((bm,), F32)
        g = T.alloc_fragment((bm,), F32)
        _logits_tile(H, W, acc, bx, by, t)
        for i in T.Parallel(bm):
            row = T.min(by * bm + i, N - 1)
            label[i] = Labels[row] - bx * bn
            lse[i] = Lse[row]
            g[i] = G[row]
        for i, j in T.Parallel(bm, bn):
            p = T.exp2((acc[i, j] - lse[i]) * LOG2_E)
            acc[i, j] = g[i] * (p - T.if_then_else(j == label[i], 1.0, 0.0))
        T.copy(acc, DL[by * bm, bx * bn])   # rows past N and columns past C are dropped
    return DL


@functools.lru_cache(maxsize=None)
def launcher(kernel, name: str, tiling: LogitsTiling, interpret: bool, **static):
    """The `jtile.pallas_like` callable of one LCE kernel, tiling and static arguments."""
    return jtile.pallas_like(functools.partial(kernel, tiling=tiling, **static), name=name,
                             interpret=interpret)
