"""On the GPU: every example kernel compiled agrees with interpret mode on fresh random inputs,
and every example script passes its own jnp-reference checks compiled."""

import importlib

import jax
import numpy as np
import pytest

from tests.examples.cases import CASES, random_inputs
from tests.gpu.compare import assert_close, seed_of

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("name", sorted(CASES))
def test_compiled_matches_interpret(name):
    make, specs = CASES[name]
    args = random_inputs(specs, seed=seed_of(name))
    compiled = jax.jit(make(False))(*args)
    reference = make(True)(*args)
    compiled = compiled if isinstance(compiled, (tuple, list)) else (compiled,)
    reference = reference if isinstance(reference, (tuple, list)) else (reference,)
    assert len(compiled) == len(reference)
    # The narrowest input dtype sets the tolerance (a float16 GEMM's float32 output included).
    narrowest = min((np.dtype(s.dtype) for s in specs), key=lambda d: d.itemsize)
    for index, (out, ref) in enumerate(zip(compiled, reference)):
        assert out.shape == ref.shape and out.dtype == ref.dtype
        assert_close(out, ref, narrowest, name=f"{name} output {index}")


@pytest.mark.parametrize("name", ["quickstart", "softmax", "layer_norm", "gemm", "reducer",
                                  "producer_consumer", "flash_attention"])
def test_example_script_compiled(name, capsys):
    module = importlib.import_module(f"examples.{name}")
    assert module.INTERPRET is False
    module.main()
    assert "FAILED" not in capsys.readouterr().out
