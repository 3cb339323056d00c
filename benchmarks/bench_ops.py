"""jtile.ops against their XLA equivalents (jax.nn / jax.numpy) on the GPU, in one table.

For each op: forward, and forward + backward (the gradient of a sum of the outputs weighted by
a fixed cotangent), timed for jtile and for XLA on the same inputs, with the speed ratio (> 1:
jtile faster), jtile's bandwidth over the bytes the op must move, and the error against XLA.
Run `python benchmarks/bench_ops.py [op ...]` to time only some ops.
"""

from __future__ import annotations

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import jtile.ops as ops  # noqa: E402
from tests.ops import references as ref  # noqa: E402

ROWS = []


def bench(f, *args, iters=50, reps=7):
    """Median milliseconds per call (benchmarks/bench.py's timing, more calls per loop)."""
    from benchmarks.bench import bench as timed

    return timed(f, *args, iters=iters, reps=reps)


def rel_err(a, b) -> float:
    a = np.concatenate([np.asarray(x, np.float64).ravel() for x in jax.tree_util.tree_leaves(a)])
    b = np.concatenate([np.asarray(x, np.float64).ravel() for x in jax.tree_util.tree_leaves(b)])
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def _f32(tree):
    return jax.tree_util.tree_map(lambda x: x.astype(jnp.float32), tree)


def compare(label, jtile_fn, xla_fn, args, argnums, bytes_fwd, bytes_bwd):
    """One row for the forward and one for forward + backward."""
    cot = [jax.random.normal(jax.random.key(9), o.shape, jnp.float32)
           for o in jax.tree_util.tree_leaves(jax.eval_shape(xla_fn, *args))]

    def grad_of(fn):
        def loss(*a):
            outs = jax.tree_util.tree_leaves(fn(*a))
            return sum(jnp.sum(o.astype(jnp.float32) * c) for o, c in zip(outs, cot))
        return jax.grad(loss, argnums)

    for kind, make, nbytes in (("fwd", lambda f: f, bytes_fwd),
                               ("fwd+bwd", grad_of, bytes_bwd)):
        try:
            t_x, out_x = bench(jax.jit(make(xla_fn)), *args)
            t_j, out_j = bench(jax.jit(make(jtile_fn)), *args)
        except Exception as e:  # a failing op is reported, the others still run
            ROWS.append(f"{label + ' ' + kind:<52} FAILED {type(e).__name__}: {str(e)[:200]}")
            print(ROWS[-1], flush=True)
            continue
        err = rel_err(_f32(out_j), _f32(out_x))
        row = (f"{label + ' ' + kind:<52} jtile {t_j:8.3f} ms  xla {t_x:8.3f} ms  "
               f"speed x{t_x / t_j:5.2f}  {nbytes / t_j / 1e9:5.2f} TB/s  err {err:.1e}")
        ROWS.append(row)
        print(row, flush=True)


def _normal(seed, shape, dtype, scale=1.0):
    return (jax.random.normal(jax.random.key(seed), shape, jnp.float32) * scale).astype(dtype)


def norms(dtype):
    m, n = 16384, 4096
    x, r = _normal(1, (m, n), dtype), _normal(2, (m, n), dtype)
    w, b = _normal(4, (n,), dtype), _normal(5, (n,), dtype)
    size = x.dtype.itemsize * m * n
    name = jnp.dtype(dtype).name
    compare(f"rms_norm ({m}, {n}) {name}", lambda x, w: ops.rms_norm(x, w, interpret=False),
            ref.rms_norm, (x, w), (0, 1), 2 * size, 5 * size)
    compare(f"rms_norm+residual ({m}, {n}) {name}",
            lambda x, r, w: ops.rms_norm(x, w, residual=r, interpret=False),
            ref.rms_norm_residual, (x, r, w), (0, 1, 2), 4 * size, 7 * size)
    compare(f"layer_norm ({m}, {n}) {name}",
            lambda x, w, b: ops.layer_norm(x, w, b, interpret=False), ref.layer_norm,
            (x, w, b), (0, 1, 2), 2 * size, 5 * size)


def softmaxes(dtype):
    m, n = 16384, 4096
    x = _normal(6, (m, n), dtype, 2.0)
    size = x.dtype.itemsize * m * n
    compare(f"softmax ({m}, {n}) {jnp.dtype(dtype).name}",
            lambda x: ops.softmax(x, interpret=False), ref.softmax, (x,), (0,),
            2 * size, 5 * size)


def cross_entropies(dtype):
    m, v = 8192, 50257
    logits = _normal(7, (m, v), dtype, 4.0)
    labels = jax.random.randint(jax.random.key(8), (m,), 0, v)
    size = logits.dtype.itemsize * m * v
    compare(f"cross_entropy ({m}, {v}) {jnp.dtype(dtype).name}",
            lambda x, l: ops.cross_entropy(x, l, interpret=False), ref.cross_entropy,
            (logits, labels), (0,), size, 3 * size)


def swiglus(dtype):
    m, n = 16384, 11008
    gate, up = _normal(10, (m, n), dtype), _normal(11, (m, n), dtype)
    size = gate.dtype.itemsize * m * n
    compare(f"swiglu ({m}, {n}) {jnp.dtype(dtype).name}",
            lambda g, u: ops.swiglu(g, u, interpret=False), ref.swiglu, (gate, up), (0, 1),
            3 * size, 8 * size)


def rotaries(dtype):
    b, s, h, d = 8, 4096, 32, 128
    x = _normal(12, (b, s, h, d), dtype)
    angle = jax.random.uniform(jax.random.key(13), (s, d // 2), jnp.float32, 0, 6.3)
    cos, sin = jnp.cos(angle), jnp.sin(angle)
    size = x.dtype.itemsize * x.size
    compare(f"rotary ({b}, {s}, {h}, {d}) {jnp.dtype(dtype).name}",
            lambda x, c, s_: ops.rotary(x, c, s_, interpret=False), ref.rotary,
            (x, cos, sin), (0, 1, 2), 2 * size, 5 * size)


SECTIONS = (norms, softmaxes, cross_entropies, swiglus, rotaries)


def main():
    print("jax", jax.__version__, "devices", jax.devices(), flush=True)
    only = sys.argv[1:]
    for section in SECTIONS:
        if only and section.__name__ not in only:
            continue
        for dtype in (jnp.bfloat16, jnp.float32):
            section(dtype)
    print("\n==== SUMMARY (speed = XLA time / jtile time; > 1 means jtile is faster) ====")
    for row in ROWS:
        print(row)


if __name__ == "__main__":
    main()
