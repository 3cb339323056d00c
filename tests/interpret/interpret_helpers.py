"""Shared by the interpret-mode tests: trace a kernel for given arrays and compare results."""

from __future__ import annotations

import numpy as np

from jtile.interpret import interpret
from jtile.ir.types import DType, as_dtype
from jtile.trace.trace_kernel import trace

TOLERANCE = {DType.float32: 1e-5, DType.float16: 1e-2, DType.bfloat16: 1e-2}


def spec(array) -> tuple:
    return (tuple(array.shape), as_dtype(array.dtype))


def run(fn, inputs, outputs, *, grid=None, aliases=None):
    """Traces `fn` for `inputs` (arrays) and `outputs` ((shape, dtype) pairs) and interprets it."""
    kernel = trace(fn, [spec(x) for x in inputs],
                   [(tuple(shape), as_dtype(dtype)) for shape, dtype in outputs], grid=grid)
    return [np.asarray(y) for y in interpret(kernel, inputs, aliases=aliases)]


def assert_close(actual, expected, dtype) -> None:
    """Relative error bound for `dtype`, measured against the largest expected magnitude."""
    tol = TOLERANCE[as_dtype(dtype)]
    actual = np.asarray(actual).astype(np.float64)
    expected = np.asarray(expected).astype(np.float64)
    assert actual.shape == expected.shape
    assert np.all(np.isfinite(actual)), "result has NaN/inf (poisoned memory was read)"
    scale = max(np.max(np.abs(expected)), 1e-30)
    np.testing.assert_allclose(actual, expected, rtol=tol, atol=tol * scale)


def random(rng, shape, dtype, low=-1.0, high=1.0):
    return rng.uniform(low, high, size=shape).astype(as_dtype(dtype).numpy)
