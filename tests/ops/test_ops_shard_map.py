"""jtile.ops inside shard_map: gradients of replicated inputs come back replicated and equal
the same computation written in jax.numpy.

Data parallel: the batch is sharded over mesh axis "data", the weights are replicated, and the
weights' gradients need the psum JAX inserts for its own ops. Tensor parallel: the hidden
dimension (swiglu) or the heads (rotary) are sharded over "model", cos/sin replicated. Each
case runs in a fresh process with 4 host CPU devices (the count is fixed when jax starts).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap


ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

PRELUDE = textwrap.dedent("""
    import jax
    import jax.numpy as jnp
    import numpy as np
    from jax.sharding import NamedSharding, PartitionSpec as P

    import jtile.ops as ops
    from jtile.ops.sharding import varying_axes
    from tests.ops import references as ref

    mesh = jax.make_mesh((2, 2), ("data", "model"))
    rng = np.random.default_rng(11)

    def arr(shape, spec):
        host = rng.standard_normal(shape).astype(np.float32)
        return jax.device_put(host, NamedSharding(mesh, spec))

    def compare(jtile_loss, jnp_loss, args, specs, argnums):
        # The loss is summed over the mesh axes it varies over so that its value, and so
        # every gradient, is the global one.
        def wrap(loss):
            def body(*a):
                value = loss(*a)
                return jax.lax.psum(value, tuple(sorted(varying_axes(value))))
            return jax.shard_map(body, mesh=mesh, in_specs=specs, out_specs=P())
        got = jax.jit(jax.grad(wrap(jtile_loss), argnums))(*args)
        want = jax.jit(jax.grad(wrap(jnp_loss), argnums))(*args)
        for g, w in zip(got, want):
            assert g.sharding.is_equivalent_to(w.sharding, g.ndim), (g.sharding, w.sharding)
            np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-4, atol=1e-4)
        print("OK")
""")


def _run(script: str) -> None:
    env = dict(os.environ, JAX_PLATFORMS="cpu",
               XLA_FLAGS="--xla_force_host_platform_device_count=4", JTILE_INTERPRET="1")
    result = subprocess.run([sys.executable, "-c", PRELUDE + textwrap.dedent(script)],
                            capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    assert result.stdout.strip().splitlines()[-1] == "OK", result.stdout


def test_data_parallel_norms_replicate_weight_gradients():
    _run("""
        x = arr((8, 64), P("data", None))
        r = arr((8, 64), P("data", None))
        w = arr((64,), P())
        b = arr((64,), P())
        dy = arr((8, 64), P("data", None))
        specs = (P("data", None), P(), P("data", None))
        compare(lambda x, w, dy: jnp.sum(ops.rms_norm(x, w) * dy),
                lambda x, w, dy: jnp.sum(ref.rms_norm(x, w) * dy), (x, w, dy), specs, (0, 1))
        compare(lambda x, r, w: jnp.sum(sum(o * o for o in ops.rms_norm(x, w, residual=r))),
                lambda x, r, w: jnp.sum(sum(o * o for o in ref.rms_norm_residual(x, r, w))),
                (x, r, w), (P("data", None), P("data", None), P()), (0, 1, 2))
        compare(lambda x, w, b: jnp.sum(ops.layer_norm(x, w, b) ** 2),
                lambda x, w, b: jnp.sum(ref.layer_norm(x, w, b) ** 2),
                (x, w, b), (P("data", None), P(), P()), (0, 1, 2))
    """)


def test_data_parallel_softmax_and_cross_entropy():
    _run("""
        x = arr((8, 64), P("data", None))
        labels = jax.device_put(rng.integers(0, 64, (8,)).astype(np.int32),
                                NamedSharding(mesh, P("data")))
        compare(lambda x, l: jnp.sum(ops.cross_entropy(x, l)),
                lambda x, l: jnp.sum(ref.cross_entropy(x, l)),
                (x, labels), (P("data", None), P("data")), (0,))
        compare(lambda x: jnp.sum(ops.softmax(x) * x),
                lambda x: jnp.sum(jax.nn.softmax(x) * x), (x,), (P("data", None),), (0,))
    """)


def test_tensor_parallel_swiglu_and_rotary():
    _run("""
        gate = arr((8, 64), P("data", "model"))
        up = arr((8, 64), P("data", "model"))
        compare(lambda g, u: jnp.sum(ops.swiglu(g, u) ** 2),
                lambda g, u: jnp.sum(ref.swiglu(g, u) ** 2),
                (gate, up), (P("data", "model"), P("data", "model")), (0, 1))
        x = arr((2, 6, 4, 16), P("data", None, "model", None))
        cos = arr((6, 8), P())
        sin = arr((6, 8), P())
        compare(lambda x, c, s: jnp.sum(ops.rotary(x, c, s) ** 2),
                lambda x, c, s: jnp.sum(ref.rotary(x, c, s) ** 2),
                (x, cos, sin), (P("data", None, "model", None), P(), P()), (0, 1, 2))
    """)
