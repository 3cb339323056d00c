"""Per-kernel GPU time of one training step of examples/train_gpt.py, jtile model beside the
jax.numpy + cuDNN model, so that a gap in the step time can be traced to the kernels behind it.

The model's step (`--model jtile` or `jnp`; the example's size flags work) is compiled and
run twice, then once more between cuProfilerStart and cuProfilerStop; Nsight Compute records
only that window:

    ncu --profile-from-start off --metrics gpu__time_duration.sum --csv \\
        python3 scripts/profile_train_step.py --model jtile > jtile.csv
    python3 scripts/profile_train_step.py --summarise jtile.csv jnp.csv

The summary groups kernels by name (the jtile kernels carry their op's name; XLA's fusions
and cuBLAS/cuDNN kernels are grouped by the first word of theirs) and prints each model's
total beside the groups that make it up.
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


def _profiler(on: bool) -> None:
    libcuda = ctypes.CDLL("libcuda.so.1")
    status = (libcuda.cuProfilerStart if on else libcuda.cuProfilerStop)()
    if status:
        raise SystemExit(f"cuProfiler{'Start' if on else 'Stop'} returned CUDA error {status}")


def profile(model: str, argv) -> None:
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
    for _ in range(2):
        jax.block_until_ready(run.step(run.params, run.opt_state, tokens, targets))
    _profiler(True)
    jax.block_until_ready(run.step(run.params, run.opt_state, tokens, targets))
    _profiler(False)


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
    if sys.argv[1:2] == ["--summarise"]:
        summarise(sys.argv[2:])
    elif sys.argv[1:2] == ["--model"] and len(sys.argv) > 2:
        profile(sys.argv[2], sys.argv[3:])
    else:
        raise SystemExit(__doc__)
