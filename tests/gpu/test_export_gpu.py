"""On the GPU: a jitted function with a jtile kernel, exported with jax.export and serialised,
runs in a fresh process that only imports jtile (which registers the jtile_launch target)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jtile
import jtile.language as T

pytestmark = pytest.mark.gpu

N = 5000  # not a multiple of the block: the tail is masked


def scale_add_kernel(X, Y, O):
    """O = 3 X + Y, one element per thread."""
    (n,) = X.shape
    with T.Kernel(T.ceildiv(n, 256), threads=256) as bx:
        for i in T.Parallel(256):
            with T.If(bx * 256 + i < n):
                O[bx * 256 + i] = X[bx * 256 + i] * 3.0 + Y[bx * 256 + i]


def _function():
    spec = jax.ShapeDtypeStruct((N,), jnp.float32)
    kernel = jtile.pallas_like(scale_add_kernel, out_shape=spec)
    return jax.jit(lambda x, y: jnp.tanh(kernel(x, y))), spec


# Only jtile is imported before the call: the artifact must find jtile_launch registered.
FRESH_PROCESS = textwrap.dedent("""
    import sys

    import jax
    import numpy as np

    import jtile  # noqa: F401  (registers the jtile_launch target)

    artifact, inputs, output = sys.argv[1:4]
    with open(artifact, "rb") as f:
        exported = jax.export.deserialize(bytearray(f.read()))
    arrays = np.load(inputs)
    result = exported.call(arrays["x"], arrays["y"])
    np.save(output, np.asarray(result))
""")


def test_deserialised_export_runs_in_a_fresh_process(tmp_path):
    f, spec = _function()
    # jax.export accepts only allow-listed custom calls unless told otherwise.
    exported = jax.export.export(
        f, platforms=("cuda",),
        disabled_checks=[jax.export.DisabledSafetyCheck.custom_call("jtile_launch")],
    )(spec, spec)
    artifact = tmp_path / "scale_add.jax"
    artifact.write_bytes(exported.serialize())

    x = jax.random.normal(jax.random.key(11), (N,), jnp.float32)
    y = jax.random.normal(jax.random.key(12), (N,), jnp.float32)
    inputs = tmp_path / "inputs.npz"
    np.savez(inputs, x=np.asarray(x), y=np.asarray(y))
    output = tmp_path / "output.npy"

    result = subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS, str(artifact), str(inputs), str(output)],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]

    expected = np.tanh(3.0 * np.asarray(x, np.float64) + np.asarray(y, np.float64))
    np.testing.assert_allclose(np.load(output), expected, rtol=1e-5, atol=1e-6)
    # The same artifact in this process agrees too.
    np.testing.assert_allclose(np.asarray(exported.call(x, y)), expected, rtol=1e-5, atol=1e-6)
