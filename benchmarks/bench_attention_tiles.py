"""jtile.ops.attention forward + backward under each candidate backward tile shape, beside
cuDNN, on the GPU: which `HOPPER_TILES` entry the op should take.

    python benchmarks/bench_attention_tiles.py
    python benchmarks/bench_attention_tiles.py --forward   # forward tile shapes instead
    python benchmarks/bench_attention_tiles.py --forward=192  # ... of 192 query rows only
    python benchmarks/bench_attention_tiles.py --persistent  # persistent tile loops or not
    python benchmarks/bench_attention_tiles.py --overlap-copies  # the op's tiles: no
                                                           # overlap, P in one or two copies
    python benchmarks/bench_attention_tiles.py --overlap-one-copy  # ... where one copy is
                                                           # the default, against none
    python benchmarks/bench_attention_tiles.py --overlap   # forward with/without
                                                           # JTILE_OVERLAP_GEMMS
    python benchmarks/bench_attention_tiles.py --order     # causal launch orders
    python benchmarks/bench_attention_tiles.py --pingpong  # consumer warpgroups in turn
                                                           # (JTILE_PINGPONG) or not
    python benchmarks/bench_attention_tiles.py --option=NAME=0,1  # a forward kernel option
    python benchmarks/bench_attention_tiles.py --fold-clears  # forward + backward with
                                                              # JTILE_FOLD_ACCUMULATOR_CLEARS=0/1
    python benchmarks/bench_attention_tiles.py --late-waits   # ... JTILE_LATE_WGMMA_WAITS=0/1
    python benchmarks/bench_attention_tiles.py --backward-variants  # late waits, early dP^T

`--forward` times the forward alone under each candidate forward tile shape, at the shape
above and at the attention of examples/train_gpt.py's step (B16 S1024 H12/4 D64 causal,
bfloat16), where short sequences leave few key tiles per block.

B4 S4096 H16 float16, head dim 64 and 128, full (`--causal` adds the causal rows). Backward
tiles are (block_m keys per block, block_n queries per step), with the producer warpgroup's
registers (JTILE_PRODUCER_REGISTERS, which the forward kernel takes too) and how dQ is added
(`tma`: staged in shared memory for the TMA engine's reduce; `atom`: per-element atomics); each row also says
whether ptxas serialized the backward kernel's wgmmas (a JtilePerformanceWarning).
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import os
import sys
import warnings

import jax
import jax.numpy as jnp

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import jtile  # noqa: E402
import jtile.ops as ops  # noqa: E402
from benchmarks.bench import bench  # noqa: E402
from benchmarks.bench_ops import forward_backward  # noqa: E402
# jtile.ops.attention is the op (the package re-exports it): the module holds its tile table.
attention_module = importlib.import_module("jtile.ops.attention")
block_order = importlib.import_module("jtile.ops.block_order")

# (block_m, block_n, producer registers, dQ staged for the TMA reduce): the shipped shape
# first, then the same shape with dQ added by per-element atomics, then the producer at 40
# registers (the consumers at 232, where ptxas serializes the head-dim-128 backward's
# wgmmas), then smaller key blocks (fewer registers, twice the dQ traffic).
CANDIDATES = {
    64: [(128, 128, 24, True), (128, 128, 24, False), (128, 128, 40, True),
         (64, 128, 24, True)],
    128: [(128, 64, 24, True), (128, 64, 24, False), (128, 64, 40, True), (64, 128, 24, True)],
}


def _time(fn, args):
    """Median milliseconds and the outputs (forward outputs and gradients). `fn` is traced
    afresh (jax.jit keeps one trace per function object, which would keep the kernels of the
    first tile shape or setting timed)."""
    return bench(jax.jit(lambda *a: fn(*a)), *args, iters=10, reps=3, loop_seconds=0.3)


def _rel_err(a, b) -> float:
    a = jnp.concatenate([jnp.ravel(x).astype(jnp.float32) for x in jax.tree_util.tree_leaves(a)])
    b = jnp.concatenate([jnp.ravel(x).astype(jnp.float32) for x in jax.tree_util.tree_leaves(b)])
    return float(jnp.linalg.norm(a - b) / jnp.linalg.norm(b))


# Forward tiles (block_m, block_n, stages, threads): the shipped shape first.
FORWARD_CANDIDATES = [(128, 128, 2, 256), (128, 128, 3, 256), (128, 64, 2, 256),
                      (128, 64, 3, 256), (64, 128, 2, 128), (64, 64, 2, 128),
                      (192, 128, 2, 384), (192, 128, 3, 384), (192, 64, 2, 384)]
FORWARD_SHAPES = [  # (batch, seq, heads, kv heads, head dim, causal, dtype)
    (16, 1024, 12, 4, 64, True, jnp.bfloat16), (4, 4096, 16, 16, 64, False, jnp.float16),
    (4, 4096, 16, 16, 64, True, jnp.float16), (4, 4096, 16, 16, 128, False, jnp.float16),
    (4, 4096, 16, 16, 128, True, jnp.float16),
]


def _forward_inputs(b, s, h, kvh, d, causal, dtype):
    """q, k, v for one FORWARD_SHAPES row, its forward FLOPs and its label."""
    keys = jax.random.split(jax.random.key(d), 3)
    q = jax.random.normal(keys[0], (b, s, h, d), jnp.float32).astype(dtype)
    k, v = (jax.random.normal(key, (b, s, kvh, d), jnp.float32).astype(dtype)
            for key in keys[1:])
    work = 4 * b * h * s * s * d / (2 if causal else 1)
    label = f"B{b} S{s} H{h}/{kvh} D{d} {'causal' if causal else 'full'} {jnp.dtype(dtype).name}"
    return (q, k, v), work, label


@contextlib.contextmanager
def _forward_tiles(d, block_m, block_n, stages, threads):
    """jtile.ops.attention's head-dim-`d` forward on these tiles at every sequence length."""
    shipped, short_seq = attention_module.HOPPER_TILES[d], attention_module.SHORT_SEQ
    attention_module.HOPPER_TILES[d] = (
        dict(block_m=block_m, block_n=block_n, stages=stages, threads=threads), shipped[1])
    attention_module.SHORT_SEQ = 0
    attention_module._launcher.cache_clear()
    try:
        yield
    finally:
        attention_module.HOPPER_TILES[d], attention_module.SHORT_SEQ = shipped, short_seq
        attention_module._launcher.cache_clear()


