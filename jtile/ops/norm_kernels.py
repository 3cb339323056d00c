"""The jtile kernels behind `jtile.ops.rms_norm` and `jtile.ops.layer_norm`.

Forward kernels take `block_rows` whole rows per block into registers (one 16-byte load per
thread per access, one read of each element), reduce them across the block and write the
normalised rows plus each row's float32 statistics. Backward kernels run a grid of at most 512
blocks that loop over row groups: each recomputes the normalised rows from the saved
statistics, writes dX, and accumulates dW (and dB) for its rows in registers, so the weight
gradients leave the kernel as one partial row per block that `column_sum` finishes. Where two
steps' rows fit `rows.STAGING_BYTES`, the backward's row groups load through shared memory in
a `T.Pipelined` loop, so the next steps' rows are in flight while this one computes.

All kernels run on any arch jtile targets (sm_80+): fragments, block reductions, cp.async or
TMA for the staged loads.
"""

from __future__ import annotations

import jtile.language as T
from jtile.ops.row_io import load_rows, load_step, row_steps, staging

F32 = "float32"


def rms_norm_fwd_kernel(X, W, R=None, *, tiling, eps):
    """y = x * rsqrt(mean(x**2) + eps) * w per row, over s = x + r when a residual R is given.

    Shapes: X, R (M, N) and W (N,) in global memory; outputs Y (M, N) in X's dtype, Rstd (M,)
    float32, and with R the sum S (M, N) in X's dtype (rounded, then normalised, as
    `jnp` computes `x + r` then normalises it).
    """
    M, N = X.shape
    rows = tiling.block_rows
    cols = tiling.padded
    Y = T.empty((M, N), X.dtype)
    Rstd = T.empty((M,), F32)
    S = T.empty((M, N), X.dtype) if R is not None else None
    with T.Kernel(T.ceildiv(M, rows), threads=tiling.threads) as bx:
        x_in = T.alloc_fragment((rows, cols), X.dtype)
        x = T.alloc_fragment((rows, cols), F32)
        sq = T.alloc_fragment((rows, cols), F32)
        rstd = T.alloc_fragment((rows,), F32)
        w = T.alloc_fragment((cols,), W.dtype)
        load_rows(X, x_in, bx * rows, tiling)
        T.copy(W[0], w)
        if R is not None:
            r_in = T.alloc_fragment((rows, cols), R.dtype)
            load_rows(R, r_in, bx * rows, tiling)
            for i, j in T.Parallel(rows, cols):
                x_in[i, j] = T.cast(T.cast(x_in[i, j], F32) + T.cast(r_in[i, j], F32), X.dtype)
            T.copy(x_in, S[bx * rows, 0])
        for i, j in T.Parallel(rows, cols):
            x[i, j] = T.cast(x_in[i, j], F32)
            sq[i, j] = x[i, j] * x[i, j]
        # Padding columns load as zeros and add nothing to the sum of squares.
        T.reduce_sum(sq, rstd, dim=1)
        for i in T.Parallel(rows):
            rstd[i] = T.rsqrt(rstd[i] / N + eps)
        for i, j in T.Parallel(rows, cols):
            x_in[i, j] = T.cast(x[i, j] * rstd[i] * T.cast(w[j], F32), X.dtype)
        T.copy(x_in, Y[bx * rows, 0])
        for i in T.Parallel(rows):
            with T.If(bx * rows + i < M):
                Rstd[bx * rows + i] = rstd[i]
    if S is not None:
        return Y, Rstd, S
    return Y, Rstd


