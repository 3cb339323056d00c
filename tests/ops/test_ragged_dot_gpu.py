"""`jtile.ops.ragged_dot` compiled on the GPU, at MoE-like sizes, against `jax.lax.ragged_dot`
computed in float32: forward and both gradients, even, skewed, empty and tiny groups, a sum
below m, float16, bfloat16 and (on Hopper) fp8 e4m3; the same compiled kernels for every split."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jtile.ops as ops
from tests.gpu.compare import assert_close, seed_of

pytestmark = pytest.mark.gpu

M, K, N, G = 4096, 1024, 1536, 8
SPLITS = {
    "even": [512] * 8,
    "skewed": [2048, 300, 0, 1000, 1, 7, 700, 40],       # one expert takes half
    "sparse_sum_below_m": [0, 129, 0, 0, 3000, 0, 1, 0],  # 966 rows come out zero
}


def _hopper() -> bool:
    devices = [d for d in jax.devices() if d.platform == "gpu"]
    return bool(devices) and getattr(devices[0], "compute_capability", "") == "9.0"


def _inputs(name, dtype, m=M, k=K, n=N, g=G):
    ka, kb, kc = jax.random.split(jax.random.key(seed_of(name)), 3)
    lhs = jax.random.normal(ka, (m, k), jnp.float32).astype(dtype)
    rhs = jax.random.normal(kb, (g, k, n), jnp.float32).astype(dtype)
    projection = jax.random.normal(kc, (m, n), jnp.float32)
    return lhs, rhs, projection


def _reference(lhs, rhs, group_sizes):
    return jax.lax.ragged_dot(lhs.astype(jnp.float32), rhs.astype(jnp.float32), group_sizes,
                              precision=jax.lax.Precision.HIGHEST)


@pytest.mark.parametrize("split", sorted(SPLITS))
@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_forward_and_gradients(split, dtype):
    group_sizes = jnp.array(SPLITS[split], jnp.int32)
    lhs, rhs, projection = _inputs(f"ragged-{split}-{jnp.dtype(dtype).name}", dtype)
    out = jax.jit(lambda a, b, g: ops.ragged_dot(a, b, g, interpret=False))(lhs, rhs,
                                                                           group_sizes)
    assert_close(out, _reference(lhs, rhs, group_sizes), dtype, k=K, name="out")

    def loss(op):
        return lambda a, b: jnp.sum(
            op(a, b, group_sizes).astype(jnp.float32) * projection)

    grads = jax.jit(jax.grad(loss(lambda a, b, g: ops.ragged_dot(a, b, g, interpret=False)),
                             (0, 1)))(lhs, rhs)
    want = jax.grad(loss(_reference), (0, 1))(lhs.astype(jnp.float32), rhs.astype(jnp.float32))
    assert_close(grads[0], want[0], dtype, k=N, name="d lhs")
    assert_close(grads[1], want[1], dtype, k=M, name="d rhs")


def test_splits_reuse_one_compilation():
    lhs, rhs, _ = _inputs("ragged-reuse", jnp.bfloat16)
    traces = []

    @jax.jit
    def f(a, b, g):
        traces.append(1)
        return ops.ragged_dot(a, b, g, preferred_element_type=jnp.float32, interpret=False)

    for sizes in SPLITS.values():
        group_sizes = jnp.array(sizes, jnp.int32)
        assert_close(f(lhs, rhs, group_sizes), _reference(lhs, rhs, group_sizes), jnp.bfloat16,
                     k=K, name=str(sizes))
    assert len(traces) == 1


@pytest.mark.skipif(not _hopper(), reason="fp8 wgmma needs a Hopper (sm_90a) GPU")
@pytest.mark.parametrize("split", sorted(SPLITS))
def test_fp8_forward(split):
    group_sizes = jnp.array(SPLITS[split], jnp.int32)
    lhs, rhs, _ = _inputs(f"ragged-fp8-{split}", jnp.float32)
    lhs, rhs = lhs.astype(jnp.float8_e4m3fn), rhs.astype(jnp.float8_e4m3fn)
    f = jax.jit(lambda a, b, g: ops.ragged_dot(a, b, g, preferred_element_type=jnp.bfloat16,
                                               interpret=False))
    out = f(lhs, rhs, group_sizes)
    assert out.dtype == jnp.bfloat16
    # Inputs are exactly representable in both computations: only the bf16 rounding of the
    # result and the summation order differ.
    assert_close(out, _reference(lhs, rhs, group_sizes), jnp.bfloat16, k=K, name="fp8 out")
    rows = min(int(np.sum(SPLITS[split])), M)
    assert not np.asarray(out[rows:], np.float32).any()
