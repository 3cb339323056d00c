"""jtile against XLA (cuBLAS / cuDNN / fused XLA) on the GPU, side by side in one run.

Prints one table: workload, jtile ms, XLA ms, jtile speed relative to XLA (>1: jtile faster),
jtile throughput, and the error of each jtile result against the XLA one. Then the cold
(empty disk cache) and warm (new process, disk cache hit) compile times of the GEMM kernel.
"""

from __future__ import annotations

import functools
import math
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

import jtile  # noqa: E402
import jtile.ops  # noqa: E402
from examples import flash_attention, gemm, layer_norm, softmax  # noqa: E402

ROWS = []


def bench(f, *args, iters=20, reps=7, loop_seconds=1.0):
    """Median milliseconds per call over `reps` timed loops of `iters` calls, after warm-up.
    A slow implementation (a baseline at a tenth of the speed) runs fewer calls per loop, so
    each loop stays near `loop_seconds` and a whole table fits one device call."""
    out = f(*args)
    jax.block_until_ready(out)
    start = time.perf_counter()
    out = f(*args)
    jax.block_until_ready(out)
    iters = max(1, min(iters, int(loop_seconds / (time.perf_counter() - start))))
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


def try_bench(fn, args, iters):
    try:
        return bench(jax.jit(fn), *args, iters=iters)
    except Exception as e:  # a failing implementation is reported, the others still run
        print(f"  FAILED: {type(e).__name__}: {str(e)[:300]}", flush=True)
        return None


def compare(workload, jtile_fns, baselines, args, *, flops=None, bytes_moved=None, iters=20):
    """Times every jtile configuration and every baseline on the same inputs, in one run.

    Args:
        jtile_fns: {configuration label: function}; the fastest correct one is reported.
        baselines: {name: function}; the first one is the reference for the error column.
    """
    if not isinstance(jtile_fns, dict):
        jtile_fns = {"": jtile_fns}
    if not isinstance(baselines, dict):
        baselines = {"xla": baselines}
    times, ref = {}, None
    for name, fn in baselines.items():
        got = try_bench(fn, args, iters)
        if got is not None:
            times[name] = got[0]
            ref = got[1] if ref is None else ref
    best = None
    for label, fn in jtile_fns.items():
        got = try_bench(fn, args, iters)
        if got is None:
            continue
        err = rel_err(got[1], ref) if ref is not None else float("nan")
        rate = _rate(got[0], flops, bytes_moved)
        print(f"  jtile [{label}] {got[0]:8.3f} ms {rate} err {err:.1e}", flush=True)
        if err < 5e-2 and (best is None or got[0] < best[0]):
            best = (got[0], label, err)
    if best is None:
        ROWS.append(f"{workload:<46} FAILED")
        print(ROWS[-1], flush=True)
        return
    t_jt, label, err = best
    speeds = "  ".join(f"vs {name} x{t / t_jt:5.2f} ({t:.3f} ms)" for name, t in times.items())
    row = (f"{workload:<46} jtile {t_jt:8.3f} ms {_rate(t_jt, flops, bytes_moved)}  {speeds}  "
           f"err {err:.1e}  [{label}]")
    ROWS.append(row)
    print(row, flush=True)


def _rate(ms, flops, bytes_moved):
    if flops:
        return f"{flops / ms / 1e9:6.1f} TFLOP/s"
    if bytes_moved:
        return f"{bytes_moved / ms / 1e9:5.2f} TB/s"
    return ""


# cluster_n=2: pairs of column blocks in a thread-block cluster, A tiles multicast by TMA.
GEMM_CONFIGS = (
    dict(block_m=128, block_n=256, block_k=64, stages=4, threads=256),
    dict(block_m=256, block_n=128, block_k=64, stages=4, threads=256),
    dict(block_m=128, block_n=256, block_k=64, stages=4, threads=256, cluster_n=2),
    dict(block_m=256, block_n=128, block_k=64, stages=4, threads=256, cluster_n=2),
)

ATTENTION_CONFIGS = (
    dict(block_m=128, block_n=128, threads=256, stages=2),
    dict(block_m=128, block_n=128, threads=256, stages=3),
    dict(block_m=128, block_n=64, threads=256, stages=3),
    dict(block_m=192, block_n=128, threads=384, stages=2),  # three consumer warpgroups
    dict(block_m=192, block_n=128, threads=384, stages=3),
)


def _label(cfg):
    return " ".join(f"{k}={v}" for k, v in cfg.items())


