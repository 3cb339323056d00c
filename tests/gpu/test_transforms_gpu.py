"""On the GPU: vmap folds into one compiled launch, grad goes through custom_vjp kernel pairs,
shard_map runs the compiled kernel per device, and the cubin is reused across calls."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from examples import gemm, layer_norm, softmax
from tests.gpu.compare import assert_close, seed_of

pytestmark = pytest.mark.gpu


def _normal(name, shape, dtype=jnp.float32, seed=0):
    return jax.random.normal(jax.random.key(seed_of(name) + seed), shape, dtype)


def test_vmap_is_one_launch_and_matches_slices():
    x = _normal("vmap_softmax", (5, 64, 512))
    f = functools.partial(softmax.softmax, block_rows=2, threads=128, interpret=False)
    batched = jax.jit(jax.vmap(f))
    hlo = batched.lower(x).as_text()
    assert hlo.count("jtile_launch") == 1
    out = batched(x)
    assert_close(out, jnp.stack([f(x[i]) for i in range(5)]), jnp.float32, name="vs slices")
    assert_close(out, jax.nn.softmax(x, -1), jnp.float32, name="vs jax.nn.softmax")


def test_vmap_with_an_unbatched_operand():
    a = _normal("vmap_gemm", (3, 128, 64), jnp.float16)
    b = _normal("vmap_gemm", (64, 96), jnp.float16, seed=1)
    f = functools.partial(gemm.matmul, block_m=64, block_n=64, block_k=32, stages=2,
                          threads=128, interpret=False)
    out = jax.jit(jax.vmap(f, in_axes=(0, None)))(a, b)
    ref = jnp.einsum("bmk,kn->bmn", a.astype(jnp.float32), b.astype(jnp.float32))
    assert_close(out, ref, jnp.float16, k=64, operand_scale=1.0, name="batched gemm")


def test_grad_through_custom_vjp_kernels():
    x = _normal("ln_grad", (32, 512))
    w = _normal("ln_grad", (512,), seed=1)
    b = _normal("ln_grad", (512,), seed=2)
    ln = layer_norm.make_layer_norm(block_rows=1, threads=128, interpret=False)
    loss = lambda f: (lambda x, w, b: jnp.sum(jnp.sin(f(x, w, b))))  # noqa: E731
    got = jax.jit(jax.grad(loss(ln), argnums=(0, 1, 2)))(x, w, b)
    want = jax.grad(loss(layer_norm.reference), argnums=(0, 1, 2))(x, w, b)
    for name, g, r in zip(("dx", "dw", "db"), got, want):
        # A column sum over 32 rows for dw/db: float32 with sqrt(K) growth.
        assert_close(g, r, jnp.float32, k=32 if name != "dx" else None, name=name)


def test_shard_map_runs_the_kernel_per_device():
    devices = jax.devices()
    mesh = jax.sharding.Mesh(np.array(devices), ("d",))
    spec = jax.sharding.PartitionSpec("d")
    x = jax.device_put(_normal("shard_softmax", (16 * len(devices), 256)),
                       jax.sharding.NamedSharding(mesh, spec))
    f = functools.partial(softmax.softmax, block_rows=1, threads=128, interpret=False)
    sharded = jax.jit(jax.shard_map(f, mesh=mesh, in_specs=spec, out_specs=spec))
    assert_close(sharded(x), jax.nn.softmax(x, -1), jnp.float32, name="sharded softmax")


def test_vmap_batch_beyond_grid_z_limit():
    """70,000 instances of a one-block kernel: gridDim.z alone would need 70,000 > 65,535."""
    import jtile
    from tests.binding.test_batch_grid import BLOCK, N, shift_kernel

    f = jtile.pallas_like(shift_kernel, out_shape=jax.ShapeDtypeStruct((N,), jnp.float32))
    xs = _normal("vmap_70000", (70000, N))
    expected = xs * 2.0 + (jnp.arange(N) // BLOCK).astype(jnp.float32)
    assert_close(jax.jit(jax.vmap(f))(xs), expected, jnp.float32, name="batch 70000")
