"""Runs the flash-attention forward of examples/flash_attention.py once per head dimension
(B4 S4096 H16, f16, full and causal) so that Nsight Compute can profile each kernel:

    ncu --set full -k regex:flash_fwd python3 scripts/profile_attention.py
"""

import pathlib
import sys

import jax
import jax.numpy as jnp

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from examples import flash_attention  # noqa: E402


def main():
    for d in (64, 128):
        for causal in (False, True):
            keys = jax.random.split(jax.random.key(d), 3)
            q, k, v = (jax.random.normal(key, (4, 4096, 16, d), jnp.float32).astype(jnp.float16)
                       for key in keys)
            out = flash_attention.flash_attention(q, k, v, causal=causal, stages=2,
                                                  interpret=False)
            out.block_until_ready()
            print(f"d{d} {'causal' if causal else 'full'} done", flush=True)


if __name__ == "__main__":
    main()
