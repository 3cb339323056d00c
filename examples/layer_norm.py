"""Level 3: layer norm forward and backward as two jtile kernels, paired with jax.custom_vjp.

The forward saves each row's mean and 1/std; the backward recomputes the normalised row and
produces dX, plus per-block partial sums of dW and dB (column reductions, T.reduce_sum over
dim 0) that a jnp.sum finishes.
"""

import functools

import jax
import jax.numpy as jnp

import jtile
import jtile.language as T

try:
    from examples._common import INTERPRET, check
except ImportError:
    from _common import INTERPRET, check


def layer_norm_fwd_kernel(X, W, B, *, block_rows, threads, eps):
    M, N = X.shape
    Y = T.empty((M, N), X.dtype)
    Mean = T.empty((M,), "float32")
    Rstd = T.empty((M,), "float32")
    with T.Kernel(T.ceildiv(M, block_rows), threads=threads) as bx:
        x = T.alloc_fragment((block_rows, N), "float32")
        sq = T.alloc_fragment((block_rows, N), "float32")
        mean = T.alloc_fragment((block_rows,), "float32")
        rstd = T.alloc_fragment((block_rows,), "float32")
        T.copy(X[bx * block_rows, 0], x)
        T.reduce_sum(x, mean, dim=1)
        for i in T.Parallel(block_rows):
            mean[i] = mean[i] / N
        for i, j in T.Parallel(block_rows, N):
            x[i, j] = x[i, j] - mean[i]
            sq[i, j] = x[i, j] * x[i, j]
        T.reduce_sum(sq, rstd, dim=1)
        for i in T.Parallel(block_rows):
            rstd[i] = T.rsqrt(rstd[i] / N + eps)
        for i, j in T.Parallel(block_rows, N):
            x[i, j] = x[i, j] * rstd[i] * W[j] + B[j]
        T.copy(x, Y[bx * block_rows, 0])
        for i in T.Parallel(block_rows):
            with T.If(bx * block_rows + i < M):
                Mean[bx * block_rows + i] = mean[i]
                Rstd[bx * block_rows + i] = rstd[i]
    return Y, Mean, Rstd


def layer_norm_bwd_kernel(X, W, DY, Mean, Rstd, *, block_rows, threads):
    M, N = X.shape
    blocks = T.ceildiv(M, block_rows)
    DX = T.empty((M, N), X.dtype)
    DW = T.empty((blocks, N), "float32")
    DB = T.empty((blocks, N), "float32")
    with T.Kernel(blocks, threads=threads) as bx:
        xhat = T.alloc_fragment((block_rows, N), "float32")
        dy = T.alloc_fragment((block_rows, N), "float32")
        wdy = T.alloc_fragment((block_rows, N), "float32")
        prod = T.alloc_fragment((block_rows, N), "float32")
        c1 = T.alloc_fragment((block_rows,), "float32")
        c2 = T.alloc_fragment((block_rows,), "float32")
        col = T.alloc_fragment((N,), "float32")
        T.copy(X[bx * block_rows, 0], xhat)
        T.copy(DY[bx * block_rows, 0], dy)
        for i, j in T.Parallel(block_rows, N):
            row = T.min(bx * block_rows + i, M - 1)
            xhat[i, j] = (xhat[i, j] - Mean[row]) * Rstd[row]
            wdy[i, j] = W[j] * dy[i, j]
            prod[i, j] = xhat[i, j] * wdy[i, j]
        T.reduce_sum(prod, c1, dim=1)
        T.reduce_sum(wdy, c2, dim=1)
        for i, j in T.Parallel(block_rows, N):
            row = T.min(bx * block_rows + i, M - 1)
            wdy[i, j] = (wdy[i, j] - (xhat[i, j] * c1[i] + c2[i]) / N) * Rstd[row]
            prod[i, j] = dy[i, j] * xhat[i, j]
        T.copy(wdy, DX[bx * block_rows, 0])
        T.reduce_sum(prod, col, dim=0)
        T.copy(col, DW[bx, 0])
        T.reduce_sum(dy, col, dim=0)
        T.copy(col, DB[bx, 0])
    return DX, DW, DB


def _launchers(block_rows, threads, eps, interpret):
    fwd = jtile.pallas_like(functools.partial(layer_norm_fwd_kernel, block_rows=block_rows,
                                              threads=threads, eps=eps),
                            name="layer_norm_fwd", interpret=interpret)
    bwd = jtile.pallas_like(functools.partial(layer_norm_bwd_kernel, block_rows=block_rows,
                                              threads=threads),
                            name="layer_norm_bwd", interpret=interpret)
    return fwd, bwd


def make_layer_norm(*, block_rows=1, threads=256, eps=1e-5, interpret=INTERPRET):
    """A differentiable layer_norm(x, w, b) over the last axis of a 2-D x."""
    fwd_kernel, bwd_kernel = _launchers(block_rows, threads, eps, interpret)

    @jax.custom_vjp
    def layer_norm(x, w, b):
        return fwd_kernel(x, w, b)[0]

    def fwd(x, w, b):
        y, mean, rstd = fwd_kernel(x, w, b)
        return y, (x, w, mean, rstd)

    def bwd(res, dy):
        x, w, mean, rstd = res
        dx, dw, db = bwd_kernel(x, w, dy, mean, rstd)
        return dx, jnp.sum(dw, axis=0).astype(w.dtype), jnp.sum(db, axis=0).astype(w.dtype)

    layer_norm.defvjp(fwd, bwd)
    return layer_norm


def reference(x, w, b, eps=1e-5):
    x = x.astype(jnp.float32)
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) * jax.lax.rsqrt(var + eps) * w + b


def main():
    m, n = 64, 1024
    keys = jax.random.split(jax.random.key(0), 4)
    x = jax.random.normal(keys[0], (m, n), jnp.float32) * 2 + 0.5
    w = jax.random.normal(keys[1], (n,), jnp.float32)
    b = jax.random.normal(keys[2], (n,), jnp.float32)
    dy = jax.random.normal(keys[3], (m, n), jnp.float32)
    layer_norm = make_layer_norm()
    check("layer norm forward (64, 1024) float32", jax.jit(layer_norm)(x, w, b),
          reference(x, w, b), 1e-5)
    loss = lambda f: (lambda x, w, b: jnp.sum(f(x, w, b) * dy))  # noqa: E731
    grads = jax.jit(jax.grad(loss(layer_norm), argnums=(0, 1, 2)))(x, w, b)
    ref_grads = jax.grad(loss(reference), argnums=(0, 1, 2))(x, w, b)
    for name, g, r in zip(("dx", "dw", "db"), grads, ref_grads):
        check(f"layer norm backward {name}", g, r, 1e-4)


if __name__ == "__main__":
    main()
