"""Level 7: flash-attention forward (online softmax), f16, head dim 64 or 128, causal or not.

Layout (batch, seq, heads, head_dim) as jax.nn.dot_product_attention. A block owns BLOCK_M
queries of one head; K and V tiles stream through T.Pipelined; S = Q K^T and O += P V run on
tensor cores, P feeding the second gemm straight from registers; row max and row sum are
fragment reductions; exp2 with the softmax scale folded in.
"""

import functools
import math

import jax
import jax.numpy as jnp

import jtile
import jtile.language as T
from jtile.ops.block_order import block_coordinates, launch_grid

try:
    from examples._common import INTERPRET, check
except ImportError:
    from _common import INTERPRET, check


def flash_fwd_kernel(Q, K, V, *, block_m, block_n, stages, threads, causal,
                     q_in_registers=False):
    B, S, H, D = Q.shape
    groups = H // K.shape[2]  # grouped-query attention: query heads per key/value head
    O = T.empty((B, S, H, D), Q.dtype)
    scale = (1.0 / math.sqrt(D)) * 1.4426950408889634  # softmax scale in log2 units
    q_blocks = T.ceildiv(S, block_m)
    with T.Kernel(*launch_grid(q_blocks, H, B, causal), threads=threads) as ids:
        # Causal blocks near the end of the sequence do the most work: they start first,
        # across the heads of a chunk whose K and V fit in the L2 cache.
        rank, by, bz = block_coordinates(ids, q_blocks, H, B,
                                         2 * S * D * K.dtype.bytes // groups, causal)
        bx = q_blocks - 1 - rank if causal else rank
        q = T.alloc_shared((block_m, D), Q.dtype)
        k = T.alloc_shared((block_n, D), K.dtype)
        v = T.alloc_shared((block_n, D), V.dtype)
        s = T.alloc_fragment((block_m, block_n), "float32")
        p = T.alloc_fragment((block_m, block_n), Q.dtype)
        acc = T.alloc_fragment((block_m, D), "float32")
        m = T.alloc_fragment((block_m,), "float32")
        m_prev = T.alloc_fragment((block_m,), "float32")
        rescale = T.alloc_fragment((block_m,), "float32")
        l = T.alloc_fragment((block_m,), "float32")
        l_tile = T.alloc_fragment((block_m,), "float32")

        kv = by // groups if groups > 1 else by
        T.copy(Q[bz, bx * block_m:(bx + 1) * block_m, by, :], q)
        if q_in_registers:  # read Q from shared memory once, not once per K tile
            q_regs = T.alloc_fragment((block_m, D), Q.dtype)
            T.copy(q, q_regs)
            q = q_regs
        T.fill(acc, 0)
        T.fill(l, 0)
        T.fill(m, -T.infinity("float32"))
        steps = T.ceildiv((bx + 1) * block_m, block_n) if causal else T.ceildiv(S, block_n)
        for t in T.Pipelined(steps, num_stages=stages):
            T.copy(K[bz, t * block_n:(t + 1) * block_n, kv, :], k)
            T.copy(V[bz, t * block_n:(t + 1) * block_n, kv, :], v)
            if causal:
                # Only tiles that cross the diagonal need the mask.
                with T.If((t + 1) * block_n > bx * block_m):
                    for i, j in T.Parallel(block_m, block_n):
                        s[i, j] = T.if_then_else(bx * block_m + i >= t * block_n + j, 0,
                                                 -T.infinity("float32"))
                with T.Else():
                    T.clear(s)
            elif S % block_n:
                for i, j in T.Parallel(block_m, block_n):
                    s[i, j] = T.if_then_else(t * block_n + j < S, 0, -T.infinity("float32"))
            else:
                T.clear(s)
            T.gemm(q, k, s, transpose_B=True)
            T.copy(m, m_prev)
            T.reduce_max(s, m, dim=1, clear=False)
            for i in T.Parallel(block_m):
                rescale[i] = T.exp2(m_prev[i] * scale - m[i] * scale)
            for i, j in T.Parallel(block_m, block_n):
                s[i, j] = T.exp2(s[i, j] * scale - m[i] * scale)
            T.reduce_sum(s, l_tile, dim=1)
            for i in T.Parallel(block_m):
                l[i] = l[i] * rescale[i] + l_tile[i]
            T.copy(s, p)
            for i, j in T.Parallel(block_m, D):
                acc[i, j] = acc[i, j] * rescale[i]
            T.gemm(p, v, acc)
        for i, j in T.Parallel(block_m, D):
            acc[i, j] = acc[i, j] / l[i]
        T.copy(acc, O[bz, bx * block_m:(bx + 1) * block_m, by, :])
    return O


def flash_attention(q, k, v, *, causal=False, block_m=None, block_n=None, stages=2, threads=256,
                    q_in_registers=False, interpret=INTERPRET):
    d = q.shape[-1]
    block_m = block_m or 128
    block_n = block_n or 128
    kernel = functools.partial(flash_fwd_kernel, block_m=block_m, block_n=block_n,
                               stages=stages, threads=threads, causal=causal,
                               q_in_registers=q_in_registers)
    name = f"flash_fwd_d{d}{'_causal' if causal else ''}"
    return jtile.pallas_like(kernel, name=name, interpret=interpret)(q, k, v)


# Block shapes the autotuned launcher chooses between; interpret mode takes the first.
FLASH_CONFIGS = (
    dict(block_m=128, block_n=128, stages=2, threads=256),
    dict(block_m=128, block_n=128, stages=3, threads=256),
    dict(block_m=128, block_n=64, stages=3, threads=256),
    dict(block_m=64, block_n=64, stages=2, threads=128),
    # FlashAttention-3's head-dim-64 tile: 192 queries on three consumer warpgroups.
    dict(block_m=192, block_n=128, stages=2, threads=384),
    dict(block_m=192, block_n=128, stages=3, threads=384),
)


@jtile.autotune(configs=FLASH_CONFIGS, key=["q", "k", "v", "causal"])
def flash_attention_autotuned(q, k, v, *, causal=False, block_m, block_n, stages, threads,
                              interpret=INTERPRET):
    """`flash_attention` with the block shape picked by timing FLASH_CONFIGS (per shapes)."""
    return flash_attention(q, k, v, causal=causal, block_m=block_m, block_n=block_n,
                           stages=stages, threads=threads, interpret=interpret)


def reference(q, k, v, causal):
    """jax.nn.dot_product_attention in float32 (k and v may have fewer heads than q)."""
    return jax.nn.dot_product_attention(q.astype(jnp.float32), k.astype(jnp.float32),
                                        v.astype(jnp.float32), is_causal=causal)


def main():
    for d in (64, 128):
        for causal in (False, True):
            shape = (1, 256, 2, d)
            q, k, v = (jax.random.normal(key, shape, jnp.float16)
                       for key in jax.random.split(jax.random.key(d), 3))
            out = jax.jit(functools.partial(flash_attention, causal=causal))(q, k, v)
            check(f"flash attention fwd d{d} {'causal' if causal else 'full'}", out,
                  reference(q, k, v, causal), 2e-3)
    q, k, v = (jax.random.normal(key, (1, 256, 2, 64), jnp.float16)
               for key in jax.random.split(jax.random.key(1), 3))
    out = jax.jit(functools.partial(flash_attention_autotuned, causal=True))(q, k, v)
    check("flash attention fwd d64 causal autotuned", out, reference(q, k, v, True), 2e-3)


if __name__ == "__main__":
    main()
