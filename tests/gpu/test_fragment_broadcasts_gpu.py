"""On the GPU: kernels that read fragments broadcast across T.Parallel (a (1,) fragment, row
and column vectors, uniform indices, a loop that only reads a row vector, MLA-decoding-style
row vectors of two gemm accumulators) compiled agree with interpret mode and with numpy."""

import jax
import numpy as np
import pytest

from tests.passes.fragment_broadcast_cases import CASES, launcher, random_inputs

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("name", sorted(CASES))
def test_compiled_matches_interpret_and_numpy(name):
    _, specs, _, reference, tol = CASES[name]
    args = random_inputs(specs, seed=len(name) + 1)
    compiled = np.asarray(jax.jit(launcher(name, False))(*args), np.float64)
    interpreted = np.asarray(launcher(name, True)(*args), np.float64)
    expected = reference(*[a.astype(np.float64) for a in args])
    scale = np.max(np.abs(expected))
    assert np.all(np.isfinite(compiled)), "non-finite output"
    np.testing.assert_allclose(compiled, interpreted, rtol=tol, atol=tol * scale)
    np.testing.assert_allclose(compiled, expected, rtol=tol, atol=tol * scale)
