"""Trains a GPT-style decoder on jtile ops beside the same model in jax.numpy + cuDNN.

Both models start from the same float32 parameters and see the same batches of a
character-level corpus of Python's standard-library sources (examples/gpt/corpus.py). The
jtile model runs `jtile.ops.rms_norm` (with its fused residual add), `rotary`, `attention`
(causal, grouped-query), `swiglu` and `linear_cross_entropy` (and `matmul` for the
projections with --jtile-matmul; by default they go to XLA's dot, which is cuBLAS already);
the jnp model runs the same definitions in jax.numpy with `jax.nn.dot_product_attention`
(cuDNN on a GPU). Activations are bfloat16, master weights float32, the optimiser optax's
AdamW under warm-up and cosine decay.

Every logged step prints both losses, step times and tokens/s; the end prints a summary (mean
step time after warm-up, tokens/s, the speed ratio, the largest loss difference) and, with
--plot, writes both loss curves to a PNG.

    python examples/train_gpt.py --plot loss.png                  # one H200, default sizes
    python examples/train_gpt.py --data-parallel --plot dp.png    # every local GPU
    JTILE_INTERPRET=1 python examples/train_gpt.py --tiny         # a CPU, interpret mode

--data-parallel runs the step under `jax.shard_map` over all local devices (batch sharded,
parameters replicated) and, unless --no-single-device-check, the jtile model on one device
beside it, to show that the data-parallel losses match the one-device ones.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import statistics
import sys
import time
from typing import Callable, Optional

import jax
import numpy as np

if __package__ in (None, ""):  # run as a script: make `examples` importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from examples.gpt import corpus as corpus_lib  # noqa: E402
from examples.gpt import model as gpt  # noqa: E402
from examples.gpt import step as step_lib  # noqa: E402

# Sizes for one H200 (76M parameters) and a preset small enough for interpret mode.
PRESETS = {
    "h200": dict(d_model=768, layers=12, heads=12, kv_heads=4, head_dim=64, seq=1024,
                 batch=16, steps=300, lr=1e-3, warmup=30, log_every=10,
                 corpus_bytes=16 << 20),
    "tiny": dict(d_model=64, layers=2, heads=2, kv_heads=1, head_dim=64, seq=64, batch=2,
                 steps=4, lr=1e-2, warmup=1, log_every=1, corpus_bytes=256 << 10),
}

MODELS = ("jtile", "jnp")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true",
                        help="d_model 64, 2 layers, seq 64, batch 2, 4 steps (interpret mode "
                             "on a CPU in seconds)")
    size = parser.add_argument_group("sizes (default: the H200 preset, or --tiny's)")
    for flag, kind in (("d-model", int), ("layers", int), ("heads", int), ("kv-heads", int),
                       ("head-dim", int), ("mlp-hidden", int), ("seq", int), ("batch", int),
                       ("steps", int), ("lr", float), ("warmup", int), ("log-every", int),
                       ("corpus-bytes", int)):
        size.add_argument(f"--{flag}", type=kind, default=None)
    parser.add_argument("--weight-decay", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0,
                        help="seeds the parameters and the batch windows")
    parser.add_argument("--models", default="jtile,jnp",
                        help="comma-separated models to train, of: " + ", ".join(MODELS))
    parser.add_argument("--jtile-matmul", action="store_true",
                        help="the jtile model's projections by jtile.ops.matmul instead of "
                             "XLA's dot (cuBLAS)")
    parser.add_argument("--separate-projections", action="store_true",
                        help="the jtile model's q, k, v, gate and up projections as separate "
                             "GEMMs read by jtile.ops.rotary and jtile.ops.swiglu, instead of "
                             "one q | k | v and one gate | up GEMM read by packed jtile kernels "
                             "(examples/gpt/qkv_rotary.py, packed_swiglu.py)")
    parser.add_argument("--data-parallel", action="store_true",
                        help="shard the batch over all local devices with jax.shard_map")
    parser.add_argument("--no-single-device-check", action="store_true",
                        help="with --data-parallel, skip the one-device jtile run")
    parser.add_argument("--timing-skip", type=int, default=None,
                        help="steps left out of the mean step time (default min(5, steps/2))")
    parser.add_argument("--plot", default=None, help="write the loss curves to this PNG")
    parser.add_argument("--losses-json", default=None,
                        help="write every run's losses and step times to this JSON file")
    args = parser.parse_args(argv)
    for key, value in PRESETS["tiny" if args.tiny else "h200"].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.mlp_hidden is None:
        args.mlp_hidden = gpt.default_mlp_hidden(args.d_model)
    if args.timing_skip is None:
        args.timing_skip = min(5, args.steps // 2)
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in args.models if m not in MODELS]
    if unknown or not args.models:
        parser.error(f"--models {','.join(args.models)}: expected some of {', '.join(MODELS)}")
    if args.steps < 1:
        parser.error("--steps must be at least 1")
    return args


@dataclasses.dataclass
class Run:
    """One model trained on one device layout, with its state and its record."""

    name: str
    model: str
    devices: int
    step: Callable
    mesh: Optional[object]
    params: object
    opt_state: object
    losses: list = dataclasses.field(default_factory=list)
    step_ms: list = dataclasses.field(default_factory=list)

    def train_step(self, tokens, targets) -> None:
        tokens = step_lib.place_batch(tokens, self.mesh)
        targets = step_lib.place_batch(targets, self.mesh)
        start = time.perf_counter()
        self.params, self.opt_state, loss = self.step(self.params, self.opt_state,
                                                      tokens, targets)
        jax.block_until_ready((self.params, self.opt_state, loss))
        self.step_ms.append((time.perf_counter() - start) * 1e3)
        self.losses.append(float(loss))


def config_from_args(args, vocab_size: int) -> gpt.GPTConfig:
    cfg = gpt.GPTConfig(vocab_size=vocab_size, d_model=args.d_model, n_layers=args.layers,
                        n_heads=args.heads, n_kv_heads=args.kv_heads, head_dim=args.head_dim,
                        mlp_hidden=args.mlp_hidden, seq=args.seq)
    cfg.validate()
    return cfg


def mesh_from_args(args):
    """The data-parallel mesh over every local device, or None without --data-parallel."""
    if not args.data_parallel:
        return None
    mesh = step_lib.data_mesh()
    n = mesh.devices.size
    if args.batch % n:
        raise SystemExit(f"--batch {args.batch} does not split evenly over the {n} local "
                         f"devices of --data-parallel; use a multiple of {n}")
    return mesh


def make_run(model: str, ops: gpt.Ops, cfg: gpt.GPTConfig, params, optimizer, mesh,
             label: str = "") -> Run:
    """A run of `ops`' model from (a copy of) `params`, on `mesh` or on one device.

    Args:
        model: "jtile" or "jnp", the family the run belongs to (for the comparisons).
        label: appended to the ops' name; "[dpN]" on an N-device mesh by default.
    """
    devices = 1 if mesh is None else mesh.devices.size
    if mesh is not None and not label:
        label = f"[dp{devices}]"
    loss = functools.partial(gpt.loss_fn, ops, cfg)
    params = step_lib.replicate(params, mesh)
    return Run(ops.name + label, model, devices, step_lib.make_step(loss, optimizer, mesh),
               mesh, params, step_lib.replicate(optimizer.init(params), mesh))


def build_runs(args, cfg: gpt.GPTConfig, params) -> list[Run]:
    """The runs to train: each model of --models (data-parallel with --data-parallel), and
    with --data-parallel the one-device jtile run to check it against."""
    optimizer = step_lib.make_optimizer(args.lr, args.steps, args.warmup, args.weight_decay)
    ops_of = {"jtile": lambda: gpt.jtile_ops(cfg.eps, use_matmul=args.jtile_matmul,
                                             packed_projections=not args.separate_projections),
              "jnp": lambda: gpt.jnp_ops(cfg.eps)}
    mesh = mesh_from_args(args)
    runs = [make_run(model, ops_of[model](), cfg, params, optimizer, mesh)
            for model in args.models]
    if mesh is not None and not args.no_single_device_check and "jtile" in args.models:
        runs.append(make_run("jtile", ops_of["jtile"](), cfg, params, optimizer, None,
                             "[1 device]"))
    return runs


def train(args, corpus: corpus_lib.Corpus, runs: list[Run]) -> None:
    """Every run takes each batch in turn; logged steps print every run's loss and speed."""
    tokens_per_step = args.batch * args.seq
    names = "  ".join(f"{r.name:>16}" for r in runs)
    print(f"{'step':>6}  loss {names}   |  step ms / tokens per s", flush=True)
    for i, (tokens, targets) in enumerate(corpus_lib.batches(
            corpus, steps=args.steps, batch=args.batch, seq=args.seq, seed=args.seed)):
        for run in runs:
            run.train_step(tokens, targets)
        if i % args.log_every == 0 or i == args.steps - 1:
            losses = "  ".join(f"{r.losses[-1]:16.4f}" for r in runs)
            speeds = "  ".join(f"{r.name} {r.step_ms[-1]:.1f} ms "
                               f"{tokens_per_step / r.step_ms[-1] * 1e3:,.0f}/s" for r in runs)
            print(f"{i:6d}       {losses}   |  {speeds}", flush=True)


