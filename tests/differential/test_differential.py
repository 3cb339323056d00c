"""Differential testing on the CPU: hypothesis draws kernels of three families (element-wise,
row softmax, pipelined GEMM) over shapes (odd ones included), tiles, dtypes and transposes;
each runs in interpret mode against numpy, element by element, and lowers and compiles for
sm_80, sm_90a and sm_100a. The compiled-vs-interpreted comparison of the same draws runs on
the GPU (test_differential_gpu.py).

`JTILE_HYPOTHESIS_PROFILE=thorough` draws many more examples than the CI profile.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given

from jtile.compiler import nvcc, nvrtc
from tests.differential.kernels import (elementwise_cases, gemm_cases, inputs_for,
                                        softmax_cases)
from tests.gpu.compare import assert_close, seed_of

TARGETS = ("sm_80", "sm_90a", "sm_100a")
needs_compiler = pytest.mark.skipif(not (nvrtc.available() or nvcc.available()),
                                    reason="needs NVRTC or nvcc")


def _interpret_matches_numpy(case):
    args = inputs_for(case, seed_of(case.name))
    out = case.make(True)(*args)
    expected = case.reference(*(np.asarray(a.astype(np.float32), np.float64) for a in args))
    assert out.shape == expected.shape and out.dtype == case.specs[0].dtype
    scale = 1.0 if case.k is None else None  # GEMM: products of unit normals
    assert_close(out, expected, case.dtype, k=case.k, operand_scale=scale, name=case.name)


def _compiles_everywhere(case):
    lowerable = case.make(False)
    for target in TARGETS:
        compiled = lowerable.lower(*case.specs, target=target).compile()
        assert compiled.cubin[:4] == b"\x7fELF", (case.name, target)
        assert compiled.target == target


@given(elementwise_cases())
def test_elementwise_interpret_matches_numpy(case):
    _interpret_matches_numpy(case)


@given(softmax_cases())
def test_softmax_interpret_matches_numpy(case):
    _interpret_matches_numpy(case)


@given(gemm_cases())
def test_gemm_interpret_matches_numpy(case):
    _interpret_matches_numpy(case)


@needs_compiler
@given(elementwise_cases())
def test_elementwise_compiles_for_every_target(case):
    _compiles_everywhere(case)


@needs_compiler
@given(softmax_cases())
def test_softmax_compiles_for_every_target(case):
    _compiles_everywhere(case)


@needs_compiler
@given(gemm_cases())
def test_gemm_compiles_for_every_target(case):
    _compiles_everywhere(case)
