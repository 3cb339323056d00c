"""The SASS of the sm_90a GEMM and attention kernels: the instructions the Hopper path is for
(HGMMA, UTMALDG, mbarrier SYNCS), no local-memory spills, and register-A wgmmas issued back to
back behind a single fence. Read with cuobjdump from the test extras; no GPU needed."""

import collections
import functools
import importlib.util
import os
import pathlib
import re
import subprocess

import jax
import jax.numpy as jnp
import pytest

import jtile
from examples import flash_attention as fa
from examples import gemm

S = jax.ShapeDtypeStruct


def _cuda_bin():
    """The wheels' bin directory holding cuobjdump and the nvdisasm it runs for -sass."""
    spec = importlib.util.find_spec("nvidia")
    for root in (spec.submodule_search_locations or []) if spec else []:
        folder = pathlib.Path(root) / "cu13" / "bin"
        if (folder / "cuobjdump").is_file() and (folder / "nvdisasm").is_file():
            return folder
    pytest.skip("cuobjdump / nvdisasm are not installed (pip install -e '.[test]' brings them)")


def _sass_counts(cubin: bytes, tmp_path) -> collections.Counter:
    path = tmp_path / "kernel.cubin"
    path.write_bytes(cubin)
    folder = _cuda_bin()
    env = dict(os.environ, PATH=f"{folder}{os.pathsep}{os.environ.get('PATH', '')}")
    sass = subprocess.run([str(folder / "cuobjdump"), "-sass", str(path)], capture_output=True,
                          text=True, check=True, env=env).stdout
    return collections.Counter(re.findall(
        r"\b(HGMMA|HMMA|UTMALDG|LDL|STL|WARPGROUP\.ARRIVE|SYNCS\.PHASECHK)\b", sass))


def test_hopper_gemm_sass(tmp_path):
    kernel = functools.partial(gemm.matmul_kernel, block_m=128, block_n=256, block_k=64,
                               stages=4, threads=256, trans_a=False, trans_b=False)
    call = jtile.pallas_like(kernel, out_shape=S((4096, 4096), jnp.float16), name="matmul")
    compiled = call.lower(S((4096, 4096), jnp.float16), S((4096, 4096), jnp.float16),
                          target="sm_90a").compile()
    ops = _sass_counts(compiled.cubin, tmp_path)
    assert ops["HGMMA"] >= 4 and ops["UTMALDG"] >= 3 and ops["SYNCS.PHASECHK"] >= 2
    assert ops["HMMA"] == 0 and ops["LDL"] == 0 and ops["STL"] == 0


@pytest.mark.parametrize("d", [64, 128])
def test_hopper_attention_sass(tmp_path, d):
    kernel = functools.partial(fa.flash_fwd_kernel, block_m=128, block_n=128, stages=2,
                               threads=256, causal=False)
    x = S((4, 4096, 16, d), jnp.float16)
    compiled = jtile.pallas_like(kernel, name="fa").lower(x, x, x, target="sm_90a").compile()
    ops = _sass_counts(compiled.cubin, tmp_path)
    assert ops["HGMMA"] == d // 16 + 128 // 16 and ops["LDL"] == 0 and ops["STL"] == 0
    # One fence per gemm: Q @ K^T from shared memory, P @ V with P in registers.
    assert ops["WARPGROUP.ARRIVE"] == 2