def comparisons(runs: list[Run]) -> list[tuple[Run, Run]]:
    """Pairs worth comparing: each jtile run against the jnp run on the same devices, and a
    data-parallel jtile run against the one-device jtile run."""
    pairs = []
    for a in runs:
        if a.model != "jtile":
            continue
        for b in runs:
            same_layout = b.model == "jnp" and b.devices == a.devices
            dp_vs_one = b.model == "jtile" and a.devices > 1 and b.devices == 1
            if same_layout or dp_vs_one:
                pairs.append((a, b))
    return pairs


def mean_step_ms(run: Run, skip: int) -> float:
    timed = run.step_ms[skip:] or run.step_ms[-1:]
    return statistics.fmean(timed)


def summarise(args, runs: list[Run]) -> dict:
    """Prints the summary and returns it (with every loss and step time) as a dict."""
    tokens_per_step = args.batch * args.seq
    skip = min(args.timing_skip, args.steps - 1)
    print(f"\nsummary: {args.steps} steps of {args.batch} x {args.seq} tokens; step times "
          f"averaged over steps {skip}..{args.steps - 1}")
    record = {"config": dict(vars(args)), "runs": {}, "comparisons": []}
    for run in runs:
        ms = mean_step_ms(run, skip)
        print(f"  {run.name:<22} mean step {ms:9.2f} ms  {tokens_per_step / ms * 1e3:12,.0f} "
              f"tokens/s  first loss {run.losses[0]:.4f}  last loss {run.losses[-1]:.4f}")
        record["runs"][run.name] = {"model": run.model, "devices": run.devices,
                                    "loss": run.losses, "step_ms": run.step_ms,
                                    "mean_step_ms": ms}
    for a, b in comparisons(runs):
        diff = float(np.max(np.abs(np.subtract(a.losses, b.losses))))
        speed = mean_step_ms(b, skip) / mean_step_ms(a, skip)
        print(f"  {a.name} against {b.name}: speed x{speed:.2f} (>1: {a.name} faster), "
              f"max |loss difference| {diff:.2e}")
        record["comparisons"].append({"a": a.name, "b": b.name, "speed_a_over_b": speed,
                                      "max_abs_loss_diff": diff})
    return record