def pallas_matmul(dtype):
    """Pallas Mosaic GPU's Hopper matmul (shipped in jax), at its best of a few tilings."""
    from jax.experimental.pallas.ops.gpu import hopper_matmul_mgpu as hm

    out = {}
    for tm, tn, minor, width, wg, steps in ((128, 128, "N", 4, "N", 4),
                                            (128, 256, "N", 8, "N", 3)):
        cfg = hm.TuningConfig(tile_m=tm, tile_n=tn, tile_k=64, max_concurrent_steps=steps,
                              epi_tile_n=64, epi_tile_m=64,
                              grid_minor_dim=getattr(hm.MatmulDimension, minor),
                              grid_tile_width=width, wg_dimension=getattr(hm.MatmulDimension, wg))
        out[f"pallas-mgpu {tm}x{tn}"] = lambda a, b, cfg=cfg: hm.matmul(a, b, None, config=cfg)
    return out


def gemms():
    for m, n, k in ((4096, 4096, 4096), (8192, 8192, 8192), (4096, 8192, 4096)):
        for dtype in (jnp.float16, jnp.bfloat16):
            a = jax.random.normal(jax.random.key(0), (m, k), jnp.float32).astype(dtype)
            b = jax.random.normal(jax.random.key(1), (k, n), jnp.float32).astype(dtype)
            jtile_fns = {_label(cfg): functools.partial(gemm.matmul, interpret=False, **cfg)
                         for cfg in GEMM_CONFIGS}
            # Tuned over examples/gemm.py's MATMUL_CONFIGS at the first jit (before the timing).
            jtile_fns["autotuned"] = functools.partial(gemm.matmul_autotuned, interpret=False)
            baselines = {"xla": jnp.dot}
            try:
                for name, fn in pallas_matmul(dtype).items():
                    baselines[name] = fn
            except Exception as e:
                print("  no Pallas Mosaic GPU matmul:", type(e).__name__, e)
            compare(f"gemm {m}x{n}x{k} {jnp.dtype(dtype).name}", jtile_fns, baselines,
                    (a, b), flops=2 * m * n * k)
            _keep_best_pallas()


def _keep_best_pallas():
    """Collapse the Pallas tilings of the last row into its fastest one."""
    row = ROWS[-1]
    parts = row.split("  ")
    pallas = [p for p in parts if p.startswith("vs pallas-mgpu")]
    if len(pallas) > 1:
        fastest = min(pallas, key=lambda p: float(p.split("(")[1].split(" ")[0]))
        ROWS[-1] = "  ".join(p for p in parts if p not in pallas or p == fastest)


def fp8_gemm():
    from tests.gpu.test_hopper_gpu import fp8_matmul

    m = n = k = 8192
    a = jax.random.normal(jax.random.key(0), (m, k), jnp.float32).astype(jnp.float8_e4m3fn)
    b = jax.random.normal(jax.random.key(1), (n, k), jnp.float32).astype(jnp.float8_e4m3fn)

    def xla_fp8(a, b):
        return jax.lax.dot_general(a, b, (((1,), (1,)), ((), ())),
                                   preferred_element_type=jnp.bfloat16)

    configs = (dict(block_m=128, block_n=256, block_k=128, stages=4, threads=256),
               dict(block_m=128, block_n=256, block_k=128, stages=3, threads=256),
               dict(block_m=128, block_n=128, block_k=128, stages=4, threads=128))
    compare("gemm 8192^3 float8_e4m3 (A @ B^T, bf16 out)",
            {_label(c): functools.partial(fp8_matmul, **c) for c in configs},
            {"xla fp8 dot": xla_fp8}, (a, b), flops=2 * m * n * k)


def int8_gemm():
    """int8 x int8 -> int32 (A @ B^T) on wgmma beside XLA's integer dot (cuBLAS)."""
    import jtile
    from tests.language.test_int8_gemm import int_gemm

    m = n = k = 8192
    a = jax.random.randint(jax.random.key(0), (m, k), -128, 128, jnp.int32).astype(jnp.int8)
    b = jax.random.randint(jax.random.key(1), (n, k), -128, 128, jnp.int32).astype(jnp.int8)

    def xla_int8(a, b):
        return jax.lax.dot_general(a, b, (((1,), (1,)), ((), ())),
                                   preferred_element_type=jnp.int32)

    def mine(cfg):
        kernel = functools.partial(int_gemm, b_rows_are_n=True, **cfg)
        return jtile.pallas_like(kernel, out_shape=jax.ShapeDtypeStruct((m, n), jnp.int32),
                                 name="int8_matmul")

    configs = (dict(block_m=128, block_n=256, block_k=128, stages=4, threads=256),
               dict(block_m=128, block_n=256, block_k=128, stages=3, threads=256),
               dict(block_m=128, block_n=128, block_k=128, stages=4, threads=128))
    compare("gemm 8192^3 int8 (A @ B^T, int32 out)", {_label(c): mine(c) for c in configs},
            {"xla int8 dot": xla_int8}, (a, b), flops=2 * m * n * k)