def forward_tiles_table():
    for shape in FORWARD_SHAPES:
        causal, d = shape[5], shape[4]
        (q, k, v), work, label = _forward_inputs(*shape)
        cudnn = functools.partial(jax.nn.dot_product_attention, is_causal=causal,
                                  implementation="cudnn")
        t_cudnn, reference = _time(cudnn, (q, k, v))
        print(f"{label:<36} cudnn {t_cudnn:7.3f} ms {work / t_cudnn / 1e9:6.1f} TFLOP/s",
              flush=True)
        mine = functools.partial(ops.attention, causal=causal, interpret=False)
        rows = [int(a.split("=")[1]) for a in sys.argv if a.startswith("--forward=")]
        for block_m, block_n, stages, threads in FORWARD_CANDIDATES:
            if rows and block_m not in rows:
                continue
            try:
                with _forward_tiles(d, block_m, block_n, stages, threads):
                    t, out = _time(mine, (q, k, v))
            except jtile.JtileError as error:
                print(f"{label:<36} fwd {block_m}x{block_n} s{stages} t{threads} fails: "
                      f"{str(error).splitlines()[0][:160]}", flush=True)
                continue
            print(f"{label:<36} fwd {block_m:>3}x{block_n:<3} s{stages} t{threads:<3} "
                  f"{t:7.3f} ms {work / t / 1e9:6.1f} TFLOP/s  vs cudnn x{t_cudnn / t:5.2f}  "
                  f"err {_rel_err(out, reference):.1e}", flush=True)
        t, out = _time(mine, (q, k, v))
        print(f"{label:<36} fwd as shipped      {t:7.3f} ms {work / t / 1e9:6.1f} TFLOP/s  "
              f"vs cudnn x{t_cudnn / t:5.2f}  err {_rel_err(out, reference):.1e}", flush=True)


