"""jtile against XLA (cuBLAS / cuDNN / fused XLA) on the GPU, side by side in one run.

Prints one table: workload, jtile ms, XLA ms, jtile speed relative to XLA (>1: jtile faster),
jtile throughput, and the error of each jtile result against the XLA one. Then the cold
(empty disk cache) and warm (new process, disk cache hit) compile times of the GEMM kernel.
"""

from __future__ import annotations

import functools
import os
import statistics
import subprocess
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from examples import flash_attention, gemm, layer_norm, softmax  # noqa: E402

ROWS = []


def bench(f, *args, iters=20, reps=7):
    """Median milliseconds per call over `reps` timed loops of `iters` calls, after warm-up."""
    out = f(*args)
    jax.block_until_ready(out)
    out = f(*args)
    jax.block_until_ready(out)
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        for _ in range(iters):
            out = f(*args)
        jax.block_until_ready(out)
        times.append((time.perf_counter() - start) / iters * 1e3)
    return statistics.median(times), out


def rel_err(a, b) -> float:
    a = np.asarray(jnp.asarray(a, jnp.float32), np.float64)
    b = np.asarray(jnp.asarray(b, jnp.float32), np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def compare(workload, jtile_fn, xla_fn, args, *, flops=None, bytes_moved=None, iters=20):
    try:
        t_xla, ref = bench(jax.jit(xla_fn), *args, iters=iters)
        t_jt, out = bench(jax.jit(jtile_fn), *args, iters=iters)
    except Exception as e:  # a failing workload is reported, the others still run
        print(f"FAILED {workload}: {type(e).__name__}: {str(e)[:400]}", flush=True)
        ROWS.append(f"{workload:<44} FAILED {type(e).__name__}")
        return
    rate = ""
    if flops:
        rate = f"{flops / t_jt / 1e9:7.1f} TFLOP/s (xla {flops / t_xla / 1e9:6.1f})"
    elif bytes_moved:
        rate = f"{bytes_moved / t_jt / 1e9:6.2f} TB/s (xla {bytes_moved / t_xla / 1e9:5.2f})"
    row = (f"{workload:<44} jtile {t_jt:8.3f} ms  xla {t_xla:8.3f} ms  "
           f"speed x{t_xla / t_jt:5.2f}  {rate}  err {rel_err(out, ref):.1e}")
    ROWS.append(row)
    print(row, flush=True)


GEMM_CONFIGS = (
    dict(block_m=128, block_n=128, block_k=64, stages=3, threads=128),
    dict(block_m=128, block_n=128, block_k=32, stages=3, threads=128),
    dict(block_m=128, block_n=256, block_k=64, stages=3, threads=256),
    dict(block_m=128, block_n=128, block_k=64, stages=4, threads=128),
)

ATTENTION_CONFIGS = (
    dict(block_m=128, block_n=128, threads=256, stages=2),
    dict(block_m=128, block_n=128, threads=256, stages=2, q_in_registers=True),
    dict(block_m=128, block_n=64, threads=256, stages=2, q_in_registers=True),
    dict(block_m=128, block_n=64, threads=256, stages=2),
    dict(block_m=64, block_n=64, threads=128, stages=2),
)


def gemms():
    m = n = k = 4096
    for dtype in (jnp.float16, jnp.bfloat16):
        a = jax.random.normal(jax.random.key(0), (m, k), jnp.float32).astype(dtype)
        b = jax.random.normal(jax.random.key(1), (k, n), jnp.float32).astype(dtype)
        for cfg in GEMM_CONFIGS:
            tag = (f"{cfg['block_m']}x{cfg['block_n']}x{cfg['block_k']} s{cfg['stages']} "
                   f"t{cfg['threads']}")
            compare(f"gemm 4096^3 {jnp.dtype(dtype).name} [{tag}]",
                    functools.partial(gemm.matmul, interpret=False, **cfg), jnp.dot, (a, b),
                    flops=2 * m * n * k)


def softmaxes():
    for dtype in (jnp.float32, jnp.bfloat16):
        x = jax.random.normal(jax.random.key(2), (16384, 4096), jnp.float32).astype(dtype)
        nbytes = 2 * x.size * x.dtype.itemsize
        for rows, threads in ((1, 256), (1, 512)):
            compare(f"softmax (16384, 4096) {jnp.dtype(dtype).name} [{rows}r/{threads}t]",
                    functools.partial(softmax.softmax, block_rows=rows, threads=threads,
                                      interpret=False),
                    lambda x: jax.nn.softmax(x.astype(jnp.float32), -1).astype(x.dtype), (x,),
                    bytes_moved=nbytes)


def layer_norms():
    for dtype in (jnp.float32, jnp.bfloat16):
        x = jax.random.normal(jax.random.key(3), (16384, 4096), jnp.float32).astype(dtype)
        w = jax.random.normal(jax.random.key(4), (4096,), jnp.float32)
        b = jax.random.normal(jax.random.key(5), (4096,), jnp.float32)
        nbytes = 2 * x.size * x.dtype.itemsize
        ln = layer_norm.make_layer_norm(block_rows=1, threads=256, interpret=False)
        compare(f"layer norm (16384, 4096) {jnp.dtype(dtype).name}", ln,
                lambda x, w, b: layer_norm.reference(x, w, b).astype(x.dtype), (x, w, b),
                bytes_moved=nbytes)


def attention():
    b, s, h, d = 4, 4096, 16, 128
    q, k, v = (jax.random.normal(key, (b, s, h, d), jnp.float16)
               for key in jax.random.split(jax.random.key(6), 3))
    for causal in (False, True):
        flops = 4 * b * h * s * s * d // (2 if causal else 1)
        for cfg in ATTENTION_CONFIGS:
            tag = (f"{cfg['block_m']}x{cfg['block_n']} t{cfg['threads']}"
                   f"{' qreg' if cfg.get('q_in_registers') else ''}")
            compare(f"attention fwd B4 S4096 H16 D128 f16 {'causal' if causal else 'full'} "
                    f"[{tag}]",
                    functools.partial(flash_attention.flash_attention, causal=causal,
                                      interpret=False, **cfg),
                    lambda q, k, v: jax.nn.dot_product_attention(
                        q, k, v, is_causal=causal, implementation="cudnn"),
                    (q, k, v), flops=flops, iters=5)


COMPILE_SNIPPET = """
import functools, time, jax, jax.numpy as jnp, sys
sys.path.insert(0, {root!r})
import jtile
from examples import gemm
S = jax.ShapeDtypeStruct
t = time.perf_counter()
kernel = functools.partial(gemm.matmul_kernel, block_m=128, block_n=128, block_k=32, stages=3,
                           threads=128, trans_a=False, trans_b=False)
f = jtile.pallas_like(kernel, out_shape=S((4096, 4096), jnp.float16), name="matmul")
f.lower(S((4096, 4096), jnp.float16), S((4096, 4096), jnp.float16), target={target!r}).compile()
print(time.perf_counter() - t)
"""


def compile_times(target: str):
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, JTILE_CACHE_DIR=cache)
        code = COMPILE_SNIPPET.format(root=ROOT, target=target)
        results = []
        for label in ("cold (empty cache)", "warm (new process, disk cache)"):
            out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                                 text=True, check=False)
            if out.returncode:
                print(out.stderr[-2000:])
                continue
            seconds = float(out.stdout.strip().splitlines()[-1])
            results.append(seconds)
            row = f"compile gemm kernel, {label:<32} {seconds:8.3f} s (trace+codegen+compile)"
            ROWS.append(row)
            print(row, flush=True)


def main():
    print("jax", jax.__version__, "devices", jax.devices(), flush=True)
    target = "sm_90a"
    compile_times(target)
    only = sys.argv[1:]
    for section in (gemms, softmaxes, layer_norms, attention):
        if not only or section.__name__ in only:
            section()
    print("\n==== SUMMARY (speed = XLA time / jtile time; > 1 means jtile is faster) ====")
    for row in ROWS:
        print(row)


if __name__ == "__main__":
    main()
