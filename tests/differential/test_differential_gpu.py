"""On the GPU: the differential suite's drawn kernels, compiled against interpret mode,
element by element with dtype-fit tolerances."""

from __future__ import annotations

import jax
import pytest
from hypothesis import given

from tests.differential.kernels import (elementwise_cases, gemm_cases, inputs_for,
                                        softmax_cases)
from tests.gpu.compare import assert_close, seed_of

pytestmark = pytest.mark.gpu


def _compiled_matches_interpret(case):
    args = inputs_for(case, seed_of(case.name))
    compiled = jax.jit(case.make(False))(*args)
    reference = case.make(True)(*args)
    assert compiled.shape == reference.shape and compiled.dtype == reference.dtype
    assert_close(compiled, reference, case.dtype, k=case.k,
                 operand_scale=None if case.k is None else 1.0, name=case.name)


@given(elementwise_cases())
def test_elementwise_compiled_matches_interpret(case):
    _compiled_matches_interpret(case)


@given(softmax_cases())
def test_softmax_compiled_matches_interpret(case):
    _compiled_matches_interpret(case)


@given(gemm_cases())
def test_gemm_compiled_matches_interpret(case):
    _compiled_matches_interpret(case)
