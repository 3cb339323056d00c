"""Kernel families and hypothesis strategies for the differential suite.

Each drawn case is a kernel (built from the examples' kernels or a small element-wise one), its
input specs, and a numpy reference. Shapes include sizes that are not multiples of the tiles.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

import jtile
import jtile.language as T
from examples import gemm, softmax

# "ci" keeps the CPU run short (each example compiles for three targets); "thorough" explores.
settings.register_profile("ci", max_examples=3, deadline=None, derandomize=True, database=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", max_examples=60, deadline=None, database=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("JTILE_HYPOTHESIS_PROFILE", "ci"))

DTYPES = {"float16": jnp.float16, "bfloat16": jnp.bfloat16, "float32": jnp.float32}
S = jax.ShapeDtypeStruct


@dataclass(frozen=True)
class Case:
    """One drawn kernel: a launcher factory (interpret flag -> callable), input specs, and the
    numpy reference of its output (float64, from the inputs as float64)."""

    name: str
    make: Callable
    specs: tuple
    reference: Callable
    dtype: str
    k: int | None = None  # length of the sum behind each element (GEMM depth)


def axpby_kernel(X, Y, O, *, block, alpha, beta):
    """O = alpha * X + beta * Y over a 2-D array, in (block, block) tiles with edge guards."""
    M, N = X.shape
    with T.Kernel(T.ceildiv(N, block), T.ceildiv(M, block), threads=128) as (bx, by):
        for i, j in T.Parallel(block, block):
            with T.If((by * block + i < M) & (bx * block + j < N)):
                r, c = by * block + i, bx * block + j
                O[r, c] = T.cast(alpha * T.cast(X[r, c], "float32")
                                 + beta * T.cast(Y[r, c], "float32"), O.dtype)


@st.composite
def elementwise_cases(draw):
    dtype = draw(st.sampled_from(sorted(DTYPES)))
    m, n = draw(st.integers(1, 70)), draw(st.integers(1, 200))
    block = draw(st.sampled_from([16, 32, 64]))
    alpha, beta = draw(st.sampled_from([(1.0, 1.0), (2.0, -0.5), (0.25, 3.0)]))
    kernel = functools.partial(axpby_kernel, block=block, alpha=alpha, beta=beta)
    spec = S((m, n), DTYPES[dtype])
    return Case(f"axpby_{dtype}_{m}x{n}_b{block}",
                lambda interpret: jtile.pallas_like(kernel, out_shape=spec, name="axpby",
                                                    interpret=interpret),
                (spec, spec), lambda x, y: alpha * x + beta * y, dtype)


def _softmax_reference(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@st.composite
def softmax_cases(draw):
    dtype = draw(st.sampled_from(sorted(DTYPES)))
    block_rows = draw(st.sampled_from([1, 2, 4]))
    m = draw(st.integers(block_rows, 40))
    n = draw(st.sampled_from([64, 128, 256, 512]))  # fragments: powers of 2
    threads = draw(st.sampled_from([128, 256]))
    kernel = functools.partial(softmax.softmax_kernel, block_rows=block_rows, threads=threads)
    return Case(f"softmax_{dtype}_{m}x{n}_r{block_rows}_t{threads}",
                lambda interpret: jtile.pallas_like(kernel, name="softmax", interpret=interpret),
                (S((m, n), DTYPES[dtype]),), _softmax_reference, dtype)


@st.composite
def gemm_cases(draw):
    dtype = draw(st.sampled_from(["float16", "bfloat16"]))
    trans_a, trans_b = draw(st.booleans()), draw(st.booleans())
    block_m, block_n = draw(st.sampled_from([(64, 64), (128, 64), (64, 128)]))
    block_k = draw(st.sampled_from([32, 64]))
    stages = draw(st.sampled_from([2, 3]))
    # Odd sizes, at least one tile (a tile larger than its array is refused by T.copy).
    m = draw(st.integers(block_m, 200))
    n = draw(st.integers(block_n, 200))
    k = draw(st.integers(block_k, 160))
    kernel = functools.partial(gemm.matmul_kernel, block_m=block_m, block_n=block_n,
                               block_k=block_k, stages=stages, threads=128, trans_a=trans_a,
                               trans_b=trans_b)
    a = S((k, m) if trans_a else (m, k), DTYPES[dtype])
    b = S((n, k) if trans_b else (k, n), DTYPES[dtype])

    def reference(x, y):
        return (x.T if trans_a else x) @ (y.T if trans_b else y)

    return Case(f"gemm_{dtype}_{m}x{n}x{k}_{'T' if trans_a else 'N'}{'T' if trans_b else 'N'}"
                f"_{block_m}x{block_n}x{block_k}_s{stages}",
                lambda interpret: jtile.pallas_like(kernel, out_shape=S((m, n), DTYPES[dtype]),
                                                    name="matmul", interpret=interpret),
                (a, b), reference, dtype, k=k)


def inputs_for(case: Case, seed: int) -> list:
    rng = np.random.default_rng(seed)
    return [jnp.asarray(rng.standard_normal(spec.shape).astype(np.float32), spec.dtype)
            for spec in case.specs]
