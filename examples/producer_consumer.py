"""Level 6: warp specialisation with mbarriers (sm_90a: T.alloc_barrier).

The block's threads split into two roles by their thread index. Producer warps load one row of
the input per round into a ring of shared-memory stages and arrive on the stage's "full"
barrier; consumer warps wait on that barrier, read the row the producers stored (data that
other warps wrote), write their output row and arrive on the stage's "empty" barrier, which the
producers wait on before they overwrite the stage two rounds later.

Each barrier completes one phase per use of its stage, so its phase parity flips every
`STAGES` rounds: round r waits for the completion numbered r // STAGES, whose parity is
(r // STAGES) % 2. A wait that returned early would let consumers read a stage before the
producers filled it, and the row of that round would come out wrong.

Interpret mode runs the two roles as masked lanes of one vector of threads, statement by
statement, so each round's producer stores precede its consumer reads, as the barriers
guarantee on the GPU.
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


def scaled_rows_kernel(X, *, width):
    """O[r, :] = X[r, :] * (r + 1), one row per round, `width` columns per block.

    Threads 0..width-1 produce (one column each), threads width..2*width-1 consume.
    """
    M, N = X.shape
    if N % width:
        raise ValueError(f"the columns ({N}) must be a multiple of width={width}")
    O = T.empty((M, N), X.dtype)
    with T.Kernel(N // width, threads=2 * width) as bx:
        tid = T.get_thread_binding()
        ring = T.alloc_shared((STAGES, width), X.dtype)
        full = T.alloc_barrier([width] * STAGES)    # every producer arrives once per round
        empty = T.alloc_barrier([width] * STAGES)   # every consumer arrives once per round
        for r in T.serial(M):
            stage = r % STAGES
            with T.If(tid < width):                 # producer warps
                with T.If(r >= STAGES):             # the consumers of round r - STAGES are done
                    T.mbarrier_wait_parity(empty[stage], (r // STAGES + 1) % 2)
                ring[stage, tid] = X[r, bx * width + tid]
                T.mbarrier_arrive(full[stage])
            with T.Else():                          # consumer warps
                T.mbarrier_wait_parity(full[stage], (r // STAGES) % 2)
                col = tid - width
                O[r, bx * width + col] = ring[stage, col] * T.cast(r + 1, X.dtype)
                T.mbarrier_arrive(empty[stage])
    return O


def scaled_rows(x, *, width=128, interpret=INTERPRET):
    kernel = functools.partial(scaled_rows_kernel, width=width)
    return jtile.pallas_like(kernel, name="scaled_rows", interpret=interpret)(x)


def main():
    x = jax.random.normal(jax.random.key(0), (16, 512), jnp.float32)
    out = jax.jit(scaled_rows)(x)
    check("mbarrier producer/consumer (16, 512)", out,
          x * jnp.arange(1, 17, dtype=jnp.float32)[:, None], 1e-6)


if __name__ == "__main__":
    main()
