"""The SASS of the sm_90a GEMM and attention kernels: the instructions the Hopper path is for
(HGMMA, UTMALDG, mbarrier SYNCS), no local-memory spills, and register-A wgmmas issued back to
back behind a single fence. Read with cuobjdump from the test extras; no GPU needed."""

import functools

import jax
import jax.numpy as jnp
import pytest

import jtile
from examples import flash_attention as fa
from examples import gemm
from tests.sass import sass_counts

S = jax.ShapeDtypeStruct


def test_hopper_gemm_sass():
    kernel = functools.partial(gemm.matmul_kernel, block_m=128, block_n=256, block_k=64,
                               stages=4, threads=256, trans_a=False, trans_b=False)
    call = jtile.pallas_like(kernel, out_shape=S((4096, 4096), jnp.float16), name="matmul")
    compiled = call.lower(S((4096, 4096), jnp.float16), S((4096, 4096), jnp.float16),
                          target="sm_90a").compile()
    ops = sass_counts(compiled.cubin)
    assert ops["HGMMA"] >= 4 and ops["UTMALDG"] >= 3 and ops["SYNCS.PHASECHK"] >= 2
    assert ops["HMMA"] == 0 and ops["LDL"] == 0 and ops["STL"] == 0


@pytest.mark.parametrize("d", [64, 128])
def test_hopper_attention_sass(d):
    kernel = functools.partial(fa.flash_fwd_kernel, block_m=128, block_n=128, stages=2,
                               threads=256, causal=False)
    x = S((4, 4096, 16, d), jnp.float16)
    compiled = jtile.pallas_like(kernel, name="fa").lower(x, x, x, target="sm_90a").compile()
    ops = sass_counts(compiled.cubin)
    assert ops["HGMMA"] == d // 16 + 128 // 16 and ops["LDL"] == 0 and ops["STL"] == 0
    # One fence per gemm: Q @ K^T from shared memory, P @ V with P in registers.
    assert ops["WARPGROUP.ARRIVE"] == 2