def rms_norm_bwd_kernel(X, W, DY, Rstd, DS=None, *, tiling, blocks, steps, stages):
    """dX = rstd * (w*dy - xhat * mean(xhat * w*dy)) (+ dS), and per-block partial dW rows.

    Shapes: X (M, N) (the normalised input: x, or x + residual), W (N,), DY (M, N), Rstd (M,)
    float32, DS (M, N) the cotangent of the returned sum when a residual was given; outputs
    DX (M, N) in X's dtype and DWp (blocks, N) float32.
    """
    M, N = X.shape
    rows = tiling.block_rows
    cols = tiling.padded
    DX = T.empty((M, N), X.dtype)
    DWp = T.empty((blocks, N), F32)
    with T.Kernel(blocks, threads=tiling.threads) as bx:
        sources = (X, DY) if DS is None else (X, DY, DS)
        staged = staging(sources, tiling, stages)
        frags = [T.alloc_fragment((rows, cols), src.dtype) for src in sources]
        x_in, dy_in = frags[0], frags[1]
        w = T.alloc_fragment((cols,), W.dtype)
        xhat = T.alloc_fragment((rows, cols), F32)
        wdy = T.alloc_fragment((rows, cols), F32)
        prod = T.alloc_fragment((rows, cols), F32)
        dw_acc = T.alloc_fragment((rows, cols), F32)
        dot = T.alloc_fragment((rows,), F32)
        dw = T.alloc_fragment((cols,), F32)
        T.copy(W[0], w)
        T.clear(dw_acc)
        for step in row_steps(steps, stages):
            row0 = (step * blocks + bx) * rows
            # Rows past M load as zeros: they add nothing to dW and their dX is not stored.
            load_step(sources, staged, frags, row0, tiling)
            for i, j in T.Parallel(rows, cols):
                xhat[i, j] = T.cast(x_in[i, j], F32) * Rstd[T.min(row0 + i, M - 1)]
                wdy[i, j] = T.cast(dy_in[i, j], F32) * T.cast(w[j], F32)
                prod[i, j] = xhat[i, j] * wdy[i, j]
            T.reduce_sum(prod, dot, dim=1)
            for i, j in T.Parallel(rows, cols):
                grad = (wdy[i, j] - xhat[i, j] * (dot[i] / N)) * Rstd[T.min(row0 + i, M - 1)]
                if DS is not None:
                    grad = grad + T.cast(frags[2][i, j], F32)
                x_in[i, j] = T.cast(grad, X.dtype)
                dw_acc[i, j] = dw_acc[i, j] + T.cast(dy_in[i, j], F32) * xhat[i, j]
            T.copy(x_in, DX[row0, 0])
        T.reduce_sum(dw_acc, dw, dim=0)
        T.copy(dw, DWp[bx, 0])
    return DX, DWp


def layer_norm_fwd_kernel(X, W, B, *, tiling, eps):
    """y = (x - mean) * rsqrt(var + eps) * w + b per row, float32 statistics.

    Shapes: X (M, N), W and B (N,) in global memory; outputs Y (M, N) in X's dtype, Mean (M,)
    and Rstd (M,) float32.
    """
    M, N = X.shape
    rows = tiling.block_rows
    cols = tiling.padded
    Y = T.empty((M, N), X.dtype)
    Mean = T.empty((M,), F32)
    Rstd = T.empty((M,), F32)
    with T.Kernel(T.ceildiv(M, rows), threads=tiling.threads) as bx:
        x_in = T.alloc_fragment((rows, cols), X.dtype)
        x = T.alloc_fragment((rows, cols), F32)
        sq = T.alloc_fragment((rows, cols), F32)
        mean = T.alloc_fragment((rows,), F32)
        rstd = T.alloc_fragment((rows,), F32)
        w = T.alloc_fragment((cols,), W.dtype)
        b = T.alloc_fragment((cols,), B.dtype)
        load_rows(X, x_in, bx * rows, tiling)
        T.copy(W[0], w)
        T.copy(B[0], b)
        for i, j in T.Parallel(rows, cols):
            x[i, j] = T.cast(x_in[i, j], F32)
        T.reduce_sum(x, mean, dim=1)
        for i in T.Parallel(rows):
            mean[i] = mean[i] / N
        for i, j in T.Parallel(rows, cols):
            if tiling.is_padded:  # padding columns must not add mean**2 to the variance
                x[i, j] = T.if_then_else(j < N, x[i, j] - mean[i], 0.0)
            else:
                x[i, j] = x[i, j] - mean[i]
            sq[i, j] = x[i, j] * x[i, j]
        T.reduce_sum(sq, rstd, dim=1)
        for i in T.Parallel(rows):
            rstd[i] = T.rsqrt(rstd[i] / N + eps)
        for i, j in T.Parallel(rows, cols):
            x_in[i, j] = T.cast(x[i, j] * rstd[i] * T.cast(w[j], F32) + T.cast(b[j], F32),
                                X.dtype)
        T.copy(x_in, Y[bx * rows, 0])
        for i in T.Parallel(rows):
            with T.If(bx * rows + i < M):
                Mean[bx * rows + i] = mean[i]
                Rstd[bx * rows + i] = rstd[i]
    return Y, Mean, Rstd


