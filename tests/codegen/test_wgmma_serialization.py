"""ptxas keeps the wgmmas of the Hopper kernels asynchronous. When it cannot prove that nothing
touches an accumulator while its wgmma runs, it waits after every wgmma and says so in its
report (C7514 / C7515, "wgmma.mma_async instructions are serialized"): a silent loss of about
a third of the tensor-core throughput that only the compile log shows. No GPU needed."""

import functools

import jax
import jax.numpy as jnp
import pytest

import jtile
from examples import flash_attention as fa
from examples import gemm
from jtile.binding.lowered import compile_generated
from jtile.compiler.target import parse_target

S = jax.ShapeDtypeStruct
SERIALIZED = "wgmma.mma_async instructions are serialized"


def _ptxas_report(call, *args) -> str:
    target = parse_target("sm_90a")
    generated = call.lower(*args, target=target)._require_generated()
    return compile_generated(generated, target).log


@pytest.mark.parametrize("config", [
    dict(block_m=128, block_n=256, stages=4),
    dict(block_m=256, block_n=128, stages=4),
    dict(block_m=128, block_n=256, stages=4, cluster_n=2),   # A multicast in clusters of 2
    dict(block_m=256, block_n=128, stages=4, cluster_n=2),
    pytest.param(dict(block_m=128, block_n=128, stages=3), marks=pytest.mark.xfail(
        strict=True, reason="with 64 accumulator registers per thread ptxas sees the "
        "epilogue's reads inside the wait_group 1 pipeline and serializes (C7514); wait_group 0 "
        "or no epilogue keeps it asynchronous")),
], ids=str)
def test_gemm_wgmmas_stay_asynchronous(config):
    kernel = functools.partial(gemm.matmul_kernel, block_k=64, threads=256, trans_a=False,
                               trans_b=False, **config)
    f16 = jnp.float16
    call = jtile.pallas_like(kernel, out_shape=S((4096, 4096), f16), name="matmul")
    report = _ptxas_report(call, S((4096, 4096), f16), S((4096, 4096), f16))
    assert SERIALIZED not in report, report


@pytest.mark.parametrize("d,causal,stages", [
    (64, False, 2), (64, True, 2), (128, False, 2), (128, True, 2), (128, False, 3),
    pytest.param(128, True, 3, marks=pytest.mark.xfail(
        strict=True, reason="the deferred P@V wait of a causal 3-stage ring lets ptxas see "
        "accumulator writes inside a wgmma stage (C7515)")),
])
def test_attention_wgmmas_stay_asynchronous(d, causal, stages):
    shape = S((4, 4096, 16, d), jnp.float16)
    call = jtile.pallas_like(functools.partial(
        fa.flash_fwd_kernel, causal=causal, block_m=128, block_n=128, threads=256,
        stages=stages), name="flash")
    report = _ptxas_report(call, shape, shape, shape)
    assert SERIALIZED not in report, report
