"""The examples' kernels at test sizes, as (name, launcher factory, argument specs)."""

import functools

import jax
import jax.numpy as jnp

import jtile
import jtile.language as T
from examples import flash_attention as fa
from examples import gemm, layer_norm, producer_consumer, quickstart, reducer, softmax

S = jax.ShapeDtypeStruct


def _gemm(trans_a, trans_b, dtype):
    kernel = functools.partial(gemm.matmul_kernel, block_m=128, block_n=128, block_k=32,
                               stages=3, threads=128, trans_a=trans_a, trans_b=trans_b)
    m, n, k = 256, 192, 160
    a = S((k, m) if trans_a else (m, k), dtype)
    b = S((n, k) if trans_b else (k, n), dtype)
    return lambda interpret: jtile.pallas_like(kernel, out_shape=S((m, n), dtype),
                                               name="matmul", interpret=interpret), [a, b]


def _flash(d, causal, block_m=128, block_n=64, threads=256, q_in_registers=False):
    kernel = functools.partial(fa.flash_fwd_kernel, block_m=block_m, block_n=block_n, stages=2,
                               threads=threads, causal=causal, q_in_registers=q_in_registers)
    spec = S((1, 256, 2, d), jnp.float16)
    return lambda interpret: jtile.pallas_like(kernel, name=f"flash_fwd_d{d}",
                                               interpret=interpret), [spec] * 3


def _plain(kernel, name, **out):
    return lambda interpret: jtile.pallas_like(kernel, name=name, interpret=interpret, **out)


CASES = {
    "vector_add": (_plain(quickstart.add_kernel, "add", out_shape=S((100_000,), jnp.float32)),
                   [S((100_000,), jnp.float32)] * 2),
    "softmax_f32": (_plain(functools.partial(softmax.softmax_kernel, block_rows=1, threads=256),
                           "softmax"), [S((256, 1024), jnp.float32)]),
    "softmax_bf16_rows4": (_plain(functools.partial(softmax.softmax_kernel, block_rows=4,
                                                    threads=128), "softmax"),
                           [S((130, 512), jnp.bfloat16)]),
    "layer_norm_fwd": (_plain(functools.partial(layer_norm.layer_norm_fwd_kernel, block_rows=1,
                                                threads=256, eps=1e-5), "ln_fwd"),
                       [S((64, 1024), jnp.float32), S((1024,), jnp.float32),
                        S((1024,), jnp.float32)]),
    "layer_norm_bwd": (_plain(functools.partial(layer_norm.layer_norm_bwd_kernel, block_rows=2,
                                                threads=128), "ln_bwd"),
                       [S((63, 512), jnp.float32), S((512,), jnp.float32),
                        S((63, 512), jnp.float32), S((63,), jnp.float32),
                        S((63,), jnp.float32)]),
    "gemm_nn_f16": _gemm(False, False, jnp.float16),
    "gemm_nt_f16": _gemm(False, True, jnp.float16),
    "gemm_tn_bf16": _gemm(True, False, jnp.bfloat16),
    "gemm_tt_bf16": _gemm(True, True, jnp.bfloat16),
    "reducer": (_plain(functools.partial(reducer.column_stats_kernel, block_rows=32,
                                         block_cols=32, threads=128), "column_stats"),
                [S((300, 96), jnp.float32)]),
    "producer_consumer": (_plain(functools.partial(producer_consumer.scaled_rows_kernel,
                                                   width=128), "scaled_rows"),
                          [S((16, 512), jnp.float32)]),
    "flash_d64": _flash(64, False, block_n=128),
    "flash_d64_causal": _flash(64, True, block_n=128),
    "flash_d128": _flash(128, False),
    "flash_d128_causal": _flash(128, True),
    "flash_d128_causal_qreg": _flash(128, True, block_n=128, q_in_registers=True),
}

NEEDS_SM90 = {"producer_consumer"}


