"""jtile.ops.ragged_dot beside jax.lax.ragged_dot and a dense GEMM of the same work, in one run.

For each shape and routing: the forward, and forward + backward (the output and its `jax.vjp`
pullback of a fixed bfloat16 cotangent to lhs and rhs, as bench_ops.forward_backward builds
it), timed for jtile, for
`jax.lax.ragged_dot` and for `jnp.matmul` of (tokens, k) @ (k, n) (the same FLOPs with no
grouping: the ceiling to aim at). TFLOP/s count 2 * tokens * k * n for the forward, three times
that for forward + backward. Speeds are jtile's time divided into the others' (> 1: jtile
faster). Routings: even (every expert gets tokens / experts) and skewed (one expert takes half
the tokens, the rest share the other half). Then the fp8 e4m3 forward at the first shape,
beside the bf16 jtile forward. The forward rows run first, the forward + backward rows last.
Run `python benchmarks/bench_ragged_dot.py [--quick]`.
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
from benchmarks.bench import rel_err, try_bench  # noqa: E402
from benchmarks.bench_ops import forward_backward  # noqa: E402

ROWS = []
# (experts, tokens, k, n): Mixtral's expert GEMM, and a fine-grained 64-expert layer.
SHAPES = ((8, 32768, 4096, 14336), (64, 32768, 2048, 1536))


def routing(kind: str, experts: int, tokens: int) -> jax.Array:
    """Group sizes summing to `tokens`: `even`, or `skewed` (expert 0 takes half)."""
    if kind == "even":
        sizes = np.full(experts, tokens // experts)
    else:
        rest = tokens - tokens // 2
        sizes = np.concatenate([[tokens // 2], np.full(experts - 1, rest // (experts - 1))])
    sizes[-1] += tokens - sizes.sum()
    return jnp.asarray(sizes, jnp.int32)


def _row(label, flops, results):
    """One table row: jtile's time and rate, its speed against every other entry, its error
    against jax.lax.ragged_dot."""
    jt = results.get("jtile")
    if jt is None:
        ROWS.append(f"{label:<52} jtile FAILED")
        print(ROWS[-1], flush=True)
        return None
    parts = [f"{label:<52} jtile {jt[0]:8.3f} ms {flops / jt[0] / 1e9:6.1f} TFLOP/s"]
    for name, got in results.items():
        if name == "jtile" or got is None:
            continue
        parts.append(f"vs {name} x{got[0] / jt[0]:5.2f} ({flops / got[0] / 1e9:6.1f})")
    ref = results.get("jax.lax.ragged_dot")
    if ref is not None:
        parts.append(f"err {rel_err_tree(jt[1], ref[1]):.1e}")
    ROWS.append("  ".join(parts))
    print(ROWS[-1], flush=True)
    return jt[0]


def rel_err_tree(a, b) -> float:
    return max(rel_err(x, y) for x, y in zip(jax.tree_util.tree_leaves(a),
                                             jax.tree_util.tree_leaves(b)))


def _operands(experts, tokens, k, n, kind):
    keys = jax.random.split(jax.random.key(0), 3)
    lhs = jax.random.normal(keys[0], (tokens, k), jnp.float32).astype(jnp.bfloat16)
    rhs = (jax.random.normal(keys[1], (experts, k, n), jnp.float32) / np.sqrt(k)).astype(
        jnp.bfloat16)
    cotangent = jax.random.normal(keys[2], (tokens, n), jnp.float32).astype(jnp.bfloat16)
    sizes = routing(kind, experts, tokens)
    fns = {
        "jtile": lambda a, b: ops.ragged_dot(a, b, sizes, interpret=False),
        "jax.lax.ragged_dot": lambda a, b: jax.lax.ragged_dot(a, b, sizes),
        "dense": lambda a, b: jnp.matmul(a, b),
    }
    return lhs, rhs, cotangent, fns


def ragged_rows(experts, tokens, k, n, kind, iters, *, backward):
    """The forward row (or, with `backward`, the forward + backward row) of one shape and
    routing; returns jtile's time (ms)."""
    lhs, rhs, cotangent, fns = _operands(experts, tokens, k, n, kind)
    flops = 2 * tokens * k * n
    label = f"{experts}x({k}->{n}) {tokens} tok {kind} bf16"
    results = {}
    for name, fn in fns.items():
        args = (lhs, rhs[0] if name == "dense" else rhs)
        if backward:
            results[name] = try_bench(
                forward_backward(fn, argnums=(0, 1), cotangents=[cotangent]), args,
                max(iters // 2, 1))
        else:
            results[name] = try_bench(fn, args, iters)
    if backward:
        return _row(f"fwd+bwd {label}", 3 * flops, results)
    return _row(f"fwd {label}", flops, results)


def fp8_row(experts, tokens, k, n, t_bf16, iters):
    keys = jax.random.split(jax.random.key(1), 2)
    lhs = jax.random.normal(keys[0], (tokens, k), jnp.float32).astype(jnp.float8_e4m3fn)
    rhs = jax.random.normal(keys[1], (experts, k, n), jnp.float32).astype(jnp.float8_e4m3fn)
    sizes = routing("even", experts, tokens)
    fns = {
        "jtile": lambda a, b: ops.ragged_dot(a, b, sizes, preferred_element_type=jnp.bfloat16,
                                             interpret=False),
        "jax.lax.ragged_dot": lambda a, b: jax.lax.ragged_dot(
            a, b, sizes, preferred_element_type=jnp.bfloat16),
    }
    results = {name: try_bench(fn, (lhs, rhs), iters) for name, fn in fns.items()}
    flops = 2 * tokens * k * n
    t_fp8 = _row(f"fwd {experts}x({k}->{n}) {tokens} tok even fp8 e4m3", flops, results)
    if t_fp8 is not None and t_bf16 is not None:
        row = f"{'fp8 forward speed over the bf16 jtile forward':<52} x{t_bf16 / t_fp8:5.2f}"
        ROWS.append(row)
        print(row, flush=True)


def main():
    quick = "--quick" in sys.argv[1:]
    print("jax", jax.__version__, "devices", jax.devices(), flush=True)
    iters = 3 if quick else 10
    shapes = tuple((e, t // 8, k, n) for e, t, k, n in SHAPES) if quick else SHAPES
    # Every forward row first (they decide the bars and are quick), then fp8, then
    # the forward + backward rows: a run cut short by a time limit still has the forwards.
    first_even = None
    for experts, tokens, k, n in shapes:
        for kind in ("even", "skewed"):
            t = ragged_rows(experts, tokens, k, n, kind, iters, backward=False)
            if first_even is None and kind == "even":
                first_even = t
    fp8_row(*shapes[0], first_even, iters)
    for experts, tokens, k, n in shapes:
        for kind in ("even", "skewed"):
            ragged_rows(experts, tokens, k, n, kind, iters, backward=True)
    print("\n==== SUMMARY (x = other time / jtile time; > 1 means jtile is faster; "
          "TFLOP/s in brackets) ====")
    for row in ROWS:
        print(row)


if __name__ == "__main__":
    main()
