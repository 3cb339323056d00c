"""A GPT-style decoder, written once over a table of ops that is filled twice.

The decoder: token embedding; per block, RMS norm, grouped-query causal attention with rotary
position embedding on q and k, residual add, RMS norm, SwiGLU MLP, residual add; a final RMS
norm and a linear cross-entropy against the next token. Weights are float32 masters, cast to
bfloat16 for the forward pass; activations are bfloat16, norms, rotary, SwiGLU and the loss
compute in float32 inside.

`jtile_ops()` fills the table with `jtile.ops` (rms_norm with its fused residual add, rotary,
attention, swiglu, linear_cross_entropy, and optionally matmul); `jnp_ops()` with the same
definitions in `jax.numpy` and `jax.nn.dot_product_attention` (cuDNN on a GPU). Both models
therefore share their parameters, their architecture and the order of every rounding to
bfloat16; they differ only in the kernels.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Callable, Optional

import jax
import jax.numpy as jnp

from jtile import ops as jops

ACT = jnp.bfloat16
F32 = jnp.float32


@dataclasses.dataclass(frozen=True)
class GPTConfig:
    """Model sizes. `head_dim` is 64, 128 or 256 (what `jtile.ops.attention` takes)."""

    vocab_size: int
    d_model: int = 768
    n_layers: int = 12
    n_heads: int = 12
    n_kv_heads: int = 4
    head_dim: int = 64
    mlp_hidden: int = 2048
    seq: int = 1024
    eps: float = 1e-6
    rope_base: float = 10000.0

    def validate(self) -> None:
        """Raises SystemExit naming the first size that does not fit the model."""
        if self.n_heads % self.n_kv_heads:
            raise SystemExit(f"--heads {self.n_heads} is not a multiple of --kv-heads "
                             f"{self.n_kv_heads} (grouped-query attention shares each k/v head "
                             f"among a whole number of q heads)")
        if self.head_dim % 2:
            raise SystemExit(f"--head-dim {self.head_dim} is odd; rotary embedding rotates "
                             f"pairs of elements")

    def parameter_count(self) -> int:
        shapes = jax.eval_shape(functools.partial(init_params, self), jax.random.key(0))
        return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(shapes))

    def train_flops_per_token(self) -> float:
        """Matmul and attention FLOPs of one training step per token (3x the forward)."""
        d, hd, hq, hkv = self.d_model, self.head_dim, self.n_heads, self.n_kv_heads
        dense = d * hd * (2 * hq + 2 * hkv) + 3 * d * self.mlp_hidden
        # q k^T and p v over the causal half of the keys.
        attention = 2 * hq * hd * self.seq
        forward = 2 * (self.n_layers * dense + d * self.vocab_size) + self.n_layers * attention
        return 3.0 * forward


def default_mlp_hidden(d_model: int) -> int:
    """8/3 d_model (SwiGLU's usual width at the parameters of a 4x GELU MLP), rounded to 64."""
    return -(-(8 * d_model) // (3 * 64)) * 64


def init_params(cfg: GPTConfig, key) -> dict:
    """float32 master weights: normal(0, 0.02), output projections scaled by 1/sqrt(2 layers)
    (GPT-2's residual scaling), norm weights one."""
    d, hd = cfg.d_model, cfg.head_dim
    keys = iter(jax.random.split(key, 2 + 7 * cfg.n_layers))
    out_std = 0.02 / math.sqrt(2 * cfg.n_layers)

    def normal(shape, std=0.02):
        return std * jax.random.normal(next(keys), shape, F32)

    layers = []
    for _ in range(cfg.n_layers):
        layers.append({
            "attn_norm": jnp.ones((d,), F32),
            "wq": normal((d, cfg.n_heads * hd)),
            "wk": normal((d, cfg.n_kv_heads * hd)),
            "wv": normal((d, cfg.n_kv_heads * hd)),
            "wo": normal((cfg.n_heads * hd, d), out_std),
            "mlp_norm": jnp.ones((d,), F32),
            "w_gate": normal((d, cfg.mlp_hidden)),
            "w_up": normal((d, cfg.mlp_hidden)),
            "w_down": normal((cfg.mlp_hidden, d), out_std),
        })
    return {"embed": normal((cfg.vocab_size, d)), "layers": layers,
            "final_norm": jnp.ones((d,), F32), "unembed": normal((d, cfg.vocab_size))}


def rotary_tables(cfg: GPTConfig):
    """cos and sin, (seq, head_dim // 2) float32, of the angles pos * base^(-2i / head_dim)."""
    half = cfg.head_dim // 2
    inv_freq = cfg.rope_base ** (-jnp.arange(half, dtype=F32) / half)
    angles = jnp.arange(cfg.seq, dtype=F32)[:, None] * inv_freq[None, :]
    return jnp.cos(angles), jnp.sin(angles)


@dataclasses.dataclass(frozen=True)
class Ops:
    """The kernels a model is built from.

    Attributes:
        name: printed beside the model's losses and times.
        rms_norm: `(x, w, residual=None) -> y` or `(y, x + residual)`, as `jtile.ops.rms_norm`.
        rotary: `(x, cos, sin) -> x rotated`, as `jtile.ops.rotary`.
        attention: `(q, k, v) -> out`, causal, grouped-query, on (batch, seq, heads, dim).
        swiglu: `(gate, up) -> silu(gate) * up`.
        matmul: `(a, b) -> a @ b` on 2-D bfloat16 arrays, f32 accumulation.
        loss: `(h, w, labels) -> mean cross-entropy of h @ w` against labels, float32.
        qkv_rotary: None, or `(qkv, cos, sin, heads=, kv_heads=) -> (q, k, v)` from the
            packed projection (batch, seq, heads + 2 kv_heads, head_dim), q and k rotated:
            the model then runs one projection GEMM against the concatenated q, k, v weights.
        swiglu_packed: None, or `(gu) -> silu(gate) * up` of the packed (rows, 2 hidden)
            gate | up projection: the model then runs one GEMM against the concatenated
            gate and up weights.
    """

    name: str
    rms_norm: Callable
    rotary: Callable
    attention: Callable
    swiglu: Callable
    matmul: Callable
    loss: Callable
    qkv_rotary: Optional[Callable] = None
    swiglu_packed: Optional[Callable] = None


# ------------------------------------------------------------------------ jax.numpy ops


def _jnp_rms_norm(x, w, residual=None, *, eps):
    s = x if residual is None else x + residual  # rounded to bfloat16, as jtile's fused add
    s32 = s.astype(F32)
    y = (s32 * jax.lax.rsqrt(jnp.mean(s32 * s32, axis=-1, keepdims=True) + eps)
         * w.astype(F32)).astype(x.dtype)
    return y if residual is None else (y, s)


def _jnp_rotary(x, cos, sin):
    x32 = x.astype(F32)
    half = x.shape[-1] // 2
    x1, x2 = x32[..., :half], x32[..., half:]
    c, s = cos[None, :, None, :], sin[None, :, None, :]
    return jnp.concatenate([x1 * c - x2 * s, x2 * c + x1 * s], axis=-1).astype(x.dtype)


def _jnp_swiglu(gate, up):
    return (jax.nn.silu(gate.astype(F32)) * up.astype(F32)).astype(gate.dtype)


def _jnp_loss(h, w, labels):
    logits = jnp.dot(h, w, preferred_element_type=F32)
    picked = jnp.take_along_axis(logits, labels[:, None], axis=-1)[:, 0]
    return jnp.mean(jax.nn.logsumexp(logits, axis=-1) - picked)


def _matmul_xla(a, b):
    return jnp.dot(a, b)  # cuBLAS on a GPU, f32 accumulation, bfloat16 out


def jnp_ops(eps: float = 1e-6, attention_implementation: Optional[str] = None) -> Ops:
    """The model in `jax.numpy`, attention by `jax.nn.dot_product_attention`.

    Args:
        eps: RMS norm epsilon.
        attention_implementation: passed to `jax.nn.dot_product_attention`; None picks
            "cudnn" when JAX's default backend is a GPU and XLA's own otherwise.
    """
    if attention_implementation is None and jax.default_backend() == "gpu":
        attention_implementation = "cudnn"
    attention = functools.partial(jax.nn.dot_product_attention, is_causal=True,
                                  implementation=attention_implementation)
    label = "jnp" + ("+cudnn" if attention_implementation == "cudnn" else "")
    return Ops(label, functools.partial(_jnp_rms_norm, eps=eps), _jnp_rotary, attention,
               _jnp_swiglu, _matmul_xla, _jnp_loss)


# ---------------------------------------------------------------------------- jtile ops

def jtile_ops(eps: float = 1e-6, use_matmul: bool = False,
              interpret: Optional[bool] = None, packed_projections: bool = True) -> Ops:
    """The model on `jtile.ops`.

    Args:
        eps: RMS norm epsilon.
        use_matmul: the projections by `jtile.ops.matmul` instead of XLA's dot (cuBLAS).
        interpret: passed to every op; None follows `JTILE_INTERPRET` and the backend.
        packed_projections: one GEMM for q, k and v, split and rotated by one jtile kernel
            (`examples/gpt/qkv_rotary.py`) instead of XLA's slices and two rotary calls, and
            one for gate and up, read by a packed SwiGLU kernel
            (`examples/gpt/packed_swiglu.py`) whose backward writes one packed gradient.
            The default: on an H200 the step runs 22.64 ms packed against 23.50 separate
            (benchmarks/results/h200_bench_train_packed.log), since a custom call cannot
            take XLA's slices of a merged GEMM into itself as XLA's own fusions do.
    """
    def rms_norm(x, w, residual=None):
        return jops.rms_norm(x, w, eps=eps, residual=residual, interpret=interpret)

    def loss(h, w, labels):
        return jnp.mean(jops.linear_cross_entropy(h, w, labels, interpret=interpret))

    matmul = (functools.partial(jops.matmul, interpret=interpret) if use_matmul
              else _matmul_xla)
    qkv = swiglu_packed = None
    if packed_projections:
        from examples.gpt.packed_swiglu import swiglu_packed as packed_swiglu
        from examples.gpt.qkv_rotary import qkv_rotary

        qkv = functools.partial(qkv_rotary, interpret=interpret)
        swiglu_packed = functools.partial(packed_swiglu, interpret=interpret)
    return Ops("jtile" + ("+matmul" if use_matmul else "") + ("" if qkv else "+separate"),
               rms_norm, functools.partial(jops.rotary, interpret=interpret),
               functools.partial(jops.attention, causal=True, interpret=interpret),
               functools.partial(jops.swiglu, interpret=interpret), matmul, loss, qkv,
               swiglu_packed)


# ------------------------------------------------------------------------------ decoder


def _to_compute(params):
    """bfloat16 copies of the matrices (their gradients flow back to the float32 masters);
    norm weights stay float32 (the norms compute in float32) and the embedding table too
    (its gradient is a scatter-add, which bfloat16 would round on every frequent token)."""
    cast = {k: v.astype(ACT) if v.ndim == 2 else v for k, v in params.items() if k != "layers"}
    cast["embed"] = params["embed"]
    cast["layers"] = [{k: v.astype(ACT) if v.ndim == 2 else v for k, v in layer.items()}
                      for layer in params["layers"]]
    return cast


def _attention_block(ops: Ops, cfg: GPTConfig, p, h, cos, sin):
    b, s, d = h.shape
    rows = h.reshape(b * s, d)
    if ops.qkv_rotary is not None:
        w = jnp.concatenate([p["wq"], p["wk"], p["wv"]], axis=1)
        qkv = ops.matmul(rows, w).reshape(b, s, cfg.n_heads + 2 * cfg.n_kv_heads, cfg.head_dim)
        q, k, v = ops.qkv_rotary(qkv, cos, sin, heads=cfg.n_heads, kv_heads=cfg.n_kv_heads)
    else:
        q = ops.matmul(rows, p["wq"]).reshape(b, s, cfg.n_heads, cfg.head_dim)
        k = ops.matmul(rows, p["wk"]).reshape(b, s, cfg.n_kv_heads, cfg.head_dim)
        v = ops.matmul(rows, p["wv"]).reshape(b, s, cfg.n_kv_heads, cfg.head_dim)
        q, k = ops.rotary(q, cos, sin), ops.rotary(k, cos, sin)
    out = ops.attention(q, k, v)
    return ops.matmul(out.reshape(b * s, cfg.n_heads * cfg.head_dim), p["wo"]).reshape(b, s, d)


def _mlp_block(ops: Ops, p, h):
    b, s, d = h.shape
    rows = h.reshape(b * s, d)
    if ops.swiglu_packed is not None:
        w = jnp.concatenate([p["w_gate"], p["w_up"]], axis=1)
        hidden = ops.swiglu_packed(ops.matmul(rows, w))
    else:
        hidden = ops.swiglu(ops.matmul(rows, p["w_gate"]), ops.matmul(rows, p["w_up"]))
    return ops.matmul(hidden, p["w_down"]).reshape(b, s, d)


def loss_fn(ops: Ops, cfg: GPTConfig, params, tokens, targets):
    """Mean next-token cross-entropy of the decoder on (batch, seq) int32 tokens and targets.

    The residual stream is carried as (stream, pending block output): each RMS norm adds the
    pending output to the stream and normalises the sum in one call, the fused residual form
    of `jtile.ops.rms_norm`.
    """
    p = _to_compute(params)
    cos, sin = rotary_tables(cfg)
    stream = p["embed"][tokens].astype(ACT)
    pending = None
    for layer in p["layers"]:
        if pending is None:
            h = ops.rms_norm(stream, layer["attn_norm"])
        else:
            h, stream = ops.rms_norm(pending, layer["attn_norm"], stream)
        pending = _attention_block(ops, cfg, layer, h, cos, sin)
        h, stream = ops.rms_norm(pending, layer["mlp_norm"], stream)
        pending = _mlp_block(ops, layer, h)
    if pending is None:
        h = ops.rms_norm(stream, p["final_norm"])
    else:
        h, _ = ops.rms_norm(pending, p["final_norm"], stream)
    b, s, d = h.shape
    return ops.loss(h.reshape(b * s, d), p["unembed"], targets.reshape(b * s))
