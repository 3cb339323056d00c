"""Kernels that read fragments broadcast across a T.Parallel loop (a (1,) fragment, row and
column vectors, uniform indices, loops that only read vectors, attention-style row vectors of
two gemm accumulators), with numpy references. Used by the layout tests (CPU) and the GPU
suite (compiled against interpret mode)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np

import jtile.language as T

S = jax.ShapeDtypeStruct


def scale_by_scalar_fragment(X, W, O):
    """A (1,) fragment written once and read as s[0] inside T.Parallel(M, N)."""
    M, N = X.shape
    with T.Kernel(1, threads=128):
        x = T.alloc_fragment((M, N), "float32")
        s = T.alloc_fragment((1,), "float32")
        T.copy(X, x)
        for i in T.Parallel(1):
            s[i] = W[0] * 2.0 + W[1]
        for i, j in T.Parallel(M, N):
            x[i, j] = x[i, j] * s[0]
        T.copy(x, O)


def rms_norm_split_k(A, B, *, blk_m=4, blk_k=64):
    """TileLang's split-k RMS norm: the second pass scales a shared tile by a row vector, a
    loop whose only fragment is that vector."""
    M, N = A.shape
    with T.Kernel(T.ceildiv(M, blk_m), threads=128) as bx:
        a_s = T.alloc_shared((blk_m, blk_k), "float32")
        acc = T.alloc_fragment((blk_m, blk_k), "float32")
        pw = T.alloc_fragment((blk_m,), "float32")
        T.clear(acc)
        for k in T.serial(N // blk_k):
            T.copy(A[bx * blk_m, k * blk_k], a_s)
            for i, j in T.Parallel(blk_m, blk_k):
                acc[i, j] += a_s[i, j] * a_s[i, j]
        T.reduce_sum(acc, pw, dim=1)
        for i in T.Parallel(blk_m):
            pw[i] = T.rsqrt(pw[i] / N + 1e-6)
        for k in T.serial(N // blk_k):
            T.copy(A[bx * blk_m, k * blk_k], a_s)
            for i, j in T.Parallel(blk_m, blk_k):
                a_s[i, j] *= pw[i]
            T.copy(a_s, B[bx * blk_m, k * blk_k])


def row_and_column_vectors(X, R, C, O):
    """Vectors laid out by their own 1-D loops first (allocated before the tile), then read
    as r[i] and c[j] across the tile."""
    M, N = X.shape
    with T.Kernel(1, threads=128):
        r = T.alloc_fragment((M,), "float32")
        c = T.alloc_fragment((N,), "float32")
        x = T.alloc_fragment((M, N), "float32")
        for i in T.Parallel(M):
            r[i] = R[i] * 0.5
        for j in T.Parallel(N):
            c[j] = C[j] + 1.0
        T.copy(X, x)
        for i, j in T.Parallel(M, N):
            x[i, j] = x[i, j] * r[i] + c[j]
        T.copy(x, O)


def uniform_indices(X, O):
    """A tile read at a constant column (x[i, 0]) and at a serial loop's counter."""
    M, N = X.shape
    with T.Kernel(1, threads=128):
        x = T.alloc_fragment((M, N), "float32")
        first = T.alloc_fragment((M,), "float32")
        T.copy(X, x)
        for i in T.Parallel(M):
            first[i] = x[i, 0]
        for k in T.serial(4):
            for i in T.Parallel(M):
                first[i] += x[i, k + 1]
        for i, j in T.Parallel(M, N):
            O[i, j] = x[i, j] - first[i]


