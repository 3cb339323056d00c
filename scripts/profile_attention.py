"""Runs attention once per head dimension (B4 S4096 H16, f16, full and causal) so that
Nsight Compute can profile each kernel: the forward of examples/flash_attention.py, or with
`backward` the gradient of jtile.ops.attention (its backward kernels):

    ncu --set full -k regex:flash_fwd python3 scripts/profile_attention.py
    ncu --set full -k regex:attention_bwd_d[0-9] python3 scripts/profile_attention.py backward
"""

import pathlib
import sys

import jax
import jax.numpy as jnp

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from examples import flash_attention  # noqa: E402
import jtile.ops  # noqa: E402


def main():
    backward = "backward" in sys.argv[1:]
    for d in (64, 128):
        for causal in (False, True):
            keys = jax.random.split(jax.random.key(d), 3)
            q, k, v = (jax.random.normal(key, (4, 4096, 16, d), jnp.float32).astype(jnp.float16)
                       for key in keys)
            if backward:
                loss = lambda q, k, v: jtile.ops.attention(  # noqa: E731
                    q, k, v, causal=causal, interpret=False).astype(jnp.float32).sum()
                out = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(q, k, v)
            else:
                out = flash_attention.flash_attention(q, k, v, causal=causal, stages=2,
                                                      interpret=False)
            jax.block_until_ready(out)
            print(f"d{d} {'causal' if causal else 'full'} done", flush=True)


if __name__ == "__main__":
    main()