# The variants the --overlap table alternates between: environment settings.
OVERLAP_VARIANTS = {
    "plain": {"JTILE_OVERLAP_GEMMS": "0"},
    "overlapped": {"JTILE_OVERLAP_GEMMS": "1"},
}


@contextlib.contextmanager
def _environment(settings):
    """`settings` in os.environ (the op's kernels rebuilt), the old values back after."""
    saved = {name: os.environ.get(name) for name in settings}
    os.environ.update(settings)
    attention_module._launcher.cache_clear()
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        attention_module._launcher.cache_clear()


# The --overlap-copies table: the op's forward tiles without the P V overlap, with P in one
# register copy, and (where the ring has three stages) in two.
OVERLAP_COPY_VARIANTS = {
    "plain": {"JTILE_OVERLAP_GEMMS": "0"},
    "one copy": {"JTILE_OVERLAP_GEMMS": "1", "JTILE_OVERLAP_COPIES": "1"},
    "two copies": {"JTILE_OVERLAP_GEMMS": "1", "JTILE_OVERLAP_COPIES": "2"},
}

OVERLAP_COPY_TILES = {64: [(192, 128, 2, 384), (192, 128, 3, 384), (128, 128, 3, 256)],
                      128: [(128, 128, 2, 256), (192, 128, 2, 384)]}

# The --pingpong table: the overlapped forward with the consumer warpgroups issuing S(j) and
# P V(j - 1) in turn (FlashAttention-3's pairing of both overlaps) or all at once, on the op's
# tiles and the other three-stage shapes.
PINGPONG_VARIANTS = {
    "at once": {"JTILE_PINGPONG": "0"},
    "in turn": {"JTILE_PINGPONG": "1"},
}
PINGPONG_TILES = {64: [(192, 128, 3, 384), (128, 128, 3, 256)],
                  128: [(128, 128, 3, 256)]}

# The three-stage tiles on which the overlap keeps one copy of P by default (--overlap-one-copy).
ONE_COPY_TILES = {64: [(192, 128, 3, 384)], 128: [(128, 128, 3, 256)]}

# The --variants table: the plain schedule beside each code-generation setting that changed
# since the forward last ran faster (thread-written epilogues, the producer's register share).
SETTING_VARIANTS = {
    "plain": {"JTILE_OVERLAP_GEMMS": "0"},
    "overlapped": {"JTILE_OVERLAP_GEMMS": "1"},
    "plain, thread store": {"JTILE_OVERLAP_GEMMS": "0", "JTILE_TMA_STORE": "0"},
    "plain, producer 40": {"JTILE_OVERLAP_GEMMS": "0", "JTILE_PRODUCER_REGISTERS": "40"},
    "plain, both": {"JTILE_OVERLAP_GEMMS": "0", "JTILE_TMA_STORE": "0",
                    "JTILE_PRODUCER_REGISTERS": "40"},
}


# The --persistent table: one block per tile against the compiler's persistent tile loop
# (JTILE_PERSISTENT, non-causal kernels only: causal tiles do unequal work). An earlier H200
# run of benchmarks/bench.py with JTILE_PERSISTENT=1 (h200_bench_persistent.log) timed D64
# full at 0.673 ms against 0.756-0.831 ms in the runs without it since.
PERSISTENT_VARIANTS = {
    "one block per tile": {"JTILE_PERSISTENT": "0"},
    "persistent": {"JTILE_PERSISTENT": "1"},
}


