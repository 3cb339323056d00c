"""jtile.ops against their XLA equivalents (jax.nn / jax.numpy) on the GPU, in one table.

For each op: forward, and forward + backward (the outputs and `jax.vjp` of a fixed cotangent
in the outputs' dtypes, see `compare`), timed for jtile and for XLA on the same inputs, with
the speed ratio (> 1: jtile faster), jtile's bandwidth over the bytes the op must move, and the
error against XLA.
Run `python benchmarks/bench_ops.py [section ...]` to time only some sections (norms,
softmaxes, cross_entropies, swiglus, rotaries, attentions, matmuls, linear_cross_entropies).
"""

from __future__ import annotations

import functools
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


def forward_backward(fn, *, argnums, cotangents, separated=False):
    """`fn`'s outputs and their `jax.vjp` pullback of `cotangents` (one per output leaf, in its
    dtype) to the arguments `argnums`, as one function of all the arguments (see `compare`).

    `separated`: the forward's outputs and the residuals its pullback keeps pass through an
    optimisation barrier first, as in a training step, where the rest of the network runs
    between an op's forward and its backward: XLA must then store what its backward reads
    instead of fusing the forward into it.
    """
    def run(*a):
        def of_differentiated(*p):
            full = list(a)
            for i, v in zip(argnums, p):
                full[i] = v
            return jax.tree_util.tree_leaves(fn(*full))
        out, pullback = jax.vjp(of_differentiated, *[a[i] for i in argnums])
        if separated:
            out, pullback = jax.lax.optimization_barrier((out, pullback))
        return out, pullback(list(cotangents))
    return run


def compare(label, jtile_fn, xla_fn, args, argnums, bytes_fwd, bytes_bwd):
    """One row for the forward and one for forward + backward.

    Forward + backward keeps the forward's outputs (in a training step they feed the next
    layer) and pulls back, with `jax.vjp`, a fixed random cotangent in each output's own dtype
    (a bfloat16 activation's gradient arrives in bfloat16). Differentiating a weighted sum of
    the outputs instead would let XLA drop its forward outputs and fold the cotangent's float32
    product into its backward. Forward and backward share one jit, so XLA may still fuse its
    forward into its backward (read the inputs once for both), which a real step, where the
    rest of the network runs in between, does not allow: the "fwd+bwd" ratios lean towards XLA.
    The "fwd+bwd step" row puts an optimisation barrier between the two, around the outputs and
    the residuals each side's pullback keeps (as a training step does): XLA then stores the
    residuals its autodiff chose, which may be float32 intermediates it would otherwise
    recompute.
    """
    outs = jax.tree_util.tree_leaves(jax.eval_shape(xla_fn, *args))
    cot = [(jax.random.normal(jax.random.key(9 + i), o.shape, jnp.float32)).astype(o.dtype)
           for i, o in enumerate(outs)]
    fwd_bwd = functools.partial(forward_backward, argnums=argnums, cotangents=cot)
    step = functools.partial(forward_backward, argnums=argnums, cotangents=cot, separated=True)
    for kind, make, nbytes in (("fwd", lambda f: f, bytes_fwd),
                               ("fwd+bwd", fwd_bwd, bytes_bwd),
                               ("fwd+bwd step", step, bytes_bwd)):
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


