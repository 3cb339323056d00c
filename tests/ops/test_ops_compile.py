"""Every op's kernels compile to an sm_90a cubin on the CPU (no GPU needed), on both row paths."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

from tests.ops.cases import make
from tests.ops.launches import compile_every_launch


@pytest.mark.parametrize("n", [96, 128])
@pytest.mark.parametrize("name", ["rms_norm", "rms_norm_residual", "layer_norm", "softmax",
                                  "cross_entropy", "swiglu", "rotary"])
def test_forward_and_backward_kernels_compile(name, n, monkeypatch):
    # Every launch the op makes (forward, backward, column sums).
    compiled = compile_every_launch(monkeypatch)
    fn, _, args, argnums = make(name, jnp.bfloat16, lead=(2, 4), n=n)

    def loss(*a):
        out = fn(*a, interpret=True)
        return sum(jnp.sum(o.astype(jnp.float32)) for o in jax.tree_util.tree_leaves(out))

    jax.grad(loss, argnums)(*args)
    names = [kernel for kernel, _ in compiled]
    assert any(k.endswith("_fwd") for k in names) and any(k.endswith("_bwd") for k in names)
    for kernel, binary in compiled:
        assert binary.cubin[:4] == b"\x7fELF", kernel
        assert 0 < binary.registers <= 255, kernel
