"""`jtile.ops.linear_cross_entropy`: `cross_entropy(h @ w, labels)` without the logits.

At 16k tokens and a 128k vocabulary the float32 logits alone take 8 GiB. Like
Cut-Cross-Entropy, this op computes logits one register tile at a time and reduces them at
once:

Forward: one kernel (`lce_forward_kernel`) over (row blocks x vocabulary blocks) computes each
(128 x 256) logits tile with a TMA + wgmma GEMM over the hidden axis and reduces it to one
logsumexp per row and block, plus the label's logit. The (rows, vocab / 256) partials (0.4%
of the logits) are combined by a logsumexp in `jnp`.

Backward: the vocabulary is walked in chunks (a `lax.fori_loop`); for each chunk one kernel
recomputes the chunk's logits tile by tile and writes `dlogits = g * (softmax - onehot)` in
the operands' dtype, and two GEMMs of `jtile.ops.matmul_kernels` turn it into `dh +=
dlogits @ w_chunk^T` (float32, accumulated in place across chunks) and `dw[:, chunk] =
h^T @ dlogits`. Tile-wise atomics were the alternative: every dh element would take one atomic
add per 256 vocabulary columns (512 at a 128k vocabulary), far slower than the GEMMs; chunks
keep every product a plain tensor-core GEMM. The chunk is as wide as a 256 MiB dlogits
buffer allows (8192 columns at 16k bfloat16 rows; the whole vocabulary for short inputs):
wide enough that the three GEMMs per chunk run at full size and the float32 dh read-modify-
write costs a few percent, narrow enough that the backward's extra memory is a small
multiple of h's.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jtile.ops import checks
from jtile.ops.linear_cross_entropy_kernels import (
    launcher,
    lce_dlogits_kernel,
    lce_forward_kernel,
    logits_tiling,
)
from jtile.ops.matmul import compile_arch
from jtile.ops.matmul_kernels import gemm
from jtile.ops.mode import resolve_interpret
from jtile.ops.sharding import match_varying, witness

__all__ = ["linear_cross_entropy"]

# The most bytes one chunk's dlogits may take in the backward.
CHUNK_BYTES = 1 << 28
# The narrowest chunk: below this the backward's GEMMs get too shallow (dh's K is the chunk).
MIN_CHUNK = 1024


def _tma_columns(dtype) -> int:
    """Columns a row length must be a multiple of for TMA: 16-byte row strides."""
    return 16 // np.dtype(dtype).itemsize


def _pad_columns(x, multiple: int):
    """x with zero columns appended up to a multiple of `multiple` (x itself when aligned)."""
    extra = -x.shape[1] % multiple
    return x if extra == 0 else jnp.pad(x, ((0, 0), (0, extra)))


def chunk_width(rows: int, vocab: int, dtype, block_cols: int) -> int:
    """The vocabulary chunk of the backward: a multiple of the logits tile's width whose
    dlogits fit in CHUNK_BYTES (at least MIN_CHUNK columns), and no wider than needed."""
    width = CHUNK_BYTES // max(1, rows * np.dtype(dtype).itemsize)
    width = max(MIN_CHUNK, width) // block_cols * block_cols
    return min(width, -(-vocab // block_cols) * block_cols)


def _forward(h, w, labels, interpret, arch):
    vocab = w.shape[1]
    tiling = logits_tiling(h.shape[0], h.dtype, arch, vocab)
    run = launcher(lce_forward_kernel, "lce_fwd", tiling, interpret, vocab=vocab)
    partial, picked = run(h, _pad_columns(w, _tma_columns(w.dtype)), labels)
    lse = jax.nn.logsumexp(partial, axis=1)
    # Rows without a valid label get NaN, as jnp's take_along_axis gives for such an index.
    loss = jnp.where(labels >= 0, lse - picked, jnp.nan)
    return loss, lse


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def _linear_cross_entropy(h, w, labels, interpret, arch):
    return _forward(h, w, labels, interpret, arch)[0]


def _lce_fwd(h, w, labels, interpret, arch):
    loss, lse = _forward(h, w, labels, interpret, arch)
    return loss, (h, w, labels, lse)


def _zeros_varying_like(shape, dtype, *likes):
    """Zeros that vary over every mesh axis any of `likes` varies over (the type a loop body
    that reads all of them gives its carry inside shard_map; nothing outside it)."""
    carrier = sum(witness(x).astype(jnp.float32) for x in likes)  # a (0,) union of the types
    return match_varying(jnp.zeros(shape, dtype), carrier)


def _chunk_grads(h, w_chunk, labels, lse, g, dh, tiling, interpret, arch):
    """dlogits of one chunk, then `dh += dlogits @ w_chunk^T` and `h^T @ dlogits`."""
    dlogits = launcher(lce_dlogits_kernel, "lce_dlogits", tiling, interpret)(
        h, w_chunk, labels, lse, g)
    dh = gemm(dlogits, w_chunk, trans_b=True, out_dtype=jnp.float32, interpret=interpret,
              arch=arch, accumulate_into=dh)
    dw_chunk = gemm(h, dlogits, trans_a=True, out_dtype=w_chunk.dtype, interpret=interpret,
                    arch=arch)
    return dh, dw_chunk


def _lce_bwd(interpret, arch, saved, g):
    h, w, labels, lse = saved
    rows, hidden = h.shape
    vocab = w.shape[1]
    g = g.astype(jnp.float32)
    tiling = logits_tiling(rows, h.dtype, arch, vocab)
    width = chunk_width(rows, vocab, h.dtype, tiling.block_cols)
    full, tail = divmod(vocab, width)
    likes = (h, w, labels, lse, g)
    dh = _zeros_varying_like((rows, hidden), jnp.float32, *likes)
    dw = _zeros_varying_like((hidden, vocab), w.dtype, *likes)

    def chunk(c, carry):
        dh, dw = carry
        start = c * width
        w_chunk = lax.dynamic_slice_in_dim(w, start, width, axis=1)
        dh, dw_chunk = _chunk_grads(h, w_chunk, labels - start, lse, g, dh, tiling, interpret,
                                    arch)
        return dh, lax.dynamic_update_slice_in_dim(dw, dw_chunk, start, axis=1)

    if full == 1:
        dh, dw = chunk(0, (dh, dw))
    elif full > 1:
        dh, dw = lax.fori_loop(0, full, chunk, (dh, dw))
    if tail:
        # The last, narrower chunk: padded to TMA's 16-byte rows (zero columns of w add
        # nothing to dh, and their dw columns are cut off).
        start = full * width
        w_tail = _pad_columns(w[:, start:], _tma_columns(w.dtype))
        dh, dw_tail = _chunk_grads(h, w_tail, labels - start, lse, g, dh, tiling, interpret,
                                   arch)
        dw = lax.dynamic_update_slice_in_dim(dw, dw_tail[:, :tail], start, axis=1)
    return match_varying(dh.astype(h.dtype), h), match_varying(dw, w), None


_linear_cross_entropy.defvjp(_lce_fwd, _lce_bwd)


def linear_cross_entropy(h, w, labels, *, interpret=None):
    """Per-example `cross_entropy(h @ w, labels)`, float32, without materialising the logits.

    `logsumexp(h @ w) - (h @ w)[label]` per row, the products accumulated in float32 on the
    tensor cores (TMA + wgmma on sm_90a) and reduced tile by tile: memory beyond the inputs
    and outputs is O(rows x vocab / 256) in the forward and one vocabulary chunk of dlogits
    (at most 256 MiB, see `chunk_width`) plus a float32 copy of dh in the backward.
    Differentiable in h and w (labels get no gradient); batchable with vmap; inside shard_map
    with h and labels sharded over the batch and w replicated, w's gradient comes back
    replicated (summed over the batch shards).

    Labels follow `jnp` indexing of the logits, `take_along_axis`'s default: a negative label
    counts from the end (label + vocab), and a label outside [-vocab, vocab) gives a NaN loss
    and no one-hot term in the gradient (mask such rows, e.g. with `jnp.where`, as one masks
    padding tokens). Labels are traced values, so they cannot be refused up front.

    Args:
        h: (..., hidden) float32, bfloat16 or float16 (bfloat16 is the fast path).
        w: (hidden, vocab) of h's dtype. A vocabulary that is not a multiple of 8 (4 for
            float32) is padded with zero columns for the forward kernel (one copy of w), as
            TMA needs 16-byte row strides.
        labels: (...) integers, h's leading shape.
        interpret: True, False, or None (see `jtile.ops.mode.resolve_interpret`).

    Returns:
        float32 losses of shape `h.shape[:-1]`.

    Raises:
        JtileShapeError: non-float h or w, different dtypes, w not (hidden, vocab), or labels
            whose shape is not `h.shape[:-1]`.
    """
    op = "linear_cross_entropy"
    checks.require_float(op, "h", h)
    checks.require_rank(op, "h", h, 1)
    checks.require_nonempty(op, "h", h)
    checks.require_float(op, "w", w)
    checks.require_rank(op, "w", w, 2)
    checks.require_nonempty(op, "w", w)
    if w.ndim != 2 or w.shape[0] != h.shape[-1]:
        raise checks.fail(op, f"w is {checks.describe(w)} but must be (hidden, vocab) with "
                              f"hidden = {h.shape[-1]}, h's last axis (h is "
                              f"{checks.describe(h)})")
    checks.require_same_dtype(op, ("h", "w"), (h, w))
    checks.require_integer(op, "labels", labels)
    checks.require_shape(op, "labels", labels, h.shape[:-1],
                         f"one class index per row of h {checks.describe(h)}")
    interpret = resolve_interpret(interpret)
    arch = compile_arch(interpret)
    vocab = w.shape[1]
    flat = labels.reshape(-1).astype(jnp.int32)
    flat = jnp.where(flat < 0, flat + vocab, flat)
    flat = jnp.where((flat >= 0) & (flat < vocab), flat, -1)
    loss = _linear_cross_entropy(h.reshape(-1, h.shape[-1]), w, flat, interpret, arch)
    return loss.reshape(h.shape[:-1])
