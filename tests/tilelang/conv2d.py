"""2-D convolution, NHWC, as an implicit GEMM, as TileLang's convolution example writes it.

The output (N*OH*OW, F) is a GEMM of the im2col matrix (N*OH*OW, KH*KW*C) with the weights
viewed as (KH*KW*C, F) through `T.Tensor(shape, dtype, kernel.data)`. The im2col tile comes from
`T.c2d_im2col` (use_im2col=True, TileLang's Hopper path) or from a gather in `T.Parallel` with
`T.if_then_else` for the padding (its portable path). Like TileLang's example, every shared
tile is annotated swizzled, the output tile out_shared included (swizzle_epilogue).
"""

import numpy as np

import jtile.language as T


def convolution(N, C, H, W, F, K, S, D, P, block_M, block_N, block_K, num_stages, threads,
                dtype="float16", accum_dtype="float", use_im2col=False, swizzle_epilogue=True):
    KH, KW = K, K
    OH = (H + 2 * P - D * (K - 1) - 1) // S + 1
    OW = (W + 2 * P - D * (K - 1) - 1) // S + 1

    @T.prim_func
    def main(
            data: T.Tensor((N, H, W, C), dtype),
            kernel: T.Tensor((KH, KW, C, F), dtype),
            out: T.Tensor((N, OH, OW, F), dtype),
    ):
        with T.Kernel(
                T.ceildiv(F, block_N), T.ceildiv(N * OH * OW, block_M),
                threads=threads) as (bx, by):
            data_shared = T.alloc_shared((block_M, block_K), dtype)
            kernel_shared = T.alloc_shared((block_K, block_N), dtype)
            out_local = T.alloc_fragment((block_M, block_N), accum_dtype)
            out_shared = T.alloc_shared((block_M, block_N), dtype)

            kernel_flat = T.Tensor((KH * KW * C, F), dtype, kernel.data)
            out_flat = T.Tensor((N * OH * OW, F), dtype, out.data)

            T.annotate_layout({
                data_shared: T.make_swizzled_layout(data_shared),
                kernel_shared: T.make_swizzled_layout(kernel_shared),
            })
            if swizzle_epilogue:
                T.annotate_layout({out_shared: T.make_swizzled_layout(out_shared)})

            T.clear(out_local)
            for k_iter in T.Pipelined(T.ceildiv(KH * KW * C, block_K), num_stages=num_stages):
                if use_im2col:
                    T.c2d_im2col(data, data_shared, by, k_iter, KH, S, D, P)
                else:
                    for i, j in T.Parallel(block_M, block_K):
                        k = k_iter * block_K + j
                        m = by * block_M + i
                        access_h = m % (OH * OW) // OW * S + k // (KW * C) * D - P
                        access_w = m % OW * S + k // C % KW * D - P
                        # Rows past N*OH*OW (the ragged last block) read nothing either.
                        in_bound = ((access_h >= 0) and (access_w >= 0) and (access_h < H) and
                                    (access_w < W) and (m < N * OH * OW))
                        data_shared[i, j] = T.if_then_else(
                            in_bound, data[m // (OH * OW), access_h, access_w, k % C], 0)
                T.copy(kernel_flat[k_iter * block_K, bx * block_N], kernel_shared)
                T.gemm(data_shared, kernel_shared, out_local)

            T.copy(out_local, out_shared)
            T.copy(out_shared, out_flat[by * block_M, bx * block_N])

    return main


def reference(data, weight, stride, padding, dilation):
    """NHWC data (N, H, W, C) convolved with HWIO weights (KH, KW, C, F), float32."""
    import jax
    import jax.numpy as jnp

    out = jax.lax.conv_general_dilated(
        jnp.asarray(data, jnp.float32), jnp.asarray(weight, jnp.float32),
        window_strides=(stride, stride), padding=[(padding, padding)] * 2,
        rhs_dilation=(dilation, dilation), dimension_numbers=("NHWC", "HWIO", "NHWC"),
        precision=jax.lax.Precision.HIGHEST)
    return np.asarray(out, np.float32)