def attentions(dtype):
    """Attention beside cuDNN's, in TFLOP/s: 4*B*H*S*S*D forward (half when causal), 3.5x
    that for forward + backward."""
    if dtype == jnp.float32:
        return  # attention takes float16 / bfloat16 only
    b, s, h = 4, 4096, 16
    for d, causal in ((128, False), (128, True), (64, False)):
        q, k, v = (_normal(20 + i, (b, s, h, d), dtype) for i in range(3))
        flops = 4 * b * h * s * s * d / (2 if causal else 1)
        cot = _normal(23, q.shape, dtype)
        mine = lambda q, k, v, c=causal: ops.attention(q, k, v, causal=c,  # noqa: E731
                                                       interpret=False)
        cudnn = lambda q, k, v, c=causal: jax.nn.dot_product_attention(  # noqa: E731
            q, k, v, is_causal=c, implementation="cudnn")

        grad_of = functools.partial(forward_backward, argnums=(0, 1, 2), cotangents=[cot])
        label = (f"attention B{b} S{s} H{h} D{d} {'causal' if causal else 'full'} "
                 f"{jnp.dtype(dtype).name}")
        for kind, make, work in (("fwd", lambda f: f, flops),
                                 ("fwd+bwd", grad_of, 3.5 * flops)):
            try:
                t_x, out_x = bench(jax.jit(make(cudnn)), q, k, v)
                t_j, out_j = bench(jax.jit(make(mine)), q, k, v)
            except Exception as e:  # a failing op is reported, the others still run
                ROWS.append(f"{label + ' ' + kind:<52} FAILED {type(e).__name__}: "
                            f"{str(e)[:200]}")
                print(ROWS[-1], flush=True)
                continue
            err = rel_err(_f32(out_j), _f32(out_x))
            row = (f"{label + ' ' + kind:<52} jtile {t_j:8.3f} ms  cudnn {t_x:8.3f} ms  "
                   f"speed x{t_x / t_j:5.2f}  jtile {work / t_j / 1e9:6.1f} TFLOP/s  "
                   f"cudnn {work / t_x / 1e9:6.1f} TFLOP/s  err {err:.1e}")
            ROWS.append(row)
            print(row, flush=True)


def peak_bytes(fn, *args) -> int:
    """Peak device memory of `jax.jit(fn)(*args)` by XLA's buffer assignment: temporaries
    plus arguments plus outputs (less what outputs alias)."""
    stats = jax.jit(fn).lower(*args).compile().memory_analysis()
    return (stats.temp_size_in_bytes + stats.argument_size_in_bytes
            + stats.output_size_in_bytes - stats.alias_size_in_bytes)


def timed_rows(label, pairs, args, flops_of):
    """Rows of `(kind, jtile fn, jnp fn)` pairs: time, TFLOP/s, peak memory, error."""
    for kind, mine, theirs in pairs:
        try:
            t_x, out_x = bench(jax.jit(theirs), *args, iters=10, reps=5)
            t_j, out_j = bench(jax.jit(mine), *args, iters=10, reps=5)
            m_x, m_j = peak_bytes(theirs, *args), peak_bytes(mine, *args)
        except Exception as e:  # a failing op is reported, the others still run
            ROWS.append(f"{label + ' ' + kind:<52} FAILED {type(e).__name__}: {str(e)[:200]}")
            print(ROWS[-1], flush=True)
            continue
        err = rel_err(_f32(out_j), _f32(out_x))
        flops = flops_of(kind)
        row = (f"{label + ' ' + kind:<52} jtile {t_j:8.3f} ms  xla {t_x:8.3f} ms  "
               f"speed x{t_x / t_j:5.2f}  jtile {flops / t_j / 1e9:6.1f} TFLOP/s  "
               f"peak jtile {m_j / 2**30:6.2f} GiB  xla {m_x / 2**30:6.2f} GiB  "
               f"err {err:.1e}")
        ROWS.append(row)
        print(row, flush=True)


def matmuls(dtype):
    """matmul beside jnp.matmul (cuBLAS): forward, and forward + backward (3 GEMMs)."""
    if dtype == jnp.float32:
        return  # the tensor-core path is for 16-bit and float8 inputs
    m = n = k = 4096
    a, b = _normal(30, (m, k), dtype), _normal(31, (k, n), dtype)
    grad_of = functools.partial(forward_backward, argnums=(0, 1),
                                cotangents=[_normal(32, (m, n), dtype)])

    mine = lambda a, b: ops.matmul(a, b, interpret=False)  # noqa: E731
    pairs = (("fwd", mine, jnp.matmul), ("fwd+bwd", grad_of(mine), grad_of(jnp.matmul)))
    timed_rows(f"matmul {m}x{n}x{k} {jnp.dtype(dtype).name}", pairs, (a, b),
               lambda kind: 2 * m * n * k * (1 if kind == "fwd" else 3))


