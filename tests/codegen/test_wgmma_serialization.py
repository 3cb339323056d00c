"""ptxas keeps the wgmmas of the Hopper kernels asynchronous. When it cannot prove that nothing
touches an accumulator while its wgmma runs, it waits after every wgmma and says so in its
report (C7514 / C7515, "wgmma.mma_async instructions are serialized"): a silent loss of about
a third of the tensor-core throughput that only the compile log shows. jtile reads the report:
a ring whose waits reach across iterations is planned again with a wait per iteration, and a
kernel still serialized gets a JtilePerformanceWarning. Rings of wgmmas stay rolled, so a short
static one is not unrolled into divergent accumulator reads (C7519). No GPU needed."""

import functools
import re
import warnings

import jax
import jax.numpy as jnp
import pytest

import jtile
from examples import flash_attention as fa
from examples import gemm
from jtile.binding.lowered import WGMMA_SERIALIZED, compile_generated, plan_and_generate
from jtile.compiler.target import parse_target
from jtile.errors import JtilePerformanceWarning

S = jax.ShapeDtypeStruct
SM90A = parse_target("sm_90a")


def _gemm(config, m=4096):
    kernel = functools.partial(gemm.matmul_kernel, block_k=64, threads=256, trans_a=False,
                               trans_b=False, **config)
    f16 = jnp.float16
    call = jtile.pallas_like(kernel, out_shape=S((m, m), f16), name="matmul")
    return call, (S((m, 4096), f16), S((4096, m), f16))


def _compiles_asynchronous(call, args):
    """Compiles through jtile's build (with its retry); fails on the serialization warning."""
    lowered = call.lower(*args, target=SM90A)
    with warnings.catch_warnings():
        warnings.simplefilter("error", JtilePerformanceWarning)
        lowered.compile()
    return lowered


@pytest.mark.parametrize("config", [
    dict(block_m=128, block_n=256, stages=4),
    dict(block_m=256, block_n=128, stages=4),
    dict(block_m=128, block_n=256, stages=4, cluster_n=2),   # A multicast in clusters of 2
    dict(block_m=256, block_n=128, stages=4, cluster_n=2),
    dict(block_m=128, block_n=128, stages=3),
], ids=str)
def test_gemm_wgmmas_stay_asynchronous(config):
    _compiles_asynchronous(*_gemm(config))


def test_a_serialized_ring_is_planned_again_with_a_wait_per_iteration(monkeypatch):
    monkeypatch.setenv("JTILE_TMA_STORE", "0")   # a ring ptxas serializes (see below)
    call, args = _gemm(dict(block_m=128, block_n=128, stages=3), m=512)
    lowered = call.lower(*args, target=SM90A)
    assert "jt::wgmma_wait<1>();" in lowered.cuda_source()   # the first plan
    _compiles_asynchronous(call, args)
    lowered.compile()
    # What runs waits for each iteration's own wgmmas, which ptxas keeps asynchronous.
    source = lowered.cuda_source()
    assert "jt::wgmma_wait<0>();" in source and "jt::wgmma_wait<1>();" not in source


def test_the_first_plan_of_that_ring_is_serialized_by_ptxas(monkeypatch):
    monkeypatch.setenv("JTILE_TMA_STORE", "0")   # the thread-written epilogue is what ptxas serializes
    call, args = _gemm(dict(block_m=128, block_n=128, stages=3), m=512)
    lowered = call.lower(*args, target=SM90A)
    _, generated = plan_and_generate(lowered._kernel, SM90A)
    assert WGMMA_SERIALIZED in compile_generated(generated, SM90A).log


def test_a_short_ring_stays_rolled_and_asynchronous():
    # examples/gemm.py's own shapes: K = 160 is five iterations of 32. nvcc unrolled that loop
    # whole, which put accumulator reads on divergent paths, and ptxas serialized every wgmma
    # (C7519) under either wait plan.
    kernel = functools.partial(gemm.matmul_kernel, block_m=128, block_n=128, block_k=32,
                               stages=3, threads=128, trans_a=False, trans_b=False)
    f16 = jnp.float16
    call = jtile.pallas_like(kernel, out_shape=S((256, 192), f16), name="matmul")
    lowered = _compiles_asynchronous(call, (S((256, 160), f16), S((160, 192), f16)))
    assert re.search(r"#pragma unroll 1\n *for \(int k = 0; k < 5; \+\+k\)", lowered.cuda_source())


@pytest.mark.parametrize("d,causal,stages", [
    (64, False, 2), (64, True, 2), (128, False, 2), (128, True, 2), (128, False, 3),
    (128, True, 3),
])
def test_attention_wgmmas_stay_asynchronous(d, causal, stages):
    shape = S((4, 4096, 16, d), jnp.float16)
    call = jtile.pallas_like(functools.partial(
        fa.flash_fwd_kernel, causal=causal, block_m=128, block_n=128, threads=256,
        stages=stages), name="flash")
    _compiles_asynchronous(call, (shape, shape, shape))
