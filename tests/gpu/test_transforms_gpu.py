"""On the GPU: vmap folds into one compiled launch, grad goes through custom_vjp kernel pairs,
shard_map runs the compiled kernel per device, and the cubin is reused across calls."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from examples import gemm, layer_norm, softmax

pytestmark = pytest.mark.gpu


def _rel(a, b):
    a = np.asarray(jnp.asarray(a, jnp.float32), np.float64)
    b = np.asarray(jnp.asarray(b, jnp.float32), np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def test_vmap_is_one_launch_and_matches_slices():
    x = jax.random.normal(jax.random.key(0), (5, 64, 512), jnp.float32)
    f = functools.partial(softmax.softmax, block_rows=2, threads=128, interpret=False)
    batched = jax.jit(jax.vmap(f))
    hlo = batched.lower(x).as_text()
    assert hlo.count("jtile_launch") == 1
    out = batched(x)
    ref = jnp.stack([f(x[i]) for i in range(5)])
    assert _rel(out, ref) < 1e-6
    assert _rel(out, jax.nn.softmax(x, -1)) < 1e-5


def test_vmap_with_an_unbatched_operand():
    a = jax.random.normal(jax.random.key(1), (3, 128, 64), jnp.float16)
    b = jax.random.normal(jax.random.key(2), (64, 96), jnp.float16)
    f = functools.partial(gemm.matmul, block_m=64, block_n=64, block_k=32, stages=2,
                          threads=128, interpret=False)
    out = jax.jit(jax.vmap(f, in_axes=(0, None)))(a, b)
    ref = jnp.einsum("bmk,kn->bmn", a.astype(jnp.float32), b.astype(jnp.float32))
    assert _rel(out, ref) < 2e-3


def test_grad_through_custom_vjp_kernels():
    x = jax.random.normal(jax.random.key(3), (32, 512), jnp.float32)
    w = jax.random.normal(jax.random.key(4), (512,), jnp.float32)
    b = jax.random.normal(jax.random.key(5), (512,), jnp.float32)
    ln = layer_norm.make_layer_norm(block_rows=1, threads=128, interpret=False)
    loss = lambda f: (lambda x, w, b: jnp.sum(jnp.sin(f(x, w, b))))  # noqa: E731
    got = jax.jit(jax.grad(loss(ln), argnums=(0, 1, 2)))(x, w, b)
    want = jax.grad(loss(layer_norm.reference), argnums=(0, 1, 2))(x, w, b)
    for g, r in zip(got, want):
        assert _rel(g, r) < 1e-4


def test_shard_map_runs_the_kernel_per_device():
    devices = jax.devices()
    mesh = jax.sharding.Mesh(np.array(devices), ("d",))
    spec = jax.sharding.PartitionSpec("d")
    x = jax.random.normal(jax.random.key(6), (16 * len(devices), 256), jnp.float32)
    f = functools.partial(softmax.softmax, block_rows=1, threads=128, interpret=False)
    sharded = jax.jit(jax.shard_map(f, mesh=mesh, in_specs=spec, out_specs=spec))
    assert _rel(sharded(x), jax.nn.softmax(x, -1)) < 1e-5
