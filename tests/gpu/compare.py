"""Element-wise comparisons and seeds shared by the GPU tests (and the differential suite).

One relative norm over a whole tensor lets a few wrong elements through; these compare every
element with `numpy.testing.assert_allclose`, with tolerances that fit the dtype:

- float32 1e-5, float16 5e-3, bfloat16 2e-2 (about 8 ulps of the format's epsilon for the
  16-bit types, for results rounded once after float32 arithmetic);
- `atol` is the same fraction of the data's scale (the largest expected magnitude), so values
  near zero are judged against the tensor's size, not their own;
- a sum over K products (a tensor-core GEMM, attention) rounds its inputs and accumulates in a
  different order than the reference, so its error grows like sqrt(K): pass `k=` and `atol`
  becomes tol * sqrt(K) * the products' scale.

Seeds come from `seed_of(name)` (CRC-32 of the test's name), which, unlike `hash()`, does not
change from one process to the next with PYTHONHASHSEED.
"""

from __future__ import annotations

import math
import zlib

import numpy as np

TOLERANCE = {"float32": 1e-5, "float16": 5e-3, "bfloat16": 2e-2}


def seed_of(name: str) -> int:
    """A stable seed for `name`: the same in every process and on every machine."""
    return zlib.crc32(name.encode("utf-8")) & 0x7FFFFFFF


def _dtype_name(dtype) -> str:
    return np.dtype(dtype).name


def _as_float64(x) -> np.ndarray:
    """Any array (jax or numpy; bfloat16, float16, float32, ints) as float64, exactly."""
    array = np.asarray(x)
    if array.dtype.kind not in "fiub":  # ml_dtypes' bfloat16 and float8 types
        array = array.astype(np.float32)
    return array.astype(np.float64)


def tolerances(dtype, expected, *, k=None, operand_scale=None) -> tuple:
    """`(rtol, atol)` for comparing a result of `dtype` against `expected`.

    Args:
        dtype: the dtype the result was computed in (the narrowest input's for mixed ones).
        expected: the reference values; their largest magnitude scales `atol`.
        k: the length of the sum behind each element (GEMM depth), if any.
        operand_scale: the typical magnitude of one product when `k` is given (default: the
            largest expected magnitude divided by sqrt(k)).
    """
    name = _dtype_name(dtype)
    if name not in TOLERANCE:
        raise ValueError(f"no tolerance for dtype {name}; known: {sorted(TOLERANCE)}")
    tol = TOLERANCE[name]
    reference = np.asarray(expected, np.float64)
    scale = float(np.max(np.abs(reference))) if reference.size else 0.0
    scale = scale if scale > 0 else 1.0
    if k is None:
        return tol, tol * scale
    product = operand_scale if operand_scale is not None else scale / math.sqrt(k)
    return tol, tol * math.sqrt(k) * product


def assert_close(actual, expected, dtype=None, *, k=None, operand_scale=None,
                 name: str = "") -> None:
    """Asserts `actual` matches `expected` element by element within `dtype`'s tolerance.

    Shapes must agree exactly, and every element of `actual` must be finite where `expected`
    is (a NaN from poisoned memory is a failure, never averaged away).
    """
    actual_np, expected_np = _as_float64(actual), _as_float64(expected)
    dtype = dtype if dtype is not None else getattr(actual, "dtype", np.float32)
    assert actual_np.shape == expected_np.shape, \
        f"{name}: shape {actual_np.shape} != expected {expected_np.shape}"
    finite = np.isfinite(expected_np)
    bad = finite & ~np.isfinite(actual_np)
    assert not bad.any(), f"{name}: {int(bad.sum())} non-finite elements, first at " \
        f"{tuple(int(i) for i in np.argwhere(bad)[0])}"
    rtol, atol = tolerances(dtype, expected_np, k=k, operand_scale=operand_scale)
    np.testing.assert_allclose(actual_np, expected_np, rtol=rtol, atol=atol,
                               err_msg=f"{name} ({_dtype_name(dtype)}, rtol {rtol:.1e}, "
                                       f"atol {atol:.1e})")