def settings_table(variants: dict, shapes, rounds: int = 2, shipped_only: bool = False,
                   tiles=None):
    """The forward under each of `variants` (environment settings), alternating, times
    relative to the first, at `shapes`: per candidate tile shape of three stages or more (the
    P V overlap's; where its fragments do not fit the registers the overlapped variant falls
    back to the plain schedule and times the same), or the op's own tile (`shipped_only`), or
    per head dim the tiles `tiles[d]` lists."""
    for shape in shapes:
        causal, d = shape[5], shape[4]
        (q, k, v), work, label = _forward_inputs(*shape)
        mine = functools.partial(ops.attention, causal=causal, interpret=False)
        shipped = attention_module.HOPPER_TILES[d][0]
        candidates = ([tuple(shipped[key] for key in ("block_m", "block_n", "stages", "threads"))]
                      if shipped_only else tiles[d] if tiles else FORWARD_CANDIDATES)
        for block_m, block_n, stages, threads in candidates:
            if stages < 3 and not shipped_only and not tiles:
                continue
            times = {name: [] for name in variants}
            with _forward_tiles(d, block_m, block_n, stages, threads):
                for _ in range(rounds):
                    for name, settings in variants.items():
                        with _environment(settings):
                            times[name].append(_time(mine, (q, k, v))[0])
            best = {name: min(t) for name, t in times.items()}
            first = next(iter(best.values()))
            cells = "  ".join(f"{name} {t:7.3f} ms {work / t / 1e9:6.1f} TFLOP/s "
                              f"x{first / t:5.2f}" for name, t in best.items())
            print(f"{label:<36} fwd {block_m:>3}x{block_n:<3} s{stages}  {cells}", flush=True)


# Causal attention's launch orders (jtile/ops/block_order.py) the --order table compares, as
# L2 budgets: 0 starts the heads one after another (the longest block of each first), the
# shipped budget longest-first across chunks of heads.
ORDER_BUDGETS = {"head by head": 0, "chunked": block_order.L2_BUDGET}


def order_table(rounds: int = 2):
    """Causal forward and forward + backward under each launch order, alternating."""
    shipped = block_order.L2_BUDGET
    for shape in FORWARD_SHAPES:
        if not shape[5]:
            continue
        (q, k, v), work, label = _forward_inputs(*shape)
        forward = functools.partial(ops.attention, causal=True, interpret=False)
        both = forward_backward(forward, argnums=(0, 1, 2), cotangents=[q])
        for name, fn, flops in (("fwd", forward, work), ("fwd+bwd", both, 3.5 * work)):
            times = {order: [] for order in ORDER_BUDGETS}
            for _ in range(rounds):
                for order, budget in ORDER_BUDGETS.items():
                    block_order.L2_BUDGET = budget
                    attention_module._launcher.cache_clear()
                    times[order].append(_time(fn, (q, k, v))[0])
            block_order.L2_BUDGET = shipped
            attention_module._launcher.cache_clear()
            first = min(times["head by head"])
            cells = "  ".join(f"{order} {min(t):7.3f} ms {flops / min(t) / 1e9:6.1f} TFLOP/s "
                              f"x{first / min(t):5.2f}" for order, t in times.items())
            print(f"{label:<36} {name:<8} {cells}", flush=True)


@contextlib.contextmanager
def _forward_option(**option):
    """Every forward tile table entry (long and short sequences) with `option` added."""
    saved = (dict(attention_module.HOPPER_TILES), dict(attention_module.HOPPER_SHORT_FORWARD))
    for d, (forward, backward) in saved[0].items():
        attention_module.HOPPER_TILES[d] = (dict(forward, **option), backward)
    for d, forward in saved[1].items():
        attention_module.HOPPER_SHORT_FORWARD[d] = dict(forward, **option)
    attention_module._launcher.cache_clear()
    try:
        yield
    finally:
        attention_module.HOPPER_TILES.clear()
        attention_module.HOPPER_TILES.update(saved[0])
        attention_module.HOPPER_SHORT_FORWARD.clear()
        attention_module.HOPPER_SHORT_FORWARD.update(saved[1])
        attention_module._launcher.cache_clear()


def option_table(name: str, values, rounds: int = 2):
    """The shipped forward with the kernel option `name` at each of `values`, alternating,
    beside cuDNN (`--option NAME=V1,V2`; integer values)."""
    for shape in FORWARD_SHAPES:
        causal = shape[5]
        (q, k, v), work, label = _forward_inputs(*shape)
        cudnn = functools.partial(jax.nn.dot_product_attention, is_causal=causal,
                                  implementation="cudnn")
        t_cudnn, reference = _time(cudnn, (q, k, v))
        mine = functools.partial(ops.attention, causal=causal, interpret=False)
        times, errors = {value: [] for value in values}, {}
        for _ in range(rounds):
            for value in values:
                with _forward_option(**{name: value}):
                    t, out = _time(mine, (q, k, v))
                times[value].append(t)
                errors[value] = _rel_err(out, reference)
        cells = "  ".join(f"{name}={value} {min(t):7.3f} ms x{t_cudnn / min(t):5.2f} cudnn "
                          f"err {errors[value]:.1e}" for value, t in times.items())
        print(f"{label:<36} cudnn {t_cudnn:7.3f} ms  {cells}", flush=True)


