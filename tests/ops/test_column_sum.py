"""`jtile.ops.column_sum`: the multi-pass sum that finishes weight gradients."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jtile.ops.column_sum import column_sum


@pytest.mark.parametrize("rows, columns", [(1, 7), (31, 256), (32, 1000), (33, 257),
                                           (512, 384), (1100, 130)])
@pytest.mark.parametrize("out_dtype", [jnp.float32, jnp.bfloat16])
def test_column_sum_matches_numpy(rows, columns, out_dtype):
    partial = jax.random.normal(jax.random.key(rows * 7 + columns), (rows, columns),
                                jnp.float32)
    got = column_sum(partial, out_dtype, interpret=True)
    assert got.shape == (columns,) and got.dtype == out_dtype
    want = np.asarray(partial, np.float64).sum(0)
    tol = 1e-5 if out_dtype == jnp.float32 else 1e-2
    np.testing.assert_allclose(np.asarray(got, np.float64), want,
                               rtol=tol, atol=tol * np.sqrt(rows))


def test_column_sum_compiles_for_hopper(monkeypatch):
    from tests.ops.launches import compile_every_launch

    compiled = compile_every_launch(monkeypatch)
    partial = jax.random.normal(jax.random.key(0), (512, 4096), jnp.float32)
    column_sum(partial, jnp.bfloat16, interpret=True)
    assert [name for name, _ in compiled] == ["column_sum", "column_sum"]
    for _, binary in compiled:
        assert binary.cubin[:4] == b"\x7fELF"
