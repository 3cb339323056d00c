"""On the GPU: SIMT-style kernels with per-thread locals (a gemv with per-thread accumulators
and a shared-memory tree, a per-thread running sum with thread-dependent loop bounds and
counters, tile operations around per-thread code, a Walsh-Hadamard transform exchanging
registers through shared memory, a per-thread while loop) compiled agree with numpy and with
interpret mode."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.interpret.per_thread_cases import CASES, launcher, random_inputs

pytestmark = pytest.mark.gpu


def _tuple(x):
    return tuple(x) if isinstance(x, (tuple, list)) else (x,)


@pytest.mark.parametrize("name", sorted(CASES))
def test_compiled_matches_numpy_and_interpret(name):
    args = [jnp.asarray(a) for a in random_inputs(name, seed=len(name) + 7)]
    compiled = _tuple(jax.jit(launcher(name, interpret=False))(*args))
    interpreted = _tuple(launcher(name, interpret=True)(*args))
    expected = _tuple(CASES[name][3](*[np.asarray(a) for a in args]))
    for got, other, want in zip(compiled, interpreted, expected):
        got, other = np.asarray(got), np.asarray(other)
        if np.issubdtype(got.dtype, np.integer):
            np.testing.assert_array_equal(got, want)
            np.testing.assert_array_equal(got, other)
            continue
        got = got.astype(np.float64)
        assert np.all(np.isfinite(got)), f"{name}: non-finite output"
        atol = 1e-5 * max(float(np.max(np.abs(want))), 1.0)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=atol)
        np.testing.assert_allclose(got, other.astype(np.float64), rtol=1e-5, atol=atol)