def env_ab_table(variable: str, off: str, on: str, rounds: int = 2):
    """Forward + backward with the setting `variable` at 0 (`off`) and 1 (`on`), alternating,
    at the FORWARD_SHAPES in bfloat16."""
    for shape in FORWARD_SHAPES:
        (q, k, v), work, label = _forward_inputs(*shape[:6], jnp.bfloat16)
        forward = functools.partial(ops.attention, causal=shape[5], interpret=False)
        both = forward_backward(forward, argnums=(0, 1, 2), cotangents=[q])
        times = {"0": [], "1": []}
        for _ in range(rounds):
            for flag in times:
                with _environment({variable: flag}):
                    times[flag].append(_time(both, (q, k, v))[0])
        first, second = min(times["0"]), min(times["1"])
        print(f"{label:<40} fwd+bwd  {off} {first:7.3f} ms  {on} {second:7.3f} ms  "
              f"x{first / second:5.2f}", flush=True)


# The --backward-variants table: (environment settings, backward kernel options) per name.
BACKWARD_VARIANTS = {
    "waits at once": ({"JTILE_LATE_WGMMA_WAITS": "0"},
                      {"early_dp": False, "queries_by_keys": False}),
    "late waits": ({"JTILE_LATE_WGMMA_WAITS": "1"}, {"early_dp": False, "queries_by_keys": False}),
    "late waits, early dP": ({"JTILE_LATE_WGMMA_WAITS": "1"},
                             {"early_dp": True, "queries_by_keys": False}),
    "queries by keys": ({"JTILE_LATE_WGMMA_WAITS": "1"},
                        {"early_dp": True, "queries_by_keys": True}),
}


@contextlib.contextmanager
def _backward_option(**option):
    """Every backward tile table entry with `option` added."""
    saved = dict(attention_module.HOPPER_TILES)
    for d, (forward, backward) in saved.items():
        attention_module.HOPPER_TILES[d] = (forward, dict(backward, **option))
    attention_module._launcher.cache_clear()
    try:
        yield
    finally:
        attention_module.HOPPER_TILES.clear()
        attention_module.HOPPER_TILES.update(saved)
        attention_module._launcher.cache_clear()


def backward_variants_table(rounds: int = 2):
    """Forward + backward under each of BACKWARD_VARIANTS, alternating, beside cuDNN, at the
    FORWARD_SHAPES in bfloat16, with each variant's error against cuDNN's gradients."""
    for shape in FORWARD_SHAPES:
        (q, k, v), work, label = _forward_inputs(*shape[:6], jnp.bfloat16)
        grad_of = functools.partial(forward_backward, argnums=(0, 1, 2), cotangents=[q])
        cudnn = grad_of(functools.partial(jax.nn.dot_product_attention, is_causal=shape[5],
                                          implementation="cudnn"))
        t_cudnn, reference = _time(cudnn, (q, k, v))
        both = grad_of(functools.partial(ops.attention, causal=shape[5], interpret=False))
        times, errors = {name: [] for name in BACKWARD_VARIANTS}, {}
        for _ in range(rounds):
            for name, (settings, option) in BACKWARD_VARIANTS.items():
                with _environment(settings), _backward_option(**option):
                    t, out = _time(both, (q, k, v))
                times[name].append(t)
                errors[name] = _rel_err(out, reference)
        cells = "  ".join(f"{name} {min(t):7.3f} ms x{t_cudnn / min(t):5.2f} err {errors[name]:.0e}"
                          for name, t in times.items())
        print(f"{label:<40} fwd+bwd cudnn {t_cudnn:7.3f} ms  {cells}", flush=True)