def plot_losses(path: str, runs: list[Run], title: str) -> None:
    """Loss curves of every run, and below them each run's difference from the first."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6.5), sharex=True,
                                      gridspec_kw={"height_ratios": [3, 1]})
    for run in runs:
        top.plot(np.arange(len(run.losses)), run.losses, label=run.name, linewidth=1.2)
    top.set_ylabel("training loss (nats / character)")
    top.set_title(title, fontsize=10)
    top.legend()
    top.grid(alpha=0.3)
    first = runs[0]
    for run in runs[1:]:
        bottom.plot(np.subtract(run.losses, first.losses), label=f"{run.name} - {first.name}",
                    linewidth=1.0)
    bottom.axhline(0.0, color="gray", linewidth=0.8)
    bottom.set_xlabel("step")
    bottom.set_ylabel("loss difference")
    if len(runs) > 1:
        bottom.legend(fontsize=8)
    bottom.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> dict:
    args = parse_args(argv)
    corpus = corpus_lib.load_corpus(args.corpus_bytes)
    cfg = config_from_args(args, corpus.vocab_size)
    devices = jax.local_devices()
    print(f"corpus: {len(corpus.tokens):,} characters from {corpus.files} standard-library "
          f"files, vocabulary {len(corpus.byte_of_id)} (padded to {cfg.vocab_size})")
    print(f"model: {cfg.parameter_count() / 1e6:.2f}M parameters, d_model {cfg.d_model}, "
          f"{cfg.n_layers} layers, {cfg.n_heads} q / {cfg.n_kv_heads} kv heads of "
          f"{cfg.head_dim}, MLP {cfg.mlp_hidden}, seq {cfg.seq}, batch {args.batch}; "
          f"{len(devices)} {devices[0].platform} device(s)"
          f"{', data-parallel' if args.data_parallel else ''}")
    params = gpt.init_params(cfg, jax.random.key(args.seed))
    runs = build_runs(args, cfg, params)
    del params
    train(args, corpus, runs)
    record = summarise(args, runs)
    record["vocab_size"] = cfg.vocab_size
    if args.plot:
        title = (f"GPT {cfg.parameter_count() / 1e6:.1f}M on Python stdlib characters, "
                 f"batch {args.batch} x seq {args.seq}")
        plot_losses(args.plot, runs, title)
        print(f"loss curves written to {args.plot}")
    if args.losses_json:
        with open(args.losses_json, "w") as f:
            json.dump(record, f, indent=1)
    return record


if __name__ == "__main__":
    main()