def random_inputs(specs, seed=0):
    keys = jax.random.split(jax.random.key(seed), len(specs))
    return [jax.random.normal(key, spec.shape, jnp.float32).astype(spec.dtype)
            for key, spec in zip(keys, specs)]


def atomic_column_sum_kernel(X, Total, Out, *, block_rows):
    """Out (aliased to Total) += column sums of X: a tile T.atomic_add per block, plus an
    element T.atomic_add of every row's first entry into Out[0, 0]."""
    M, N = X.shape
    with T.Kernel(T.ceildiv(M, block_rows), threads=128) as bx:
        x = T.alloc_fragment((block_rows, N), "float32")
        col = T.alloc_fragment((N,), "float32")
        T.copy(X[bx * block_rows, 0], x)
        T.reduce_sum(x, col, dim=0)
        T.atomic_add(Out[1, 0], col)
        for i in T.Parallel(block_rows):
            with T.If(bx * block_rows + i < M):
                T.atomic_add(Out[0, 0], X[bx * block_rows + i, 0])


def gemm_f32_kernel(A, B, C):
    """A float32 T.gemm: computed with FMA (no tensor cores), for every target."""
    M, K = A.shape
    N = B.shape[1]
    with T.Kernel(T.ceildiv(N, 32), T.ceildiv(M, 32), threads=128) as (bx, by):
        a = T.alloc_shared((32, 16), "float32")
        b = T.alloc_shared((16, 32), "float32")
        acc = T.alloc_fragment((32, 32), "float32")
        T.clear(acc)
        for k in T.Pipelined(T.ceildiv(K, 16), num_stages=2):
            T.copy(A[by * 32, k * 16], a)
            T.copy(B[k * 16, bx * 32], b)
            T.gemm(a, b, acc)
        T.copy(acc, C[by * 32, bx * 32])


CASES["atomic_add"] = (
    lambda interpret: jtile.pallas_like(
        functools.partial(atomic_column_sum_kernel, block_rows=8),
        out_shape=S((2, 64), jnp.float32), input_output_aliases={1: 0}, name="atomic_colsum",
        interpret=interpret),
    [S((100, 64), jnp.float32), S((2, 64), jnp.float32)])
CASES["gemm_f32"] = (
    lambda interpret: jtile.pallas_like(gemm_f32_kernel, out_shape=S((80, 96), jnp.float32),
                                        name="gemm_f32", interpret=interpret),
    [S((80, 48), jnp.float32), S((48, 96), jnp.float32)])


def _gemm_ragged():
    kernel = functools.partial(gemm.matmul_kernel, block_m=64, block_n=64, block_k=32,
                               stages=3, threads=128, trans_a=False, trans_b=False)
    return (lambda interpret: jtile.pallas_like(kernel, out_shape=S((70, 90), jnp.float16),
                                                name="matmul", interpret=interpret),
            [S((70, 100), jnp.float16), S((100, 90), jnp.float16)])


# Shapes that are not multiples of the tiles or of 16 bytes: narrower cp.async, zero fill.
CASES["gemm_ragged_f16"] = _gemm_ragged()


def shared_reuse_kernel(X, O):
    """Two shared tiles whose lives do not meet share bytes; the second is written right
    after the last read of the first (a missing barrier there would race)."""
    M, N = X.shape
    with T.Kernel(T.ceildiv(M, 64), threads=128) as bx:
        first = T.alloc_shared((64, N), "float32")
        second = T.alloc_shared((64, N), "float32")
        acc = T.alloc_fragment((64, N), "float32")
        T.copy(X[bx * 64, 0], first)
        for i, j in T.Parallel(64, N):
            acc[i, j] = first[63 - i, N - 1 - j] * 2.0
        for i, j in T.Parallel(64, N):
            second[i, j] = acc[i, j] + 1.0
        T.copy(second, O[bx * 64, 0])


CASES["shared_reuse"] = (
    lambda interpret: jtile.pallas_like(shared_reuse_kernel, out_shape=S((256, 128), jnp.float32),
                                        name="shared_reuse", interpret=interpret),
    [S((256, 128), jnp.float32)])
