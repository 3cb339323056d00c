"""Every example runs as written in interpret mode on the CPU and passes its own checks
against jnp references (each example's main() raises when an error bound is exceeded)."""

import importlib

import pytest

EXAMPLES = ["quickstart", "softmax", "layer_norm", "gemm", "reducer", "producer_consumer",
            "flash_attention"]


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_main_passes(name, capsys):
    module = importlib.import_module(f"examples.{name}")
    module.main()
    out = capsys.readouterr().out
    assert "FAILED" not in out
    assert " ok" in out
