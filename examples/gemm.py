"""Level 4: a tiled GEMM on tensor cores (T.Pipelined + T.gemm) and its backward under jax.grad.

Each block computes a BLOCK_M x BLOCK_N tile of C: T.Pipelined keeps `stages` K-tiles of A and
B in flight (cp.async into swizzled shared memory) while T.gemm runs ldmatrix + mma.sync on
the current one. The backward pass is two more jtile GEMMs: dA = dC @ B^T, dB = A^T @ dC,
expressed with T.gemm's transpose flags.
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


def matmul_kernel(A, B, C, *, block_m, block_n, block_k, stages, threads, trans_a, trans_b,
                  cluster_n=1, accum_dtype="float32"):
    """C = op(A) @ op(B), op transposing where asked; float32 accumulation (`accum_dtype`
    "float16" accumulates float16 inputs in float16, as TileLang's example allows).

    `cluster_n` > 1 groups that many neighbouring column blocks into a thread-block cluster
    (sm_90+): they share their A tiles, which TMA then multicasts to all of them.
    """
    M, N = C.shape
    K = A.shape[0] if trans_a else A.shape[1]
    with T.Kernel(T.ceildiv(N, block_n), T.ceildiv(M, block_m), threads=threads,
                  cluster_dims=cluster_n) as (bx, by):
        a_tile = T.alloc_shared((block_k, block_m) if trans_a else (block_m, block_k), A.dtype)
        b_tile = T.alloc_shared((block_n, block_k) if trans_b else (block_k, block_n), B.dtype)
        acc = T.alloc_fragment((block_m, block_n), accum_dtype)
        T.clear(acc)
        for k in T.Pipelined(T.ceildiv(K, block_k), num_stages=stages):
            if trans_a:
                T.copy(A[k * block_k, by * block_m], a_tile)
            else:
                T.copy(A[by * block_m, k * block_k], a_tile)
            if trans_b:
                T.copy(B[bx * block_n, k * block_k], b_tile)
            else:
                T.copy(B[k * block_k, bx * block_n], b_tile)
            T.gemm(a_tile, b_tile, acc, transpose_A=trans_a, transpose_B=trans_b)
        T.copy(acc, C[by * block_m, bx * block_n])


def matmul(a, b, *, trans_a=False, trans_b=False, block_m=128, block_n=128, block_k=32,
           stages=3, threads=128, cluster_n=1, interpret=INTERPRET):
    m = a.shape[1] if trans_a else a.shape[0]
    n = b.shape[0] if trans_b else b.shape[1]
    kernel = functools.partial(matmul_kernel, block_m=block_m, block_n=block_n,
                               block_k=block_k, stages=stages, threads=threads,
                               trans_a=trans_a, trans_b=trans_b, cluster_n=cluster_n)
    out = jax.ShapeDtypeStruct((m, n), a.dtype)
    return jtile.pallas_like(kernel, out_shape=out, name="matmul", interpret=interpret)(a, b)


def differentiable(gemm):
    """A custom_vjp a @ b whose forward and backward (dA = dC @ B^T, dB = A^T @ dC) are the
    jtile GEMM `gemm(a, b, trans_a=, trans_b=)`."""

    @jax.custom_vjp
    def product(a, b):
        return gemm(a, b)

    def forward(a, b):
        return gemm(a, b), (a, b)

    def backward(res, dc):
        a, b = res
        return gemm(dc, b, trans_b=True), gemm(a, dc, trans_a=True)

    product.defvjp(forward, backward)
    return product


# A differentiable a @ b whose forward and backward are jtile GEMMs.
dot = differentiable(matmul)


# Tile shapes the autotuned launcher chooses between. Interpret mode takes the first; on a GPU
# each is compiled and timed once per shape and dtype, and a shape the GPU cannot hold (the
# 4-stage 128x256 ring is over sm_80's shared memory) is skipped.
MATMUL_CONFIGS = (
    dict(block_m=128, block_n=128, block_k=32, stages=3, threads=128),
    dict(block_m=128, block_n=128, block_k=64, stages=4, threads=256),
    dict(block_m=128, block_n=256, block_k=64, stages=4, threads=256),
    dict(block_m=256, block_n=128, block_k=64, stages=4, threads=256),
)


@jtile.autotune(configs=MATMUL_CONFIGS, key=["a", "b", "trans_a", "trans_b"])
def matmul_autotuned(a, b, *, trans_a=False, trans_b=False, block_m, block_n, block_k, stages,
                     threads, interpret=INTERPRET):
    """`matmul` with the tile shape picked by timing MATMUL_CONFIGS (per shapes and dtypes)."""
    return matmul(a, b, trans_a=trans_a, trans_b=trans_b, block_m=block_m, block_n=block_n,
                  block_k=block_k, stages=stages, threads=threads, interpret=interpret)


# `dot` whose three GEMMs (forward, dA, dB) are each autotuned for their own shapes.
dot_autotuned = differentiable(matmul_autotuned)


def main():
    m, n, k = 256, 192, 160  # not multiples of the tiles: edges are zero-filled and masked
    for dtype, tol in ((jnp.float16, 2e-3), (jnp.bfloat16, 1e-2)):
        ka, kb, kc = jax.random.split(jax.random.key(0), 3)
        a = jax.random.normal(ka, (m, k), jnp.float32).astype(dtype)
        b = jax.random.normal(kb, (k, n), jnp.float32).astype(dtype)
        dc = jax.random.normal(kc, (m, n), jnp.float32).astype(dtype)
        name = jnp.dtype(dtype).name
        ref = jnp.dot(a.astype(jnp.float32), b.astype(jnp.float32))
        check(f"gemm {m}x{n}x{k} {name}", jax.jit(dot)(a, b), ref, tol)
        loss = lambda f: (lambda a, b: jnp.sum(f(a, b).astype(jnp.float32) * dc))  # noqa: E731
        da, db = jax.jit(jax.grad(loss(dot), argnums=(0, 1)))(a, b)
        rda, rdb = jax.grad(loss(lambda a, b: jnp.dot(a.astype(jnp.float32),
                                                      b.astype(jnp.float32))),
                            argnums=(0, 1))(a, b)
        check(f"gemm backward dA {name}", da, rda, tol)
        check(f"gemm backward dB {name}", db, rdb, tol)
        check(f"gemm autotuned {m}x{n}x{k} {name}", jax.jit(matmul_autotuned)(a, b), ref, tol)


if __name__ == "__main__":
    main()
