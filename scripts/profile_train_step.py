"""Per-kernel GPU time of a training step of examples/train_gpt.py, jtile model beside the
jax.numpy + cuDNN model, so that a gap in the step time can be traced to the kernels behind it.

Each model's step (the example's size flags work) is compiled and run twice, then three times
under `jax.profiler.trace` (CUPTI: no Nsight needed); the kernels on the GPU streams are
grouped by name (jtile kernels carry their op's name; XLA's fusions and cuBLAS/cuDNN kernels
the first word of theirs) and printed per step, the two models side by side:

    python3 scripts/profile_train_step.py --trace /tmp/step_trace [size flags]

`--model jtile|jnp` runs one step between cuProfilerStart and cuProfilerStop for Nsight
Compute instead (`ncu --profile-from-start off --metrics gpu__time_duration.sum --csv`), and
`--summarise a.csv b.csv` groups such CSVs.
"""

from __future__ import annotations

import collections
import csv
import ctypes
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


TRACED_STEPS = 3


def _profiler(on: bool) -> None:
    libcuda = ctypes.CDLL("libcuda.so.1")
    status = (libcuda.cuProfilerStart if on else libcuda.cuProfilerStop)()
    if status:
        raise SystemExit(f"cuProfiler{'Start' if on else 'Stop'} returned CUDA error {status}")


def _run(model: str, argv):
    """A thunk that enqueues one step of `model`, each taking the state the last returned
    (the step donates it); compiled and run twice before it is returned."""
    import jax
    from examples import train_gpt
    from examples.gpt import corpus as corpus_lib
    from examples.gpt import model as gpt
    from examples.gpt import step as step_lib

    args = train_gpt.parse_args(argv)
    corpus = corpus_lib.load_corpus(min(args.corpus_bytes, 4 << 20))
    cfg = train_gpt.config_from_args(args, corpus.vocab_size)
    tokens, targets = next(corpus_lib.batches(corpus, steps=1, batch=args.batch, seq=args.seq,
                                              seed=args.seed))
    params = gpt.init_params(cfg, jax.random.key(args.seed))
    optimizer = step_lib.make_optimizer(args.lr, args.steps, args.warmup, args.weight_decay)
    ops = gpt.jtile_ops(cfg.eps) if model == "jtile" else gpt.jnp_ops(cfg.eps)
    run = train_gpt.make_run(model, ops, cfg, params, optimizer, None)

    def enqueue():
        run.params, run.opt_state, loss = run.step(run.params, run.opt_state, tokens, targets)
        return loss

    for _ in range(2):
        jax.block_until_ready(enqueue())
    return enqueue


def profile(model: str, argv) -> None:
    import jax

    enqueue = _run(model, argv)
    _profiler(True)
    jax.block_until_ready(enqueue())
    _profiler(False)


def _summarise_trace(trace_dir: str) -> tuple:
    """From the perfetto trace under `trace_dir`: (microseconds per kernel group on the GPU
    streams, idle microseconds before each group, kernel launches, microseconds from the first
    kernel to the last, microseconds per host event name). Kernels come from the streams'
    timelines, not the XLA-op lines, which repeat the same time."""
    import glob
    import gzip
    import json

    path = sorted(glob.glob(os.path.join(trace_dir, "**", "perfetto_trace.json.gz"),
                            recursive=True))[-1]
    events = json.load(gzip.open(path))
    events = events["traceEvents"] if isinstance(events, dict) else events
    processes, threads = {}, {}
    for e in events:
        if e.get("ph") == "M" and e.get("name") == "process_name":
            processes[e["pid"]] = e["args"]["name"]
        elif e.get("ph") == "M" and e.get("name") == "thread_name":
            threads[(e["pid"], e["tid"])] = e["args"]["name"]
    kernels = sorted((e for e in events if e.get("ph") == "X"
                      and "GPU" in processes.get(e["pid"], "")
                      and "stream" in threads.get((e["pid"], e["tid"]), "").lower()),
                     key=lambda e: e["ts"])
    if not kernels:
        names = sorted(set(threads.values()))[:30]
        raise SystemExit(f"no GPU stream events in {path}; processes {processes}, threads {names}")
    totals = collections.Counter()
    for e in kernels:
        totals[_group(e["name"])] += e["dur"]
    # Idle time between consecutive kernels, by the kernel that waited (what follows a gap
    # was not ready: its launch, or the host work before it, was late).
    gaps = collections.Counter()
    for before, after in zip(kernels, kernels[1:]):
        idle = after["ts"] - (before["ts"] + before["dur"])
        if idle > 0:
            gaps[_group(after["name"])] += idle
    span = kernels[-1]["ts"] + kernels[-1]["dur"] - kernels[0]["ts"]
    # Host work (XLA's thunks, jtile's FFI handler) by name, for a step the host cannot feed.
    host = collections.Counter()
    for e in events:
        if e.get("ph") == "X" and "host" in processes.get(e["pid"], "").lower() \
                and not e["name"].startswith("$"):
            host[e["name"][:70]] += e["dur"]
    return totals, gaps, len(kernels), span, host


