"""Level 6: a producer/consumer handshake on mbarriers (sm_90a: T.alloc_barrier).

Tiles stream through a ring of shared-memory stages. For each tile the block's threads
produce (load it into its stage) and arrive on that stage's "full" barrier; consumers wait on
the barrier's phase parity before reading. The phase flips each time a stage is reused, so
the parity of round k // STAGES says which completion to wait for.
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

STAGES = 2


def scaled_rows_kernel(X, *, tile, threads):
    """O[r, :] = X[r, :] * (r + 1), one row tile per loop iteration, staged through a ring."""
    M, N = X.shape
    O = T.empty((M, N), X.dtype)
    with T.Kernel(T.ceildiv(N, tile), threads=threads) as bx:
        ring = T.alloc_shared((STAGES, tile), X.dtype)
        full = T.alloc_barrier([threads] * STAGES)
        for r in T.serial(M):
            stage = r % STAGES
            for j in T.Parallel(tile):  # produce
                ring[stage, j] = X[r, bx * tile + j]
            T.mbarrier_arrive(full[stage])
            T.mbarrier_wait_parity(full[stage], (r // STAGES) % 2)
            for j in T.Parallel(tile):  # consume
                O[r, bx * tile + j] = ring[stage, j] * T.cast(r + 1, X.dtype)
    return O


def scaled_rows(x, *, tile=256, threads=128, interpret=INTERPRET):
    kernel = functools.partial(scaled_rows_kernel, tile=tile, threads=threads)
    return jtile.pallas_like(kernel, name="scaled_rows", interpret=interpret)(x)


def main():
    x = jax.random.normal(jax.random.key(0), (16, 512), jnp.float32)
    out = jax.jit(scaled_rows)(x)
    check("mbarrier producer/consumer (16, 512)", out,
          x * jnp.arange(1, 17, dtype=jnp.float32)[:, None], 1e-6)


if __name__ == "__main__":
    main()