def linear_cross_entropies(dtype):
    """linear_cross_entropy beside `cross_entropy(h @ w)` in jnp: time and peak memory.

    FLOPs count 2*N*D*V per GEMM: one forward, three for jnp's forward + backward (jtile's
    backward recomputes the logits: four GEMMs' work in the same count)."""
    if dtype == jnp.float32:
        return  # the bfloat16 training shape is the one that matters
    rows, hidden, vocab = 16384, 4096, 131072
    h = _normal(33, (rows, hidden), dtype)
    w = _normal(34, (hidden, vocab), dtype, hidden ** -0.5)
    labels = jax.random.randint(jax.random.key(35), (rows,), 0, vocab)
    grad_of = functools.partial(forward_backward, argnums=(0, 1),
                                cotangents=[_normal(36, (rows,), jnp.float32)])

    def jnp_lce(h, w):
        return ref.cross_entropy((h @ w).astype(jnp.float32), labels)

    mine = lambda h, w: ops.linear_cross_entropy(h, w, labels, interpret=False)  # noqa
    pairs = (("fwd", mine, jnp_lce), ("fwd+bwd", grad_of(mine), grad_of(jnp_lce)))
    timed_rows(f"linear_cross_entropy ({rows}, {hidden}, {vocab}) {jnp.dtype(dtype).name}",
               pairs, (h, w), lambda kind: 2 * rows * hidden * vocab * (1 if kind == "fwd"
                                                                         else 3))


def step_ops(dtype):
    """Each op of examples/train_gpt.py at the shapes of its one-GPU training step, jtile's
    ops beside the jax.numpy + cuDNN ops that the example's baseline model is built from (its
    `Ops` tables): where the step's time goes, op by op."""
    if dtype == jnp.float32:
        return  # the step's activations are bfloat16
    from examples import train_gpt
    from examples.gpt import corpus as corpus_lib
    from examples.gpt import model as gpt

    preset = train_gpt.PRESETS["h200"]
    vocab = corpus_lib.load_corpus(1 << 20).vocab_size
    b, s, d, hd = preset["batch"], preset["seq"], preset["d_model"], preset["head_dim"]
    hq, hkv = preset["heads"], preset["kv_heads"]
    hidden = gpt.default_mlp_hidden(d)
    mine, theirs = gpt.jtile_ops(), gpt.jnp_ops()
    rows = b * s
    x, r = _normal(40, (rows, d), dtype), _normal(41, (rows, d), dtype)
    w = 1.0 + 0.1 * _normal(42, (d,), jnp.float32)
    size = x.dtype.itemsize * rows * d
    compare(f"step rms_norm+residual ({rows}, {d})", lambda x, r, w: mine.rms_norm(x, w, r),
            lambda x, r, w: theirs.rms_norm(x, w, r), (x, r, w), (0, 1, 2), 4 * size,
            7 * size)
    cfg = gpt.GPTConfig(vocab_size=vocab, d_model=d, n_heads=hq, n_kv_heads=hkv, head_dim=hd,
                        seq=s)
    cos, sin = gpt.rotary_tables(cfg)
    q = _normal(43, (b, s, hq, hd), dtype)
    size = q.dtype.itemsize * q.size
    compare(f"step rotary q ({b}, {s}, {hq}, {hd})", lambda q: mine.rotary(q, cos, sin),
            lambda q: theirs.rotary(q, cos, sin), (q,), (0,), 2 * size, 4 * size)
    k, v = _normal(44, (b, s, hkv, hd), dtype), _normal(45, (b, s, hkv, hd), dtype)
    size = q.dtype.itemsize * (2 * q.size + 2 * k.size)
    compare(f"step attention causal ({b}, {s}, {hq}/{hkv}, {hd})", mine.attention,
            theirs.attention, (q, k, v), (0, 1, 2), size, 3 * size)
    gate, up = _normal(46, (rows, hidden), dtype), _normal(47, (rows, hidden), dtype)
    size = gate.dtype.itemsize * gate.size
    compare(f"step swiglu ({rows}, {hidden})", mine.swiglu, theirs.swiglu, (gate, up), (0, 1),
            3 * size, 8 * size)
    h = _normal(48, (rows, d), dtype)
    w_out = _normal(49, (d, vocab), dtype, d ** -0.5)
    labels = jax.random.randint(jax.random.key(50), (rows,), 0, vocab)
    size = h.dtype.itemsize * (h.size + w_out.size)
    compare(f"step linear_cross_entropy ({rows}, {d}, {vocab})",
            lambda h, w: mine.loss(h, w, labels), lambda h, w: theirs.loss(h, w, labels),
            (h, w_out), (0, 1), size, 3 * size)


SECTIONS = (norms, softmaxes, cross_entropies, swiglus, rotaries, attentions, matmuls,
            linear_cross_entropies, step_ops)


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