def trace(trace_dir: str, argv) -> None:
    import jax

    per_model = {}
    for model in ("jtile", "jnp"):
        enqueue = _run(model, argv)
        model_dir = os.path.join(trace_dir, model)
        with jax.profiler.trace(model_dir, create_perfetto_trace=True):
            # Enqueued back to back, as a training loop runs them (the host goes ahead).
            for _ in range(TRACED_STEPS - 1):
                enqueue()
            jax.block_until_ready(enqueue())
        per_model[model] = _summarise_trace(model_dir)
    for model, (totals, gaps, launches, span, host) in per_model.items():
        print(f"\n{model}: {span / TRACED_STEPS / 1e3:.3f} ms per step from the first kernel "
              f"to the last: {sum(totals.values()) / TRACED_STEPS / 1e3:.3f} ms of kernels and "
              f"{sum(gaps.values()) / TRACED_STEPS / 1e3:.3f} ms idle between them, "
              f"{launches // TRACED_STEPS} launches")
        for group, us in totals.most_common(45):
            print(f"  {us / TRACED_STEPS / 1e3:8.3f} ms  {group}")
        print("  idle before:")
        for group, us in gaps.most_common(12):
            print(f"  {us / TRACED_STEPS / 1e3:8.3f} ms  {group}")
        print("  host (summed over threads; nested events count twice):")
        for name, us in host.most_common(25):
            print(f"  {us / TRACED_STEPS / 1e3:8.3f} ms  {name}")


def _group(name: str) -> str:
    name = re.sub(r"^void |\(.*$|<.*$", "", name)
    name = re.sub(r"_\d+$", "", name)  # XLA numbers its fusions
    return name[:60]


def summarise(paths) -> None:
    """Prints, per CSV, the kernels grouped by name with their total time."""
    for path in paths:
        with open(path) as f:
            rows = [line for line in f if line.startswith('"')]
        if not rows:
            print(f"\n{path}: no kernel rows")
            continue
        totals, counts = collections.Counter(), collections.Counter()
        for rec in csv.DictReader(rows):
            if rec.get("Metric Name") != "gpu__time_duration.sum":
                continue
            value = float(rec["Metric Value"].replace(",", ""))
            scale = {"nsecond": 1e-3, "usecond": 1.0, "msecond": 1e3}.get(rec["Metric Unit"], 1.0)
            group = _group(rec["Kernel Name"])
            totals[group] += value * scale
            counts[group] += 1
        total = sum(totals.values())
        print(f"\n{path}: {total / 1e3:.3f} ms of kernels, {sum(counts.values())} launches")
        for group, us in totals.most_common(40):
            print(f"  {us / 1e3:8.3f} ms  {counts[group]:4d}x  {group}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--trace"] and len(sys.argv) > 2:
        trace(sys.argv[2], sys.argv[3:])
    elif sys.argv[1:2] == ["--summarise"]:
        summarise(sys.argv[2:])
    elif sys.argv[1:2] == ["--model"] and len(sys.argv) > 2:
        profile(sys.argv[2], sys.argv[3:])
    else:
        raise SystemExit(__doc__)
