"""Level 8: a mixture-of-experts feed-forward block on `jtile.ops.ragged_dot`, trained with optax.

The block routes each token to its top-k experts (router logits, softmax, top-k), dispatches
by sorting the (token, expert) pairs by expert so that each expert's tokens are consecutive
rows, runs every expert's SwiGLU feed-forward as three grouped GEMMs (`ragged_dot` with the
per-expert token counts as runtime group sizes), and combines the expert outputs weighted by
the router probabilities. The same block on `jax.lax.ragged_dot`, from the same initial
weights and data, is trained beside it; the losses of both are printed per step and must
match within bfloat16 noise.

Run `python examples/moe.py` (a GPU: compiled; a CPU: interpret mode at a tiny size), or
`--interpret` / `--steps N` / `--tokens T` to choose.
"""

from __future__ import annotations

import argparse
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jtile.ops as ops

try:
    from examples._common import INTERPRET
except ImportError:
    from _common import INTERPRET


def init(key, hidden: int, ffn: int, experts: int) -> dict:
    """Router (hidden, experts) in float32; expert weights (experts, ...) in bfloat16."""
    kr, kg, ku, kd = jax.random.split(key, 4)

    def weight(k, shape, fan_in):
        return (jax.random.normal(k, shape, jnp.float32) / np.sqrt(fan_in)).astype(jnp.bfloat16)

    return {"router": jax.random.normal(kr, (hidden, experts), jnp.float32) / np.sqrt(hidden),
            "gate": weight(kg, (experts, hidden, ffn), hidden),
            "up": weight(ku, (experts, hidden, ffn), hidden),
            "down": weight(kd, (experts, ffn, hidden), ffn)}


def moe_block(params, x, *, top_k: int, grouped_gemm):
    """x (tokens, hidden) bfloat16 -> (tokens, hidden) bfloat16.

    `grouped_gemm(lhs, rhs, group_sizes)` is `jtile.ops.ragged_dot` or `jax.lax.ragged_dot`.
    """
    tokens, _ = x.shape
    experts = params["router"].shape[1]
    logits = x.astype(jnp.float32) @ params["router"]
    probs = jax.nn.softmax(logits, axis=-1)
    weights, chosen = jax.lax.top_k(probs, top_k)              # (tokens, top_k)
    weights = weights / jnp.sum(weights, axis=-1, keepdims=True)
    # Dispatch: sort the tokens * top_k assignments by expert, so each expert's rows are
    # consecutive; the per-expert counts are the ragged GEMMs' runtime group sizes.
    flat_expert = chosen.reshape(-1)
    order = jnp.argsort(flat_expert, stable=True)
    token_of = order // top_k
    rows = x[token_of]
    group_sizes = jnp.bincount(flat_expert, length=experts).astype(jnp.int32)
    f32 = functools.partial(grouped_gemm, group_sizes=group_sizes,
                            preferred_element_type=jnp.float32)
    gate = f32(rows, params["gate"])
    up = f32(rows, params["up"])
    hidden = (jax.nn.silu(gate) * up).astype(jnp.bfloat16)
    out = f32(hidden, params["down"])
    # Combine: scatter each assignment's output back to its token, weighted by its router
    # probability.
    weight_of = weights.reshape(-1)[order]
    combined = jnp.zeros((tokens, out.shape[1]), jnp.float32).at[token_of].add(
        out * weight_of[:, None])
    return combined.astype(x.dtype)


def loss_fn(params, x, target, *, top_k, grouped_gemm):
    y = moe_block(params, x, top_k=top_k, grouped_gemm=grouped_gemm)
    return jnp.mean((y.astype(jnp.float32) - target) ** 2)


def train(grouped_gemm, params, batches, *, top_k, learning_rate):
    optimizer = optax.adam(learning_rate)
    state = optimizer.init(params)

    @jax.jit
    def step(params, state, x, target):
        loss, grads = jax.value_and_grad(functools.partial(
            loss_fn, top_k=top_k, grouped_gemm=grouped_gemm))(params, x, target)
        updates, state = optimizer.update(grads, state, params)
        return optax.apply_updates(params, updates), state, loss

    losses = []
    for x, target in batches:
        params, state, loss = step(params, state, x, target)
        losses.append(float(loss))
    return losses


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interpret", action="store_true", default=INTERPRET,
                        help="run the jtile kernels in interpret mode (default on a CPU)")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=None)
    args = parser.parse_args(argv)
    if args.interpret:
        tokens, hidden, ffn, experts, top_k = args.tokens or 64, 32, 64, 4, 2
    else:
        tokens, hidden, ffn, experts, top_k = args.tokens or 8192, 1024, 2048, 8, 2
    key = jax.random.key(0)
    k_init, k_data, k_teacher = jax.random.split(key, 3)
    params = init(k_init, hidden, ffn, experts)
    teacher = jax.random.normal(k_teacher, (hidden, hidden), jnp.float32) / np.sqrt(hidden)
    # One batch, fitted step after step: its loss must fall.
    x = jax.random.normal(k_data, (tokens, hidden), jnp.float32)
    batches = [(x.astype(jnp.bfloat16), jnp.tanh(x @ teacher))] * args.steps

    jtile_gemm = functools.partial(ops.ragged_dot, interpret=args.interpret)
    jtile_losses = train(jtile_gemm, params, batches, top_k=top_k, learning_rate=1e-2)
    jax_losses = train(jax.lax.ragged_dot, params, batches, top_k=top_k, learning_rate=1e-2)
    print(f"MoE block: {tokens} tokens, hidden {hidden}, ffn {ffn}, {experts} experts, "
          f"top-{top_k}, {'interpret mode' if args.interpret else 'compiled'}")
    print(f"{'step':>4}  {'jtile ragged_dot':>18}  {'jax.lax.ragged_dot':>18}")
    for i, (a, b) in enumerate(zip(jtile_losses, jax_losses)):
        print(f"{i:>4}  {a:>18.6f}  {b:>18.6f}")
    # Both runs see bf16-rounded activations and weights; the summation orders differ.
    np.testing.assert_allclose(jtile_losses, jax_losses, rtol=2e-2)
    assert jtile_losses[-1] < jtile_losses[0], "training did not lower the loss"
    return jtile_losses, jax_losses


if __name__ == "__main__":
    main()