def main():
    print("jax", jax.__version__, "devices", jax.devices(), flush=True)
    if "--fold-clears" in sys.argv:
        env_ab_table("JTILE_FOLD_ACCUMULATOR_CLEARS", "clears kept", "folded")
        return
    if "--late-waits" in sys.argv:
        env_ab_table("JTILE_LATE_WGMMA_WAITS", "waits at once", "late waits")
        return
    if "--backward-variants" in sys.argv:
        backward_variants_table()
        return
    options = [a for a in sys.argv[1:] if a.startswith("--option=")]
    if options:
        name, values = options[0][len("--option="):].split("=")
        option_table(name, [int(v) for v in values.split(",")])
        return
    if any(a.split("=")[0] == "--forward" for a in sys.argv):
        forward_tiles_table()
        return
    if "--overlap-one-copy" in sys.argv:
        settings_table({"plain": {"JTILE_OVERLAP_GEMMS": "0"}, "as shipped": {}},
                       FORWARD_SHAPES[1:], tiles=ONE_COPY_TILES)
        return
    if "--pingpong" in sys.argv:
        settings_table(PINGPONG_VARIANTS, FORWARD_SHAPES[1:], tiles=PINGPONG_TILES)
        return
    if "--overlap-copies" in sys.argv:
        settings_table(OVERLAP_COPY_VARIANTS, FORWARD_SHAPES[1:], tiles=OVERLAP_COPY_TILES)
        return
    if "--overlap" in sys.argv:
        settings_table(OVERLAP_VARIANTS, FORWARD_SHAPES[1:])
        return
    if "--persistent" in sys.argv:
        settings_table(PERSISTENT_VARIANTS, FORWARD_SHAPES[1::2], shipped_only=True)
        return
    if "--variants" in sys.argv:
        settings_table(SETTING_VARIANTS, FORWARD_SHAPES[1:4:2])
        return
    if "--order" in sys.argv:
        order_table()
        return
    b, s, h = 4, 4096, 16
    for d, options in CANDIDATES.items():
        forward_tiles = attention_module.HOPPER_TILES[d][0]
        for causal in (False, True) if "--causal" in sys.argv else (False,):
            keys = jax.random.split(jax.random.key(d), 4)
            q, k, v, cot = (jax.random.normal(key, (b, s, h, d), jnp.float32)
                            .astype(jnp.float16) for key in keys)
            work = 3.5 * 4 * b * h * s * s * d / (2 if causal else 1)
            grad_of = functools.partial(forward_backward, argnums=(0, 1, 2), cotangents=[cot])
            cudnn = grad_of(lambda q, k, v: jax.nn.dot_product_attention(
                q, k, v, is_causal=causal, implementation="cudnn"))
            t_cudnn, reference = _time(cudnn, (q, k, v))
            label = f"D{d} {'causal' if causal else 'full'}"
            print(f"{label:<12} cudnn            {t_cudnn:7.3f} ms {work / t_cudnn / 1e9:6.1f} "
                  "TFLOP/s", flush=True)
            for block_m, block_n, producer, stage_dq in options:
                backward = dict(block_m=block_m, block_n=block_n, stages=2, threads=256,
                                stage_dq=stage_dq, early_dp=True)
                attention_module.HOPPER_TILES[d] = (forward_tiles, backward)
                attention_module._launcher.cache_clear()
                os.environ["JTILE_PRODUCER_REGISTERS"] = str(producer)
                mine = grad_of(functools.partial(ops.attention, causal=causal,
                                                 interpret=False))
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    try:
                        t, out = _time(mine, (q, k, v))
                    except jtile.JtileTargetError as error:  # e.g. over the shared memory
                        print(f"{label:<12} bwd {block_m:>3}x{block_n:<3} does not fit: "
                              f"{str(error).splitlines()[0][:160]}", flush=True)
                        continue
                flags = "serialized" if any("serialized" in str(w.message)
                                            for w in caught) else ""
                dq = "tma" if stage_dq else "atom"
                print(f"{label:<12} bwd {block_m:>3}x{block_n:<3} p{producer:<3} dQ {dq:<4} "
                      f"{t:7.3f} ms "
                      f"{work / t / 1e9:6.1f} TFLOP/s  vs cudnn x{t_cudnn / t:5.2f}  "
                      f"err {_rel_err(out, reference):.1e} {flags}",
                      flush=True)


if __name__ == "__main__":
    main()
