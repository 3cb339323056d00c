"""A whole shared tile added into a global tile (`T.atomic_add(Y[...], tile)`) is a TMA reduce
(cp.reduce.async.bulk.tensor) on sm_90a, chosen by the compiler or demanded with use_tma=True,
and per-element atomics elsewhere. The tile's bytes stay unwritten until the issuing thread has
waited for the engine's reads. Interpret mode, compiled for sm_80 and sm_90a, and run compiled
on a GPU where one is present."""

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jtile
import jtile.language as T
from tests.language.kernel_runs import has_cuda_gpu, run_both_ways


def _spec(shape, dtype=jnp.float32):
    return jax.ShapeDtypeStruct(shape, dtype)


def _run_on_hopper(kernel, args, out_shape, **launch):
    """Interpret-mode outputs; the kernel compiled for sm_90a (use_tma=True refuses sm_80) and,
    on a GPU of sm_90 or later, run there and equal to interpret mode."""
    interpreted = jtile.pallas_like(kernel, out_shape=out_shape, interpret=True, **launch)(*args)
    interpreted = [np.asarray(y) for y in jax.tree_util.tree_leaves(interpreted)]
    compiled = jtile.pallas_like(kernel, out_shape=out_shape, interpret=False, **launch)
    assert compiled.lower(*args, target="sm_90a").compile().cubin[:4] == b"\x7fELF"
    if has_cuda_gpu() and jax.devices()[0].compute_capability >= "9.0":
        on_gpu = [np.asarray(y) for y in jax.tree_util.tree_leaves(compiled(*args))]
        for got, want in zip(on_gpu, interpreted):
            np.testing.assert_array_equal(got, want)
    return interpreted


def fold_rows(X, Y_IN, Y, *, block, use_tma):
    """Y += the row blocks of X folded onto Y's rows (block b lands on rows b % R)."""
    M, N = X.shape
    R = Y.shape[0] // block
    with T.Kernel(T.ceildiv(M, block), threads=128) as bx:
        tile = T.alloc_shared((block, N), X.dtype)
        T.copy(X[bx * block:(bx + 1) * block, :], tile)
        T.atomic_add(Y[(bx % R) * block:(bx % R + 1) * block, :], tile, use_tma=use_tma)


