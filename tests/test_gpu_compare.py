"""The GPU tests' comparison helpers (tests/gpu/compare.py), checked on the CPU (a test under
tests/gpu would be skipped here with the rest of that folder): one wrong element fails,
dtype-fit noise passes, and seeds do not depend on PYTHONHASHSEED."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest

from tests.gpu.compare import TOLERANCE, assert_close, seed_of, tolerances

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _data(dtype, shape=(64, 96), seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32).astype(dtype)


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_one_wrong_element_fails(dtype):
    expected = jnp.asarray(_data(np.float32), dtype)
    wrong = np.array(expected.astype(jnp.float32))
    wrong[17, 33] += 0.25  # a relative norm over 6144 elements would hide this
    rel = np.linalg.norm(wrong - np.asarray(expected, np.float32)) / \
        np.linalg.norm(np.asarray(expected, np.float32))
    assert rel < 1e-2
    with pytest.raises(AssertionError, match=r"Mismatched elements: 1 / 6144"):
        assert_close(jnp.asarray(wrong, dtype), expected, dtype)


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_rounding_noise_of_the_dtype_passes(dtype):
    exact = _data(np.float32, seed=1).astype(np.float64)
    rounded = jnp.asarray(exact, dtype)  # one rounding to the dtype
    assert_close(rounded, exact, dtype)


def test_a_nan_fails_even_inside_the_tolerance():
    expected = _data(np.float32)
    actual = expected.copy()
    actual[3, 4] = np.nan
    with pytest.raises(AssertionError, match=r"1 non-finite elements, first at \(3, 4\)"):
        assert_close(actual, expected, np.float32)


def test_shapes_must_agree():
    with pytest.raises(AssertionError, match="shape"):
        assert_close(np.zeros((4, 4), np.float32), np.zeros((4, 5), np.float32))


def test_gemm_atol_grows_like_sqrt_k():
    expected = np.ones((8, 8))
    _, atol_64 = tolerances("float16", expected, k=64, operand_scale=1.0)
    _, atol_256 = tolerances("float16", expected, k=256, operand_scale=1.0)
    assert math.isclose(atol_256 / atol_64, 2.0)
    assert math.isclose(atol_64, TOLERANCE["float16"] * 8.0)


def test_bf16_gemm_within_sqrt_k_noise_passes_and_a_wrong_element_does_not():
    rng = np.random.default_rng(5)
    a = rng.standard_normal((32, 256)).astype(np.float32)
    b = rng.standard_normal((256, 48)).astype(np.float32)
    exact = a.astype(np.float64) @ b.astype(np.float64)
    a16, b16 = (np.asarray(jnp.asarray(m, jnp.bfloat16).astype(jnp.float32)) for m in (a, b))
    got = np.asarray(jnp.asarray(a16 @ b16, jnp.bfloat16))  # rounded inputs and output
    assert_close(got, exact, "bfloat16", k=256, operand_scale=1.0)
    got = got.astype(np.float32)
    got[5, 7] += 2.0
    with pytest.raises(AssertionError, match="Mismatched elements: 1 /"):
        assert_close(got, exact, "bfloat16", k=256, operand_scale=1.0)


def test_unknown_dtype_is_refused():
    with pytest.raises(ValueError, match="no tolerance for dtype int32"):
        tolerances(np.int32, np.ones(3))


def test_seed_is_stable_across_processes():
    code = "from tests.gpu.compare import seed_of; print(seed_of('gemm_nn_f16'))"
    seeds = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=ROOT, env=dict(os.environ, PYTHONHASHSEED=str(h)),
                            check=True).stdout.strip() for h in (1, 2)}
    assert seeds == {str(seed_of("gemm_nn_f16"))}
    assert seed_of("a") != seed_of("b")
