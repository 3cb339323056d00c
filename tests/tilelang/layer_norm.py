"""Layer norm forward and backward in TileLang's style.

The forward keeps `blk_m` rows per block and saves each row's mean and 1/std. The backward
walks its rows one at a time (`T.serial`) with (1, D) fragments, reads the row sums back
through (1,) fragments inside a 2-D `T.Parallel`, and accumulates dgamma and dbeta in
(D,) fragments that every block finally adds into global memory with `T.atomic_add`, so the
column sums are complete when the kernel ends (no second reduction).

TileLang's backward accumulates into tensors the caller zeroes and passes in (its `out_idx`
names only DX as an output). jtile's inputs are immutable JAX arrays, so the kernel in
TileLang's signature (`layer_norm_bwd`) runs when the caller passes every parameter and names
the written ones in `input_output_aliases={5: 0, 6: 1, 7: 2}` (TileLang's in-place call); the
Pallas-style form (`layer_norm_bwd_aliased`) takes the zeroed tensors as separate inputs
aliased to the DGamma and DBeta outputs. Both forms share one body.
"""

import jax
import jax.numpy as jnp

import jtile.language as T


def layer_norm_fwd(N, D, eps=1e-5, blk_m=1, threads=256, in_dtype="bfloat16",
                   out_dtype="bfloat16"):
    """Y = (X - mean) * rstd * gamma + beta over rows of X (N, D); also Mean and Rstd (N,)."""
    accum_dtype = "float"

    @T.prim_func
    def main(
        X: T.Tensor((N, D), in_dtype),
        gamma: T.Tensor((D,), in_dtype),
        beta: T.Tensor((D,), in_dtype),
        Y: T.Tensor((N, D), out_dtype),
        Mean: T.Tensor((N,), accum_dtype),
        Rstd: T.Tensor((N,), accum_dtype),
    ):
        with T.Kernel(T.ceildiv(N, blk_m), threads=threads) as bx:
            X_smem = T.alloc_shared((blk_m, D), in_dtype)
            G_smem = T.alloc_shared((D,), in_dtype)
            B_smem = T.alloc_shared((D,), in_dtype)
            X_local = T.alloc_fragment((blk_m, D), accum_dtype)
            X_sq_local = T.alloc_fragment((blk_m, D), accum_dtype)
            sum_row = T.alloc_fragment((blk_m,), accum_dtype)
            sumsq_row = T.alloc_fragment((blk_m,), accum_dtype)
            mean_row = T.alloc_fragment((blk_m,), accum_dtype)
            rstd_row = T.alloc_fragment((blk_m,), accum_dtype)

            T.copy(X[bx * blk_m, 0], X_smem)
            T.copy(gamma, G_smem)
            T.copy(beta, B_smem)
            for i, j in T.Parallel(blk_m, D):
                X_local[i, j] = T.Cast(accum_dtype, X_smem[i, j])
                X_sq_local[i, j] = X_local[i, j] * X_local[i, j]
            T.reduce_sum(X_local, sum_row, dim=1)
            T.reduce_sum(X_sq_local, sumsq_row, dim=1)

            inv_D = T.float32(1.0) / T.Cast(accum_dtype, D)
            for i in T.Parallel(blk_m):
                mean_row[i] = sum_row[i] * inv_D
                rstd_row[i] = T.rsqrt(sumsq_row[i] * inv_D - mean_row[i] * mean_row[i] +
                                      T.Cast(accum_dtype, eps))
                if bx * blk_m + i < N:   # the last block's rows past N are padding
                    Mean[bx * blk_m + i] = mean_row[i]
                    Rstd[bx * blk_m + i] = rstd_row[i]
            for i, j in T.Parallel(blk_m, D):
                norm = (X_local[i, j] - mean_row[i]) * rstd_row[i]
                X_smem[i, j] = T.Cast(out_dtype, norm * T.Cast(accum_dtype, G_smem[j]) +
                                      T.Cast(accum_dtype, B_smem[j]))
            T.copy(X_smem, Y[bx * blk_m, 0])

    return main


