"""On the GPU: every example kernel compiled agrees with interpret mode on fresh random inputs,
and every example script passes its own jnp-reference checks compiled."""

import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.examples.cases import CASES, random_inputs

pytestmark = pytest.mark.gpu

TOLERANCE = {jnp.float32: 1e-5, jnp.float16: 2e-3, jnp.bfloat16: 1e-2}


def _rel(a, b):
    a = np.asarray(jnp.asarray(a, jnp.float32), np.float64)
    b = np.asarray(jnp.asarray(b, jnp.float32), np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


@pytest.mark.parametrize("name", sorted(CASES))
def test_compiled_matches_interpret(name):
    make, specs = CASES[name]
    args = random_inputs(specs, seed=hash(name) % 1000)
    compiled = jax.jit(make(False))(*args)
    reference = make(True)(*args)
    compiled = compiled if isinstance(compiled, (tuple, list)) else (compiled,)
    reference = reference if isinstance(reference, (tuple, list)) else (reference,)
    for out, ref in zip(compiled, reference):
        assert out.shape == ref.shape and out.dtype == ref.dtype
        assert np.all(np.isfinite(np.asarray(out, np.float32))), "non-finite output"
        tol = max(TOLERANCE.get(s.dtype.type, 1e-5) for s in specs)
        assert _rel(out, ref) <= tol, f"{name}: compiled vs interpret rel err {_rel(out, ref)}"


@pytest.mark.parametrize("name", ["quickstart", "softmax", "layer_norm", "gemm", "reducer",
                                  "producer_consumer", "flash_attention"])
def test_example_script_compiled(name, capsys):
    module = importlib.import_module(f"examples.{name}")
    assert module.INTERPRET is False
    module.main()
    assert "FAILED" not in capsys.readouterr().out