def mla_decode(Q, KV, O, *, block_n=32, threads=256):
    """MLA-decoding-shaped attention (TileLang examples/deepseek_mla): one query token's heads
    against a latent KV; the running max, sum and scale are (H,) row vectors shared by a
    (H, block_n) score accumulator and a (H, D) output accumulator."""
    H, D = Q.shape
    N = KV.shape[0]
    scale = 1.44269504 / D ** 0.5
    with T.Kernel(1, threads=threads):
        q_s = T.alloc_shared((H, D), "float16")
        kv_s = T.alloc_shared((block_n, D), "float16")
        p_s = T.alloc_shared((H, block_n), "float16")
        acc_s = T.alloc_fragment((H, block_n), "float32")
        acc_o = T.alloc_fragment((H, D), "float32")
        m = T.alloc_fragment((H,), "float32")
        m_prev = T.alloc_fragment((H,), "float32")
        alpha = T.alloc_fragment((H,), "float32")
        l = T.alloc_fragment((H,), "float32")  # noqa: E741
        l_blk = T.alloc_fragment((H,), "float32")
        T.copy(Q, q_s)
        T.fill(acc_o, 0)
        T.fill(l, 0)
        T.fill(m, -T.infinity("float32"))
        for k in T.serial(N // block_n):
            T.copy(KV[k * block_n, 0], kv_s)
            T.gemm(q_s, kv_s, acc_s, transpose_B=True, clear_accum=True)
            T.copy(m, m_prev)
            T.reduce_max(acc_s, m, dim=1, clear=False)
            for i in T.Parallel(H):
                alpha[i] = T.exp2(m_prev[i] * scale - m[i] * scale)
            for i, j in T.Parallel(H, block_n):
                acc_s[i, j] = T.exp2(acc_s[i, j] * scale - m[i] * scale)
            T.reduce_sum(acc_s, l_blk, dim=1)
            T.copy(acc_s, p_s)
            for i in T.Parallel(H):
                l[i] = l[i] * alpha[i] + l_blk[i]
            for i, j in T.Parallel(H, D):
                acc_o[i, j] *= alpha[i]
            T.gemm(p_s, kv_s, acc_o)
        for i, j in T.Parallel(H, D):
            acc_o[i, j] /= l[i]
        T.copy(acc_o, O)


def _softmax_attention(q, kv):
    s = q.astype(np.float64) @ kv.astype(np.float64).T / np.sqrt(q.shape[1])
    p = np.exp(s - s.max(1, keepdims=True))
    return (p / p.sum(1, keepdims=True)) @ kv.astype(np.float64)


# name -> (kernel, input specs, output spec, numpy reference, tolerance)
CASES = {
    "scalar_fragment": (scale_by_scalar_fragment,
                        [S((16, 64), jnp.float32), S((4,), jnp.float32)], S((16, 64), jnp.float32),
                        lambda x, w: x * (w[0] * 2.0 + w[1]), 1e-5),
    "rms_norm_split_k": (rms_norm_split_k, [S((8, 256), jnp.float32)], S((8, 256), jnp.float32),
                         lambda a: a / np.sqrt(np.mean(a.astype(np.float64) ** 2, 1,
                                                       keepdims=True) + 1e-6), 1e-5),
    "row_and_column_vectors": (row_and_column_vectors,
                               [S((16, 64), jnp.float32), S((16,), jnp.float32),
                                S((64,), jnp.float32)], S((16, 64), jnp.float32),
                               lambda x, r, c: x * (r * 0.5)[:, None] + (c + 1.0)[None, :], 1e-5),
    "uniform_indices": (uniform_indices, [S((32, 64), jnp.float32)], S((32, 64), jnp.float32),
                        lambda x: x - x[:, :5].sum(1, keepdims=True), 1e-5),
    "mla_decode": (mla_decode, [S((64, 512), jnp.float16), S((64, 512), jnp.float16)],
                   S((64, 512), jnp.float32), _softmax_attention, 2e-3),
}


def random_inputs(specs, seed):
    rng = np.random.default_rng(seed)
    return [rng.uniform(-1.0, 1.0, spec.shape).astype(spec.dtype) for spec in specs]


def launcher(name, interpret):
    import jtile

    kernel, _, out, _, _ = CASES[name]
    return jtile.pallas_like(functools.partial(kernel), out_shape=out, name=name,
                             interpret=interpret)
