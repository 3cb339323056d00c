"""What a jtile launch costs inside a jitted program, by kernel size.

A chain of LINKS links, each a jtile element-wise kernel followed by an XLA element-wise op (as
in a training step, where jtile kernels sit between XLA's fusions and GEMMs), timed per link
for kernels of several sizes. XLA records its ops and, where the handler allows, jtile's
custom calls into command buffers (CUDA graphs); run the script twice to compare:

    python benchmarks/bench_launch.py
    XLA_FLAGS=--xla_gpu_enable_command_buffer=FUSION,CUBLAS,CUBLASLT,CUDNN \\
        python benchmarks/bench_launch.py     # custom calls launched outside the graphs

Each row also times the same chain with XLA's op in place of jtile's, the floor a launch
inside XLA's own schedule gives.
"""

from __future__ import annotations

import os
import sys

import jax
import jax.numpy as jnp

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import jtile  # noqa: E402
import jtile.language as T  # noqa: E402
from benchmarks.bench import bench  # noqa: E402

LINKS = 50
BLOCK = 4096  # elements per block
SIZES = tuple(int(s) for s in os.environ.get("BENCH_LAUNCH_SIZES", "").split(",") if s) or (
    BLOCK, 64 * BLOCK, 1024 * BLOCK, 16384 * BLOCK)  # 1 block .. 128 waves


def scale_kernel(X):
    (n,) = X.shape
    Y = T.empty((n,), X.dtype)
    with T.Kernel(T.ceildiv(n, BLOCK), threads=256) as bx:
        tile = T.alloc_fragment((BLOCK,), X.dtype)
        T.copy(X[bx * BLOCK], tile)
        for i in T.Parallel(BLOCK):
            tile[i] = tile[i] * 0.5 + 1.0
        T.copy(tile, Y[bx * BLOCK])
    return Y


def chain(link):
    def run(x):
        for _ in range(LINKS):
            x = link(x) * 1.5
        return x
    return jax.jit(run)


def main():
    flags = os.environ.get("XLA_FLAGS", "") or "(default)"
    print(f"jax {jax.__version__}, XLA_FLAGS {flags}", flush=True)
    jtile_scale = jtile.pallas_like(scale_kernel, name="scale")
    for n in SIZES:
        x = jax.random.normal(jax.random.key(0), (n,), jnp.float32)
        t_jtile, out = bench(chain(jtile_scale), x)
        # The barrier keeps XLA from fusing its op into the next link's, as jtile's launch does.
        t_xla, want = bench(chain(lambda x: jax.lax.optimization_barrier(x * 0.5 + 1.0)), x)
        err = float(jnp.max(jnp.abs(out - want)))
        print(f"launch chain {n:>10} float32 ({-(-n // BLOCK):>6} blocks)  jtile "
              f"{t_jtile / LINKS * 1e3:8.2f} us/link  xla {t_xla / LINKS * 1e3:8.2f} us/link  "
              f"diff {err:.1e}", flush=True)


if __name__ == "__main__":
    main()
