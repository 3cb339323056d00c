"""A vmap batch too large for gridDim.z alone spills into y and x, inside CUDA's launch limits.

Before the fold learned to spill, a batch of 70,000 over a one-block grid asked for
gridDim.z = 70,000 (the limit is 65,535): the launch would fail on the GPU. These tests check the
launch configuration and the generated index arithmetic on the CPU, and the values in interpret
mode.
"""

from __future__ import annotations

import itertools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jtile
import jtile.language as T
from jtile.binding.lowered import compile_generated, plan_and_generate, resolve_target
from jtile.codegen import cuda
from jtile.compiler import nvcc, nvrtc
from jtile.ir.types import DType
from jtile.trace.trace_kernel import trace

N = 64
BLOCK = 32
needs_compiler = pytest.mark.skipif(not (nvrtc.available() or nvcc.available()),
                                    reason="needs NVRTC or nvcc")


def shift_kernel(X, O):
    (n,) = X.shape
    with T.Kernel(n // BLOCK, threads=BLOCK) as bx:
        for i in T.Parallel(BLOCK):
            O[bx * BLOCK + i] = X[bx * BLOCK + i] * 2.0 + T.cast(bx, "float32")


def grid3_kernel(X, O):
    """A 3-D grid (2, 3, 2) of 32-element tiles over a (2, 3, 2, 32) array."""
    with T.Kernel(2, 3, 2, threads=BLOCK) as (bx, by, bz):
        for i in T.Parallel(BLOCK):
            O[bx, by, bz, i] = X[bx, by, bz, i] + T.cast(bx * 100 + by * 10 + bz, "float32")


def _traced(fn, shape):
    return trace(fn, [(shape, DType.float32)], [(shape, DType.float32)])


def _generate(fn, shape, batch):
    _, generated = plan_and_generate(_traced(fn, shape), resolve_target("sm_90a"), batch=batch,
                                     batched=(True,))
    return generated


def test_a_batch_that_fits_stays_in_z():
    generated = _generate(shift_kernel, (N,), 3)
    assert generated.grid == (N // BLOCK, 1, 3)
    assert "jt_batch = blockIdx.z / 1;" in generated.source


@pytest.mark.parametrize("batch, grid", [(65535, (2, 1, 65535)), (70000, (2, 2, 35000)),
                                         (65537, (2, 2, 32769))])
def test_a_large_batch_spills_into_y_within_the_limits(batch, grid):
    generated = _generate(shift_kernel, (N,), batch)
    assert generated.grid == grid
    assert all(g <= limit for g, limit in zip(generated.grid, cuda.GRID_LIMITS))
    spare = grid[0] // 2 * grid[1] * grid[2] > batch
    assert (f"if (jt_batch >= {batch}LL) return;" in generated.source) == spare


def _prologue_mapping(source: str, grid: tuple) -> dict:
    """Evaluates the generated prologue's block-index and batch lines for every block of the
    launch grid (C's unsigned integer division on non-negative values is Python's //)."""
    lines = dict(re.findall(r"const (?:int|long long) (\w+) = ([^;]+);", source))
    batch_guard = re.search(r"if \(jt_batch >= (\d+)LL\) return;", source)
    limit = int(batch_guard.group(1)) if batch_guard else None
    mapping = {}
    for x, y, z in itertools.product(*(range(g) for g in grid)):
        values = {"blockIdx.x": x, "blockIdx.y": y, "blockIdx.z": z}

        def evaluate(text):
            text = text.replace("(long long)", "").replace("LL", "").replace("/", "//")
            for name, value in values.items():
                text = text.replace(name, str(value))
            return eval(text)  # noqa: S307 - integer arithmetic from the generated source

        instance = evaluate(lines["jt_batch"])
        if limit is not None and instance >= limit:
            continue
        blocks = tuple(evaluate(lines[v]) for v in ("bx", "by", "bz") if v in lines)
        key = (instance,) + blocks
        assert key not in mapping, f"blocks {mapping[key]} and {(x, y, z)} both run {key}"
        mapping[key] = (x, y, z)
    return mapping


@pytest.mark.parametrize("batch", [1, 2, 3, 4, 5, 7, 8, 13, 19, 20])
def test_every_instance_and_block_runs_exactly_once(monkeypatch, batch):
    # Small limits make every spill (z into y into x) reachable with a handful of blocks.
    monkeypatch.setattr(cuda, "GRID_LIMITS", (11, 7, 5))
    generated = _generate(grid3_kernel, (2, 3, 2, BLOCK), batch)
    assert all(g <= limit for g, limit in zip(generated.grid, cuda.GRID_LIMITS))
    if batch == 1:
        assert generated.grid == (2, 3, 2) and "jt_batch" not in generated.source
        return
    mapping = _prologue_mapping(generated.source, generated.grid)
    want = set(itertools.product(range(batch), range(2), range(3), range(2)))
    assert set(mapping) == want


def test_a_grid_beyond_the_launch_limits_is_refused():
    def tall_kernel(X, O):
        with T.Kernel(1, 70000, threads=BLOCK) as (bx, by):
            for i in T.Parallel(BLOCK):
                O[i] = X[i]

    with pytest.raises(jtile.JtileTargetError,
                       match=r"tall_kernel \(.*\): T.Kernel grid \(1, 70000\) has 70000 blocks "
                             r"along y; CUDA launches at most 65535"):
        _generate(tall_kernel, (BLOCK,), 1)


def test_a_batch_beyond_every_axis_is_refused(monkeypatch):
    monkeypatch.setattr(cuda, "GRID_LIMITS", (11, 7, 5))
    with pytest.raises(jtile.JtileTargetError, match=r"a vmap batch of 21 over the grid "
                                                     r"\(2, 3, 2\) needs more blocks"):
        _generate(grid3_kernel, (2, 3, 2, BLOCK), 21)  # room for 5 * 2 * 2 = 20 instances


@needs_compiler
def test_the_spilled_kernel_compiles():
    generated = _generate(shift_kernel, (N,), 70001)
    binary = compile_generated(generated, resolve_target("sm_90a"))
    assert binary.cubin[:4] == b"\x7fELF"


@needs_compiler
def test_jit_of_vmap_lowers_for_cuda_with_the_spilled_grid():
    f = jtile.pallas_like(shift_kernel, out_shape=jax.ShapeDtypeStruct((N,), jnp.float32),
                          compiler_params={"target": "sm_90a"})
    xs = jax.ShapeDtypeStruct((70000, N), jnp.float32)
    text = jax.jit(jax.vmap(f)).trace(xs).lower(lowering_platforms=("cuda",)).as_text()
    grid = [int(re.search(rf"grid_{axis} = (\d+) : i64", text).group(1)) for axis in "xyz"]
    assert grid == [2, 2, 35000]


def test_a_large_batch_in_interpret_mode_matches_numpy():
    f = jtile.pallas_like(shift_kernel, out_shape=jax.ShapeDtypeStruct((N,), jnp.float32),
                          interpret=True)
    xs = np.random.default_rng(3).standard_normal((70000, N)).astype(np.float32)
    expected = xs * 2.0 + (np.arange(N) // BLOCK).astype(np.float32)
    np.testing.assert_allclose(jax.jit(jax.vmap(f))(xs), expected, rtol=1e-6, atol=0)
