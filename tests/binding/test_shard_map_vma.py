"""Inside shard_map a kernel's outputs vary over the union of the mesh axes its inputs vary over.

The abstract evaluation once copied the varying axes of a single input: with `x` varying over
mesh axis `a` and `y` over `b`, the output was typed as varying over `a` only, so shard_map let
`out_specs=P("a", None)` keep one `b` shard of a result that differs along `b`, and refused
`out_specs=P("a", "b")`. The mesh needs several devices, and XLA's host device count is fixed
when jax starts, so each case runs in a fresh Python process with 4 host CPU devices.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

PRELUDE = textwrap.dedent("""
    import json
    import jax
    import jax.numpy as jnp
    import numpy as np
    from jax.sharding import NamedSharding, PartitionSpec as P

    import jtile
    import jtile.language as T

    def add_kernel(X, Y, O):
        M, N = X.shape
        with T.Kernel(M, threads=32) as bx:
            for j in T.Parallel(N):
                O[bx, j] = X[bx, j] + Y[bx, j]

    add = jtile.pallas_like(add_kernel, out_shape=jax.ShapeDtypeStruct((4, 16), jnp.float32),
                            interpret=True)
    mesh = jax.make_mesh((2, 2), ("a", "b"))
    rng = np.random.default_rng(7)
    x_host = rng.standard_normal((8, 16)).astype(np.float32)   # rows split over a
    y_host = rng.standard_normal((4, 32)).astype(np.float32)   # columns split over b
    x = jax.device_put(x_host, NamedSharding(mesh, P("a", None)))
    y = jax.device_put(y_host, NamedSharding(mesh, P(None, "b")))
    seen = {}

    def body(a, b):
        out = add(a, b)
        aval = jax.typeof(out)
        mat = getattr(aval, "manual_axis_type", None)
        varying = getattr(mat, "varying", None) if mat is not None else aval.vma
        seen["varying"] = sorted(varying)
        return out
""")


def _run(script: str) -> dict:
    env = dict(os.environ, JAX_PLATFORMS="cpu",
               XLA_FLAGS="--xla_force_host_platform_device_count=4")
    env.pop("JTILE_INTERPRET", None)
    result = subprocess.run([sys.executable, "-c", PRELUDE + textwrap.dedent(script)],
                            capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_output_varies_over_every_input_axis():
    report = _run("""
        f = jax.jit(jax.shard_map(body, mesh=mesh, in_specs=(P("a", None), P(None, "b")),
                                  out_specs=P("a", "b")))
        out = np.asarray(f(x, y))
        print(json.dumps({"varying": seen["varying"], "out": out.tolist(),
                          "x": x_host.tolist(), "y": y_host.tolist()}))
    """)
    assert report["varying"] == ["a", "b"]
    x, y = np.asarray(report["x"], np.float32), np.asarray(report["y"], np.float32)
    # Device (i, j) adds x's row block i to y's column block j.
    expected = np.block([[x[4 * i:4 * i + 4] + y[:, 16 * j:16 * j + 16] for j in range(2)]
                         for i in range(2)])
    np.testing.assert_allclose(np.asarray(report["out"], np.float32), expected, rtol=1e-6,
                               atol=0)


def test_out_specs_that_drop_a_varying_axis_are_refused():
    report = _run("""
        f = jax.jit(jax.shard_map(body, mesh=mesh, in_specs=(P("a", None), P(None, "b")),
                                  out_specs=P("a", None)))
        try:
            f(x, y)
            print(json.dumps({"error": None}))
        except Exception as error:  # shard_map's own check of the varying axes
            print(json.dumps({"error": f"{type(error).__name__}: {error}"}))
    """)
    assert report["error"] is not None and "b" in report["error"], report


def test_interpret_mode_updates_an_aliased_input_that_varies_over_one_axis():
    # C varies over `a`, X over `a` and `b`: the kernel's block loop carries C's storage, which
    # starts varying over `a` and is written with values varying over both. Interpret mode
    # once failed here ("scan body function carry input and carry output must have equal
    # types"); an inner T.serial loop over a cleared accumulator failed the same way.
    report = _run("""
        def accumulate(X, C, O):
            M, N = X.shape
            with T.Kernel(M, threads=32) as bx:
                acc = T.alloc_fragment((N,), "float32")
                T.clear(acc)
                for k in T.serial(3):
                    for j in T.Parallel(N):
                        acc[j] = acc[j] + X[bx, j] * (k + 1)
                for j in T.Parallel(N):
                    O[bx, j] = C[bx, j] + acc[j]

        acc_into = jtile.pallas_like(
            accumulate, out_shape=jax.ShapeDtypeStruct((4, 16), jnp.float32),
            input_output_aliases={1: 0}, interpret=True)
        c_host = rng.standard_normal((8, 16)).astype(np.float32)
        c = jax.device_put(c_host, NamedSharding(mesh, P("a", None)))
        xs = jax.device_put(rng.standard_normal((8, 32)).astype(np.float32),
                            NamedSharding(mesh, P("a", "b")))
        f = jax.jit(jax.shard_map(acc_into, mesh=mesh, in_specs=(P("a", "b"), P("a", None)),
                                  out_specs=P("a", "b")))
        out = np.asarray(f(xs, c))
        want = np.concatenate([c_host, c_host], axis=1) + 6 * np.asarray(xs)
        print(json.dumps({"max_error": float(np.abs(out - want).max())}))
    """)
    assert report["max_error"] < 1e-5, report
