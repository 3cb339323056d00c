"""`jtile.ops.cross_entropy`: per-example `logsumexp(logits) - logits[label]`, in float32.

The vocabulary can be far wider than a block's registers, so the forward walks each row in
chunks of at most 16 KB of logits, keeping a running max and a running sum of exponentials
rescaled to it (the online softmax), and saves each row's logsumexp. The backward writes
`dloss * (exp(logits - lse) - onehot(label))` over the flattened logits, each element finding
its row from its index (or, for rows at least a block's tile wide, choosing between the two
rows its block's tile spans). Each logit is read once in each direction. Any arch (sm_80+).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

import jtile
import jtile.language as T
from jtile.ops import checks
from jtile.ops.mode import resolve_interpret
from jtile.ops.rows import FLAT_THREADS, flat_tile, row_tiling
from jtile.ops.sharding import match_varying

__all__ = ["cross_entropy"]

F32 = "float32"
# Columns of a row the (M, V) forward kernel reduces per step.
NARROW_CHUNK = 4096
# The wide-row forward: bytes of a row a block reads per step of its online logsumexp, and
# bytes of each step each thread loads (four 16-byte vectors, whatever the dtype).
CHUNK_BYTES = 16384
THREAD_BYTES = 64
LOG2_E = 1.4426950408889634
LN_2 = 0.6931471805599453


def _chunks(tiling, vocab: int) -> int:
    return -(-vocab // tiling.padded)


def _load_chunk(L, frag, row0, col0):
    """`frag[i, j] = L[row0 + i, col0 + j]`; zeros past the row's or the array's end (the
    caller masks them)."""
    T.copy(L[row0, col0], frag)


def cross_entropy_fwd_kernel(L, Labels, *, tiling):
    """Loss (M,) and logsumexp (M,), float32, from logits L (M, V) and int32 Labels (M,)."""
    M, V = L.shape
    rows, cols = tiling.block_rows, tiling.padded
    Loss = T.empty((M,), F32)
    Lse = T.empty((M,), F32)
    with T.Kernel(T.ceildiv(M, rows), threads=tiling.threads) as bx:
        l_in = T.alloc_fragment((rows, cols), L.dtype)
        x = T.alloc_fragment((rows, cols), F32)
        run_max = T.alloc_fragment((rows,), F32)
        run_sum = T.alloc_fragment((rows,), F32)
        chunk_max = T.alloc_fragment((rows,), F32)
        chunk_sum = T.alloc_fragment((rows,), F32)
        T.fill(run_max, -T.infinity(F32))
        T.clear(run_sum)
        for k in T.serial(_chunks(tiling, V)):
            _load_chunk(L, l_in, bx * rows, k * cols)
            for i, j in T.Parallel(rows, cols):
                x[i, j] = T.if_then_else(k * cols + j < V, T.cast(l_in[i, j], F32),
                                         -T.infinity(F32))
            T.reduce_max(x, chunk_max, dim=1)
            for i in T.Parallel(rows):
                chunk_max[i] = T.max(chunk_max[i], run_max[i])
            for i, j in T.Parallel(rows, cols):
                x[i, j] = T.exp2((x[i, j] - chunk_max[i]) * LOG2_E)
            T.reduce_sum(x, chunk_sum, dim=1)
            for i in T.Parallel(rows):
                # exp(-inf - finite) = 0 drops the empty running sum of the first chunk.
                run_sum[i] = run_sum[i] * T.exp2((run_max[i] - chunk_max[i]) * LOG2_E) \
                    + chunk_sum[i]
                run_max[i] = chunk_max[i]
        for i in T.Parallel(rows):
            row = bx * rows + i
            with T.If(row < M):
                # Labels outside [0, V) are clamped into it (the read stays inside the row).
                label = T.min(T.max(Labels[row], 0), V - 1)
                lse = run_max[i] + T.log2(run_sum[i]) * LN_2
                Lse[row] = lse
                Loss[row] = lse - T.cast(L[row, label], F32)
    return Loss, Lse


def cross_entropy_fwd_wide_kernel(Lf, Labels, *, vocab, cols, threads):
    """`cross_entropy_fwd_kernel` for wide rows, one row a block, over the flattened logits
    Lf (M * vocab,): each step loads `cols` logits from a 16-byte aligned start (a row of an
    odd vocabulary starts at an odd address, where the (M, V) kernel could only load one
    element at a time) and masks the neighbouring rows' logits out. The next step's logits
    load before this step's reductions, whose barriers would otherwise leave each block one
    step of loads in flight at a time."""
    (E,) = Lf.shape
    V = vocab
    M = E // V
    align = 16 // Lf.dtype.bytes
    Loss = T.empty((M,), F32)
    Lse = T.empty((M,), F32)
    with T.Kernel(M, threads=threads) as bx:
        start = bx * V
        base = start // align * align
        l_in = T.alloc_fragment((cols,), Lf.dtype)
        l_next = T.alloc_fragment((cols,), Lf.dtype)
        x = T.alloc_fragment((cols,), F32)
        run_max = T.alloc_fragment((1,), F32)
        run_sum = T.alloc_fragment((1,), F32)
        step_max = T.alloc_fragment((1,), F32)
        step_sum = T.alloc_fragment((1,), F32)
        T.fill(run_max, -T.infinity(F32))
        T.clear(run_sum)
        steps = T.ceildiv(V + align - 1, cols)
        T.copy(Lf[base], l_next)
        for k in T.serial(steps):
            T.copy(l_next, l_in)
            with T.If(k + 1 < steps):
                T.copy(Lf[base + (k + 1) * cols], l_next)
            for j in T.Parallel(cols):
                offset = base + k * cols + j - start  # the logit's column in the row
                x[j] = T.if_then_else(offset >= 0,
                                      T.if_then_else(offset < V, T.cast(l_in[j], F32),
                                                     -T.infinity(F32)),
                                      -T.infinity(F32))
            T.reduce_max(x, step_max, dim=0)
            for i in T.Parallel(1):
                step_max[i] = T.max(step_max[i], run_max[i])
            for j in T.Parallel(cols):
                x[j] = T.exp2((x[j] - step_max[0]) * LOG2_E)
            T.reduce_sum(x, step_sum, dim=0)
            for i in T.Parallel(1):
                run_sum[i] = run_sum[i] * T.exp2((run_max[i] - step_max[i]) * LOG2_E) \
                    + step_sum[i]
                run_max[i] = step_max[i]
        for i in T.Parallel(1):
            label = T.min(T.max(Labels[bx], 0), V - 1)
            lse = run_max[i] + T.log2(run_sum[i]) * LN_2
            Lse[bx] = lse
            Loss[bx] = lse - T.cast(Lf[start + label], F32)
    return Loss, Lse


def cross_entropy_bwd_kernel(Lf, Labels, Lse, DLoss, *, tile):
    """dL = dloss * (softmax(L) - onehot(label)), in L's dtype, over the flattened logits.

    Shapes: Lf (M * V,) the logits flattened, Labels (M,) int32, Lse and DLoss (M,) float32;
    output (M * V,). Flat tiles stay 16-byte aligned whatever V is: a row of an odd
    vocabulary starts at an odd address, and row-wise tiles of it could only move one element
    at a time. Rows of at least `tile` logits: a tile spans at most two rows, so each block
    reads the two rows' logsumexp, dloss and label once, and each element only picks between
    them (the per-element row division, gathers and label test took most of the time at a
    50k vocabulary). Narrower rows: each element finds its row from its flat index.
    """
    (E,) = Lf.shape
    (M,) = Labels.shape
    V = E // M
    DL = T.empty((E,), Lf.dtype)
    with T.Kernel(T.ceildiv(E, tile), threads=FLAT_THREADS) as bx:
        logits = T.alloc_fragment((tile,), Lf.dtype)
        T.copy(Lf[bx * tile], logits)
        if V >= tile:
            _two_row_gradient(logits, Labels, Lse, DLoss, bx * tile, V, Lf.dtype)
        else:
            for i in T.Parallel(tile):
                flat = bx * tile + i
                row = T.min(flat // V, M - 1)
                label = T.min(T.max(Labels[row], 0), V - 1)
                p = T.exp2((T.cast(logits[i], F32) - Lse[row]) * LOG2_E)
                hit = T.if_then_else(flat - row * V == label, 1.0, 0.0)
                logits[i] = T.cast(DLoss[row] * (p - hit), Lf.dtype)
        T.copy(logits, DL[bx * tile])
    return DL


def _two_row_gradient(logits, Labels, Lse, DLoss, start, V, dtype):
    """The gradient of a tile starting at flat index `start` that spans at most two rows."""
    (M,) = Labels.shape
    first = start // V
    second = T.min(first + 1, M - 1)
    # Tile positions: where the second row starts, and each row's label.
    split = T.alloc_var("int32", (first + 1) * V - start)
    label_first = T.alloc_var("int32", first * V + T.min(T.max(Labels[first], 0), V - 1) - start)
    label_second = T.alloc_var(
        "int32", second * V + T.min(T.max(Labels[second], 0), V - 1) - start)
    lse_first = T.alloc_var(F32, Lse[first] * LOG2_E)
    lse_second = T.alloc_var(F32, Lse[second] * LOG2_E)
    g_first = T.alloc_var(F32, DLoss[first])
    g_second = T.alloc_var(F32, DLoss[second])
    for i in T.Parallel(logits.shape[0]):
        later = i >= split
        p = T.exp2(T.cast(logits[i], F32) * LOG2_E - T.if_then_else(later, lse_second, lse_first))
        hit = T.if_then_else(i == T.if_then_else(later, label_second, label_first), 1.0, 0.0)
        logits[i] = T.cast(T.if_then_else(later, g_second, g_first) * (p - hit), dtype)


@functools.lru_cache(maxsize=None)
def _launcher(kernel, name: str, interpret: bool, **static):
    return jtile.pallas_like(functools.partial(kernel, **static), name=name,
                             interpret=interpret)


def _tiling(logits):
    rows, vocab = logits.shape
    return row_tiling("cross_entropy", rows, min(vocab, NARROW_CHUNK))


def _wide_step(logits):
    """`(cols, threads)` of the wide-row forward for these logits, or None when a row is
    narrower than one step: CHUNK_BYTES of logits a step, THREAD_BYTES of them a thread."""
    vocab, itemsize = logits.shape[1], logits.dtype.itemsize
    cols = CHUNK_BYTES // itemsize
    if vocab < cols:
        return None
    return cols, cols * itemsize // THREAD_BYTES


def _forward(logits, labels, interpret):
    wide = _wide_step(logits)
    if wide is None:
        return _launcher(cross_entropy_fwd_kernel, "cross_entropy_fwd", interpret,
                         tiling=_tiling(logits))(logits, labels)
    cols, threads = wide
    return _launcher(cross_entropy_fwd_wide_kernel, "cross_entropy_fwd", interpret,
                     vocab=logits.shape[1], cols=cols, threads=threads)(
        logits.reshape(-1), labels)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _cross_entropy(logits, labels, interpret):
    return _forward(logits, labels, interpret)[0]


def _cross_entropy_fwd(logits, labels, interpret):
    loss, lse = _forward(logits, labels, interpret)
    return loss, (logits, labels, lse)


def _cross_entropy_bwd(interpret, saved, dloss):
    logits, labels, lse = saved
    flat = logits.reshape(-1)
    launch = _launcher(cross_entropy_bwd_kernel, "cross_entropy_bwd", interpret,
                       tile=flat_tile(flat.shape[0], flat.dtype.itemsize))
    dlogits = launch(flat, labels, lse, dloss.astype(jnp.float32)).reshape(logits.shape)
    return match_varying(dlogits, logits), None


_cross_entropy.defvjp(_cross_entropy_fwd, _cross_entropy_bwd)


def cross_entropy(logits, labels, *, interpret=None):
    """Per-example softmax cross-entropy: `logsumexp(logits) - logits[label]` over the last axis.

    Computed in float32 with an online logsumexp over chunks of the vocabulary (any width);
    the result is float32 of shape `logits.shape[:-1]`. Differentiable in `logits` (labels are
    integers and get no gradient); batchable with vmap; usable inside shard_map with the
    vocabulary unsharded.

    Args:
        logits: (..., V) float32, bfloat16 or float16.
        labels: (...) integers in [0, V) (values outside are clamped into it).
        interpret: True, False, or None (see `jtile.ops.mode.resolve_interpret`).

    Returns:
        float32 losses of shape `logits.shape[:-1]`.

    Raises:
        JtileShapeError: non-float logits, non-integer labels, or labels whose shape is not
            `logits.shape[:-1]`.
    """
    op = "cross_entropy"
    checks.require_float(op, "logits", logits)
    checks.require_rank(op, "logits", logits, 1)
    checks.require_nonempty(op, "logits", logits)
    checks.require_integer(op, "labels", labels)
    checks.require_shape(op, "labels", labels, logits.shape[:-1],
                         f"one class index per row of logits {checks.describe(logits)}")
    interpret = resolve_interpret(interpret)
    vocab = logits.shape[-1]
    loss = _cross_entropy(logits.reshape(-1, vocab), labels.reshape(-1).astype(jnp.int32),
                          interpret)
    return loss.reshape(logits.shape[:-1])


