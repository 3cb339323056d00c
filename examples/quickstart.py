"""Level 1: a vector add, written in jtile's tile language, called inside jax.jit.

On a GPU the kernel is compiled to CUDA and launched through an XLA custom call; on a CPU it
runs in interpret mode (the same kernel evaluated with jax.numpy).
"""

import jax
import jax.numpy as jnp

import jtile
import jtile.language as T

try:
    from examples._common import INTERPRET, check
except ImportError:  # run as a script from examples/
    from _common import INTERPRET, check

BLOCK = 256


def add_kernel(X, Y, O):
    """O = X + Y, one element per thread; the last block is partly masked."""
    (N,) = X.shape
    with T.Kernel(T.ceildiv(N, BLOCK), threads=BLOCK) as bx:
        for i in T.Parallel(BLOCK):
            with T.If(bx * BLOCK + i < N):
                O[bx * BLOCK + i] = X[bx * BLOCK + i] + Y[bx * BLOCK + i]


def vector_add(x, y, *, interpret=INTERPRET):
    return jtile.pallas_like(add_kernel, out_shape=jax.ShapeDtypeStruct(x.shape, x.dtype),
                             interpret=interpret)(x, y)


def main():
    n = 100_000  # not a multiple of the block: the tail is masked by T.If
    x = jax.random.normal(jax.random.key(0), (n,), jnp.float32)
    y = jax.random.normal(jax.random.key(1), (n,), jnp.float32)
    z = jax.jit(vector_add)(x, y)
    mode = "interpret mode" if INTERPRET else "compiled CUDA"
    print(f"jtile vector add of {n} float32 on {jax.default_backend()} ({mode})")
    check("vector add", z, x + y, 1e-6)


if __name__ == "__main__":
    main()
