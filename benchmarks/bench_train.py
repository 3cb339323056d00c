"""The GPT training step of examples/train_gpt.py on jtile ops beside jax.numpy + cuDNN.

One step (forward, backward, AdamW update) of the example's model, timed for each jtile
configuration (the example's default: projections by XLA's dot with packed q | k | v and
gate | up GEMMs read by examples/gpt/qkv_rotary.py and packed_swiglu.py; the same by
`jtile.ops.matmul`; separate projections read by jtile.ops.rotary and swiglu) and for
the jax.numpy model with `jax.nn.dot_product_attention(implementation="cudnn")`, from the same
parameters on the same batch, in one run. Prints benchmarks/bench.py's table: step time,
model TFLOP/s (matmuls and causal attention, 3x the forward), tokens/s, the speed relative to
the jnp model (>1: jtile faster) and the difference between the two models' losses.

    python benchmarks/bench_train.py                   # the example's default (H200) sizes
    python benchmarks/bench_train.py --data-parallel   # over every local GPU
    python benchmarks/bench_train.py --tiny            # any size flag of the example works
    python benchmarks/bench_train.py --ablate          # also: jtile with one op from jnp

`--ablate` adds, for each op of the model, the jtile model with that one op taken from the
jax.numpy model: in the whole step XLA fuses elementwise work into its neighbours, so an
op's time alone does not say what it costs in the step. rotary and swiglu are taken out of
the separate-projections model (the packed one does not call them).
"""

from __future__ import annotations

import dataclasses
import os
import sys

import jax

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks.bench import _rate, bench  # noqa: E402
from examples import train_gpt  # noqa: E402
from examples.gpt import corpus as corpus_lib  # noqa: E402
from examples.gpt import model as gpt  # noqa: E402
from examples.gpt import step as step_lib  # noqa: E402

ROWS = []


def _timed(run: train_gpt.Run, tokens, targets, iters: int, reps: int):
    """(median ms per step, loss of the first step), or None when the step fails. Each step
    takes the state the last one returned (the step donates it), from a copy of the run's."""
    tokens = step_lib.place_batch(tokens, run.mesh)
    targets = step_lib.place_batch(targets, run.mesh)
    state = {"params": step_lib.replicate(run.params, run.mesh),
             "opt_state": step_lib.replicate(run.opt_state, run.mesh)}

    def one_step():
        state["params"], state["opt_state"], loss = run.step(
            state["params"], state["opt_state"], tokens, targets)
        return loss

    try:
        first_loss = float(one_step())
        ms, _ = bench(one_step, iters=iters, reps=reps)
    except Exception as e:  # a failing model is reported, the others still run
        print(f"  {run.name} FAILED: {type(e).__name__}: {str(e)[:300]}", flush=True)
        return None
    return ms, first_loss


ABLATED_OPS = ("rms_norm", "rotary", "attention", "swiglu", "loss")
# Ops the packed projections replace: ablated from the separate-projections model.
SEPARATE_ONLY_OPS = ("rotary", "swiglu")


def main(argv=None) -> list[str]:
    argv = list(sys.argv[1:] if argv is None else argv)
    ablate = "--ablate" in argv
    if ablate:
        argv.remove("--ablate")
    args = train_gpt.parse_args(argv)
    corpus = corpus_lib.load_corpus(min(args.corpus_bytes, 4 << 20))
    cfg = train_gpt.config_from_args(args, corpus.vocab_size)
    mesh = train_gpt.mesh_from_args(args)
    tokens, targets = next(corpus_lib.batches(corpus, steps=1, batch=args.batch, seq=args.seq,
                                              seed=args.seed))
    params = gpt.init_params(cfg, jax.random.key(args.seed))
    optimizer = step_lib.make_optimizer(args.lr, args.steps, args.warmup, args.weight_decay)
    iters, reps = (3, 3) if args.tiny else (10, 5)

    jnp_ops = gpt.jnp_ops(cfg.eps)
    baseline = train_gpt.make_run("jnp", jnp_ops, cfg, params, optimizer, mesh)
    separate = "xla matmul, separate projections"
    jtile_configs = {"xla matmul": gpt.jtile_ops(cfg.eps, use_matmul=False),
                     "jtile matmul": gpt.jtile_ops(cfg.eps, use_matmul=True),
                     separate: gpt.jtile_ops(cfg.eps, packed_projections=False)}
    if ablate:
        for op in ABLATED_OPS:
            base = separate if op in SEPARATE_ONLY_OPS else "xla matmul"
            jtile_configs[f"{base}, jnp {op}"] = dataclasses.replace(
                jtile_configs[base], **{op: getattr(jnp_ops, op)})

    devices = 1 if mesh is None else mesh.devices.size
    workload = (f"train step d{cfg.d_model} L{cfg.n_layers} h{cfg.n_heads}/{cfg.n_kv_heads}x"
                f"{cfg.head_dim} b{args.batch} s{cfg.seq}" + (f" dp{devices}" if mesh else ""))
    tokens_per_step = args.batch * cfg.seq
    flops = cfg.train_flops_per_token() * tokens_per_step
    print(f"{workload}: {cfg.parameter_count() / 1e6:.1f}M parameters, {flops / 1e12:.2f} "
          f"TFLOP per step", flush=True)

    base = _timed(baseline, tokens, targets, iters, reps)
    if base is not None:
        print(f"  {baseline.name} {base[0]:8.3f} ms {_rate(base[0], flops, None)}", flush=True)
    for label, ops in jtile_configs.items():
        run = train_gpt.make_run("jtile", ops, cfg, params, optimizer, mesh)
        got = _timed(run, tokens, targets, iters, reps)
        if got is None:
            ROWS.append(f"{workload:<46} FAILED  [{label}]")
        elif base is None:
            ROWS.append(f"{workload:<46} jtile {got[0]:8.3f} ms {_rate(got[0], flops, None)}  "
                        f"{tokens_per_step / got[0] * 1e3:10,.0f} tok/s  (jnp model failed)  "
                        f"[{label}]")
        else:
            ROWS.append(f"{workload:<46} jtile {got[0]:8.3f} ms {_rate(got[0], flops, None)}  "
                        f"{tokens_per_step / got[0] * 1e3:10,.0f} tok/s  vs {baseline.name} "
                        f"x{base[0] / got[0]:5.2f} ({base[0]:.3f} ms, "
                        f"{tokens_per_step / base[0] * 1e3:,.0f} tok/s)  "
                        f"loss diff {abs(got[1] - base[1]):.1e}  [{label}]")
        print(ROWS[-1], flush=True)
        del run
    print("\n" + "\n".join(ROWS))
    return ROWS


if __name__ == "__main__":
    main()