def _backward_body(N, D, blk_m, threads, in_dtype):
    accum_dtype = "float"

    @T.macro
    def body(DY, X, gamma, Mean, Rstd, DX, DGamma, DBeta):
        with T.Kernel(T.ceildiv(N, blk_m), threads=threads) as bx:
            DY_smem = T.alloc_shared((1, D), in_dtype)
            X_smem = T.alloc_shared((1, D), in_dtype)
            G_smem = T.alloc_shared((D,), in_dtype)
            DX_smem = T.alloc_shared((1, D), in_dtype)
            x_hat = T.alloc_fragment((1, D), accum_dtype)
            dx_hat = T.alloc_fragment((1, D), accum_dtype)
            dx_hat_x_hat = T.alloc_fragment((1, D), accum_dtype)
            sum_dx_hat = T.alloc_fragment((1,), accum_dtype)
            sum_dx_hat_x_hat = T.alloc_fragment((1,), accum_dtype)
            dgamma_acc = T.alloc_fragment((D,), accum_dtype)
            dbeta_acc = T.alloc_fragment((D,), accum_dtype)

            T.copy(gamma, G_smem)
            T.clear(dgamma_acc)
            T.clear(dbeta_acc)
            inv_D = T.float32(1.0) / T.Cast(accum_dtype, D)

            for k in T.serial(blk_m):
                row = bx * blk_m + k
                if row < N:
                    T.copy(DY[row, 0], DY_smem)
                    T.copy(X[row, 0], X_smem)
                    m_v = Mean[row]
                    r_v = Rstd[row]
                    for i, j in T.Parallel(1, D):
                        xv = T.Cast(accum_dtype, X_smem[i, j])
                        dy_v = T.Cast(accum_dtype, DY_smem[i, j])
                        x_hat[i, j] = (xv - m_v) * r_v
                        dx_hat[i, j] = dy_v * T.Cast(accum_dtype, G_smem[j])
                        dx_hat_x_hat[i, j] = dx_hat[i, j] * x_hat[i, j]
                    T.reduce_sum(dx_hat, sum_dx_hat, dim=1)
                    T.reduce_sum(dx_hat_x_hat, sum_dx_hat_x_hat, dim=1)
                    for i, j in T.Parallel(1, D):
                        c1 = sum_dx_hat_x_hat[0] * inv_D
                        c2 = sum_dx_hat[0] * inv_D
                        DX_smem[i, j] = T.Cast(in_dtype, r_v * (dx_hat[i, j] - c2 - x_hat[i, j] * c1))
                        dy_v = T.Cast(accum_dtype, DY_smem[i, j])
                        dgamma_acc[j] += dy_v * x_hat[i, j]
                        dbeta_acc[j] += dy_v
                    T.copy(DX_smem, DX[row, 0])

            for j in T.Parallel(D):
                T.atomic_add(DGamma[j], dgamma_acc[j], memory_order="relaxed")
                T.atomic_add(DBeta[j], dbeta_acc[j], memory_order="relaxed")

    return body


def layer_norm_bwd(N, D, blk_m=32, threads=256, in_dtype="bfloat16"):
    """TileLang's signature: DX is the output; DGamma and DBeta are caller-zeroed tensors the
    blocks add their column sums into. Launch with all eight arguments and
    `input_output_aliases={5: 0, 6: 1, 7: 2}`; the call returns (DX, DGamma, DBeta)."""
    accum_dtype = "float"
    body = _backward_body(N, D, blk_m, threads, in_dtype)

    @T.prim_func
    def main(
        DY: T.Tensor((N, D), in_dtype),
        X: T.Tensor((N, D), in_dtype),
        gamma: T.Tensor((D,), in_dtype),
        Mean: T.Tensor((N,), accum_dtype),
        Rstd: T.Tensor((N,), accum_dtype),
        DX: T.Tensor((N, D), in_dtype),
        DGamma: T.Tensor((D,), accum_dtype),
        DBeta: T.Tensor((D,), accum_dtype),
    ):
        body(DY, X, gamma, Mean, Rstd, DX, DGamma, DBeta)

    return main


def layer_norm_bwd_aliased(N, D, blk_m=32, threads=256, in_dtype="bfloat16"):
    """The same backward with the zeroed accumulators passed as inputs 5 and 6 and aliased to
    outputs 1 and 2: launch with `input_output_aliases={5: 1, 6: 2}`."""
    accum_dtype = "float"
    body = _backward_body(N, D, blk_m, threads, in_dtype)

    @T.prim_func
    def main(
        DY: T.Tensor((N, D), in_dtype),
        X: T.Tensor((N, D), in_dtype),
        gamma: T.Tensor((D,), in_dtype),
        Mean: T.Tensor((N,), accum_dtype),
        Rstd: T.Tensor((N,), accum_dtype),
        DGamma_zeros: T.Tensor((D,), accum_dtype),
        DBeta_zeros: T.Tensor((D,), accum_dtype),
        DX: T.Tensor((N, D), in_dtype),
        DGamma: T.Tensor((D,), accum_dtype),
        DBeta: T.Tensor((D,), accum_dtype),
    ):
        body(DY, X, gamma, Mean, Rstd, DX, DGamma, DBeta)

    return main


def reference_fwd(x, gamma, beta, eps=1e-5):
    """(y, mean, rstd) in float32."""
    x = jnp.asarray(x, jnp.float32)
    mean = x.mean(-1)
    var = ((x - mean[:, None]) ** 2).mean(-1)
    rstd = jax.lax.rsqrt(var + eps)
    y = (x - mean[:, None]) * rstd[:, None] * jnp.asarray(gamma, jnp.float32) + \
        jnp.asarray(beta, jnp.float32)
    return y, mean, rstd


def reference_bwd(dy, x, gamma, eps=1e-5):
    """(dx, dgamma, dbeta) of sum(layer_norm(x) * dy), by jax.vjp of the float32 forward."""
    f32 = lambda a: jnp.asarray(a, jnp.float32)  # noqa: E731
    _, vjp = jax.vjp(lambda x_, g_, b_: reference_fwd(x_, g_, b_, eps)[0],
                     f32(x), f32(gamma), jnp.zeros_like(f32(gamma)))
    return vjp(f32(dy))