def softmaxes():
    for dtype in (jnp.float32, jnp.bfloat16):
        x = jax.random.normal(jax.random.key(2), (16384, 4096), jnp.float32).astype(dtype)
        nbytes = 2 * x.size * x.dtype.itemsize
        fns = {f"{threads}t": functools.partial(softmax.softmax, block_rows=1, threads=threads,
                                                interpret=False) for threads in (256, 512)}
        compare(f"softmax (16384, 4096) {jnp.dtype(dtype).name}", fns,
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
    b, s, h = 4, 4096, 16
    for d in (64, 128):
        q, k, v = (jax.random.normal(key, (b, s, h, d), jnp.float16)
                   for key in jax.random.split(jax.random.key(6), 3))
        for causal in (False, True):
            flops = 4 * b * h * s * s * d // (2 if causal else 1)
            fns = {_label(cfg): functools.partial(flash_attention.flash_attention,
                                                  causal=causal, interpret=False, **cfg)
                   for cfg in ATTENTION_CONFIGS}
            # Tuned over examples/flash_attention.py's FLASH_CONFIGS at the first jit.
            fns["autotuned"] = functools.partial(flash_attention.flash_attention_autotuned,
                                                 causal=causal, interpret=False)
            # jtile's shipped attention: the same algorithm with its own tiles, launch order
            # (causal: longest blocks first, heads grouped for L2) and mask placement.
            fns["jtile.ops.attention"] = functools.partial(jtile.ops.attention, causal=causal,
                                                           interpret=False)
            baselines = {"cudnn": functools.partial(jax.nn.dot_product_attention,
                                                    is_causal=causal, implementation="cudnn")}
            try:
                from jax.experimental.pallas.ops.gpu import attention_mgpu as am

                cfg = am.TuningConfig(block_q=64, block_kv=128, max_concurrent_steps=2,
                                      causal=causal)
                # Pallas applies no 1/sqrt(d) scale; scaling q first keeps results comparable.
                baselines["pallas-mgpu"] = lambda q, k, v, cfg=cfg, d=d: am.attention(
                    q * jnp.float16(1 / math.sqrt(d)), k, v, cfg)
            except Exception as e:
                print("  no Pallas Mosaic GPU attention:", type(e).__name__, e)
            compare(f"attention fwd B4 S4096 H16 D{d} f16 {'causal' if causal else 'full'}",
                    fns, baselines, (q, k, v), flops=flops, iters=5)


COMPILE_SNIPPET = """
import functools, time, jax, jax.numpy as jnp, sys
sys.path.insert(0, {root!r})
import jtile
from examples import gemm
S = jax.ShapeDtypeStruct
t = time.perf_counter()
kernel = functools.partial(gemm.matmul_kernel, block_m=128, block_n=256, block_k=64, stages=4,
                           threads=256, trans_a=False, trans_b=False)
f = jtile.pallas_like(kernel, out_shape=S((4096, 4096), jnp.float16), name="matmul")
f.lower(S((4096, 4096), jnp.float16), S((4096, 4096), jnp.float16), target={target!r}).compile()
print(time.perf_counter() - t)
"""


def compile_times(target: str):
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, JTILE_CACHE_DIR=cache)
        code = COMPILE_SNIPPET.format(root=ROOT, target=target)
        results = []
        # "Cold" means an empty kernel cache, not files the OS has never read: one process
        # loads the Python packages and libnvrtc first, compiling nothing.
        subprocess.run([sys.executable, "-c", "import jtile, cuda.bindings.nvrtc, "
                        "jtile.compiler.nvrtc as n; n._bindings()"], env=env, check=False)
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
    for section in (gemms, fp8_gemm, int8_gemm, attention, softmaxes, layer_norms):
        if not only or section.__name__ in only:
            section()
    print("\n==== SUMMARY (speed = XLA time / jtile time; > 1 means jtile is faster) ====")
    for row in ROWS:
        print(row)


if __name__ == "__main__":
    main()