def _fold_reference(x, y, block):
    out = y.astype(np.float64).copy()
    rows = y.shape[0]
    for b in range(-(-x.shape[0] // block)):
        part = x[b * block:(b + 1) * block].astype(np.float64)
        at = (b % (rows // block)) * block
        out[at:at + part.shape[0]] += part
    return out


@pytest.mark.parametrize("dtype, n, use_tma", [("float32", 64, False), ("float32", 96, True),
                                               ("float16", 128, True), ("bfloat16", 64, False),
                                               ("int32", 32, True)])
def test_shared_tile_added_into_global(dtype, n, use_tma):
    rng = np.random.default_rng(n)
    if dtype == "int32":
        x = rng.integers(-50, 50, (520, n)).astype(np.int32)
        y = rng.integers(-50, 50, (128, n)).astype(np.int32)
    else:
        # Small integers: the sums are exact in every dtype, whatever the order of the adds.
        x = rng.integers(-8, 8, (520, n)).astype(dtype if dtype != "bfloat16" else jnp.bfloat16)
        y = rng.integers(-8, 8, (128, n)).astype(x.dtype)
    kernel = functools.partial(fold_rows, block=64, use_tma=use_tma)
    if use_tma:
        (out,) = _run_on_hopper(kernel, (x, y), _spec(y.shape, y.dtype),
                                input_output_aliases={1: 0})
    else:
        (out,), _ = run_both_ways(kernel, (x, y), _spec(y.shape, y.dtype),
                                  input_output_aliases={1: 0})
    np.testing.assert_array_equal(out.astype(np.float64), _fold_reference(x, y, 64))
    lowered = jtile.pallas_like(kernel, out_shape=_spec(y.shape, y.dtype),
                                input_output_aliases={1: 0})
    hopper = lowered.lower(x, y, target="sm_90a").cuda_source()
    assert "jt::tma_reduce_add_2d(" in hopper and "jt::atomic_add(" not in hopper
    if not use_tma:
        ampere = lowered.lower(x, y, target="sm_80").cuda_source()
        assert "jt::tma_reduce_add" not in ampere and "jt::atomic_add(" in ampere
    # The block waits for the engine's reads before it exits.
    assert hopper.rstrip().rsplit("jt::tma_reduce_add_2d(", 1)[1].count(
        "jt::tma_store_wait_read<0>()") == 1


def accumulate_steps(X, Y_IN, Y, *, block, steps):
    """Each step writes the shared tile again after the previous step's reduce."""
    M, N = X.shape
    with T.Kernel(T.ceildiv(M, block * steps), threads=128) as bx:
        tile = T.alloc_shared((block, N), "float32")
        frag = T.alloc_fragment((block, N), "float32")
        for step in T.serial(steps):
            T.copy(X[(bx * steps + step) * block:(bx * steps + step + 1) * block, :], frag)
            for i, j in T.Parallel(block, N):
                frag[i, j] = frag[i, j] * (step + 1)
            T.copy(frag, tile)
            T.atomic_add(Y[0:block, :], tile)


def test_a_loop_waits_for_the_last_reduce_before_writing_the_tile_again():
    rng = np.random.default_rng(3)
    x = rng.integers(-8, 8, (4 * 64 * 4, 64)).astype(np.float32)
    y = rng.integers(-8, 8, (64, 64)).astype(np.float32)
    kernel = functools.partial(accumulate_steps, block=64, steps=4)
    (out,), _ = run_both_ways(kernel, (x, y), _spec(y.shape), input_output_aliases={1: 0})
    scaled = x.reshape(4, 4, 64, 64) * np.arange(1, 5, dtype=np.float32)[None, :, None, None]
    np.testing.assert_array_equal(out, y + scaled.sum(axis=(0, 1)))
    source = jtile.pallas_like(kernel, out_shape=_spec(y.shape), input_output_aliases={1: 0}) \
        .lower(x, y, target="sm_90a").cuda_source()
    loop = source[re.search(r"for \(int \w+ = 0; \w+ < 4; ", source).start():]
    # In the loop: the write of the tile waits for the issuer's reads at a barrier, which
    # follows the reduce of the iteration before (not a barrier right after the reduce).
    write = loop.index("tile_smem[")
    assert loop.rfind("jt::tma_store_wait_read<0>();", 0, write) != -1
    issue = loop.index("jt::tma_reduce_add_2d(")
    assert "jt::tma_store_wait_read<0>();" not in loop[issue:loop.index("}", issue)]


def reads_back(X, Y_IN, Y, Z, *, use_tma):
    with T.Kernel(1, threads=128):
        tile = T.alloc_shared((64, 64), "float32")
        T.copy(X[0:64, :], tile)
        T.atomic_add(Y[0:64, :], tile, use_tma=use_tma)
        T.copy(Y[0:64, :], Z[0:64, :])


def test_a_kernel_that_reads_the_destination_gets_element_atomics_or_a_refusal():
    x = np.ones((64, 64), np.float32)
    outs = (_spec((64, 64)), _spec((64, 64)))
    auto = jtile.pallas_like(functools.partial(reads_back, use_tma=False), out_shape=outs,
                             input_output_aliases={1: 0})
    assert "jt::tma_reduce_add" not in auto.lower(x, x, target="sm_90a").cuda_source()
    demanded = jtile.pallas_like(functools.partial(reads_back, use_tma=True), out_shape=outs,
                                 input_output_aliases={1: 0})
    with pytest.raises(jtile.JtileTargetError,
                       match=r"reads_back \(test_tma_reduce.py:\d+\): test_tma_reduce.py:\d+: "
                             r"T.atomic_add\(..., use_tma=True\) of tile .* into Y .*the kernel "
                             r"reads Y"):
        demanded.lower(x, x, target="sm_90a")


def test_use_tma_on_a_target_without_tma_is_refused():
    x = np.ones((128, 64), np.float32)
    kernel = functools.partial(fold_rows, block=64, use_tma=True)
    lowered = jtile.pallas_like(kernel, out_shape=_spec((64, 64)), input_output_aliases={1: 0})
    with pytest.raises(jtile.JtileTargetError,
                       match=r"use_tma=True.*arrived with sm_90; the target is sm_80"):
        lowered.lower(x, np.ones((64, 64), np.float32), target="sm_80")


@pytest.mark.parametrize("case, rule", [
    ("element", r"an element update has no tile to send"),
    ("fragment", r"adds a shared tile into a global one .* value is frag \(local.fragment"),
    ("dtype", r"float64 .* Drop use_tma"),
])
def test_use_tma_refusals_at_trace_time(case, rule):
    def bad(X, Y):
        with T.Kernel(1, threads=128):
            frag = T.alloc_fragment((64, 64), "float32")
            wide = T.alloc_shared((64, 64), "float64")
            if case == "element":
                T.atomic_add(Y[0, 0], X[0, 0], use_tma=True)
            elif case == "fragment":
                T.copy(X[0:64, :], frag)
                T.atomic_add(Y[0:64, :], frag, use_tma=True)
            else:
                T.atomic_add(Y[0:64, :], wide, use_tma=True)

    f = jtile.pallas_like(bad, out_shape=_spec((64, 64)), interpret=True)
    with pytest.raises(jtile.JtileTraceError, match=r"bad \(test_tma_reduce.py:\d+\): .*" + rule):
        f(np.ones((64, 64), np.float32))