def layer_norm_bwd_kernel(X, W, DY, Mean, Rstd, *, tiling, blocks, steps, stages):
    """dX = rstd * (w*dy - mean(w*dy) - xhat * mean(xhat * w*dy)), partial dW and dB rows.

    Shapes: X, DY (M, N), W (N,), Mean and Rstd (M,) float32; outputs DX (M, N) in X's dtype,
    DWp and DBp (blocks, N) float32.
    """
    M, N = X.shape
    rows = tiling.block_rows
    cols = tiling.padded
    DX = T.empty((M, N), X.dtype)
    DWp = T.empty((blocks, N), F32)
    DBp = T.empty((blocks, N), F32)
    with T.Kernel(blocks, threads=tiling.threads) as bx:
        sources = (X, DY)
        staged = staging(sources, tiling, stages)
        x_in = T.alloc_fragment((rows, cols), X.dtype)
        dy_in = T.alloc_fragment((rows, cols), DY.dtype)
        w = T.alloc_fragment((cols,), W.dtype)
        xhat = T.alloc_fragment((rows, cols), F32)
        wdy = T.alloc_fragment((rows, cols), F32)
        prod = T.alloc_fragment((rows, cols), F32)
        dw_acc = T.alloc_fragment((rows, cols), F32)
        db_acc = T.alloc_fragment((rows, cols), F32)
        dot = T.alloc_fragment((rows,), F32)
        wdy_sum = T.alloc_fragment((rows,), F32)
        col = T.alloc_fragment((cols,), F32)
        T.copy(W[0], w)
        T.clear(dw_acc)
        T.clear(db_acc)
        for step in row_steps(steps, stages):
            row0 = (step * blocks + bx) * rows
            load_step(sources, staged, (x_in, dy_in), row0, tiling)
            for i, j in T.Parallel(rows, cols):
                row = T.min(row0 + i, M - 1)
                # Padding columns have dy = 0, so their xhat never reaches a sum.
                xhat[i, j] = (T.cast(x_in[i, j], F32) - Mean[row]) * Rstd[row]
                wdy[i, j] = T.cast(dy_in[i, j], F32) * T.cast(w[j], F32)
                prod[i, j] = xhat[i, j] * wdy[i, j]
            T.reduce_sum(prod, dot, dim=1)
            T.reduce_sum(wdy, wdy_sum, dim=1)
            for i, j in T.Parallel(rows, cols):
                row = T.min(row0 + i, M - 1)
                grad = (wdy[i, j] - (xhat[i, j] * dot[i] + wdy_sum[i]) / N) * Rstd[row]
                dy = T.cast(dy_in[i, j], F32)
                x_in[i, j] = T.cast(grad, X.dtype)
                dw_acc[i, j] = dw_acc[i, j] + dy * xhat[i, j]
                db_acc[i, j] = db_acc[i, j] + dy
            T.copy(x_in, DX[row0, 0])
        T.reduce_sum(dw_acc, col, dim=0)
        T.copy(col, DWp[bx, 0])
        T.reduce_sum(db_acc, col, dim=0)
        T.copy(col, DBp[bx, 0])
    return DX, DWp, DBp
