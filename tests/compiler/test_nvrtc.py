"""Tests for jtile.compiler.nvrtc: cubins for every target family, ptxas reports, errors."""

from __future__ import annotations

import pathlib
import sys

import pytest

from jtile.compiler import compile_cuda, nvcc, nvrtc, select_backend
from jtile.compiler.ptxas_report import parse_ptxas_report
from jtile.compiler.target import parse_target
from jtile.errors import JtileCompileError

pytestmark = pytest.mark.skipif(
    not nvrtc.available(), reason="NVRTC or the CUDA headers are not installed"
)

ELF_MAGIC = b"\x7fELF"

MIXED_PRECISION = r"""
#include <cuda_fp16.h>
#include <cuda_bf16.h>

extern "C" __global__ void scale_mixed(const half* x, __nv_bfloat16* y, float alpha, int n) {
  __shared__ float tile_smem[128];
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  tile_smem[threadIdx.x] = i < n ? __half2float(x[i]) : 0.0f;
  __syncthreads();
  if (i < n) y[i] = __float2bfloat16(alpha * tile_smem[blockDim.x - 1 - threadIdx.x]);
}
"""


@pytest.mark.parametrize("arch", ["sm_80", "sm_90a", "sm_100a"])
def test_compiles_half_and_bf16_to_cubin(arch):
    binary = nvrtc.compile(MIXED_PRECISION, parse_target(arch), "scale_mixed")
    assert binary.cubin.startswith(ELF_MAGIC)
    assert binary.registers > 0
    assert binary.static_shared_memory_bytes == 128 * 4
    assert binary.spill_bytes == 0
    assert binary.target.arch == arch
    assert binary.compiler.startswith("nvrtc 13.")
    assert binary.cached is False
    assert f"for '{arch}'" in binary.log


def test_repeated_compile_still_reports_resources():
    # On a machine with a driver, NVRTC's own cache would answer the second compile with an
    # empty log (no ptxas report) unless jtile turns it off.
    target = parse_target("sm_90a")
    first = nvrtc.compile(MIXED_PRECISION, target, "scale_mixed")
    second = nvrtc.compile(MIXED_PRECISION, target, "scale_mixed")
    assert second.registers == first.registers > 0
    assert second.cubin == first.cubin


def test_version_and_identity():
    major, minor = nvrtc.version()
    assert major >= 12 and minor >= 0
    identity = nvrtc.identity()
    # The key names the library file by size and time, so it is computed without loading it.
    assert identity.startswith("nvrtc lib=") and " size=" in identity and " mtime=" in identity


def test_caller_include_dirs_and_options(tmp_path):
    (tmp_path / "jtile_test.cuh").write_text(
        "#pragma once\n__device__ inline int twice(int v) { return 2 * v; }\n"
    )
    source = '#include "jtile_test.cuh"\nextern "C" __global__ void k(int* p) { p[0] = twice(SCALE); }\n'
    binary = nvrtc.compile(
        source,
        parse_target("sm_90a"),
        "k",
        include_dirs=[str(tmp_path)],
        options=["-DSCALE=3"],
    )
    assert binary.cubin.startswith(ELF_MAGIC)


def test_syntax_error_shows_kernel_log_and_line():
    source = 'extern "C" __global__ void broken(float* p) {\n  float v = p[0]\n  p[1] = v;\n}\n'
    with pytest.raises(JtileCompileError) as info:
        nvrtc.compile(source, parse_target("sm_80"), "broken")
    message = str(info.value)
    assert message.startswith("broken: nvrtc")
    assert "broken.cu(3): error" in message
    # The offending line is quoted with its number and a marker.
    assert ">" in message and "3 |   p[1] = v;" in message
    assert "float v = p[0]" in message


def test_invalid_option_is_a_compile_error():
    with pytest.raises(JtileCompileError, match="NVRTC_ERROR_INVALID_OPTION"):
        nvrtc.compile(
            'extern "C" __global__ void k() {}',
            parse_target("sm_80"),
            "k",
            options=["--no-such-flag"],
        )


def test_missing_kernel_name_is_reported():
    with pytest.raises(
        JtileCompileError, match=r"no entry function named 'other'.*entries: k"
    ):
        nvrtc.compile(
            'extern "C" __global__ void k(int* p) { p[0] = 1; }',
            parse_target("sm_80"),
            "other",
        )


def test_mangled_kernel_is_found():
    source = "__global__ void k(int* p) { p[0] = 1; }\n"
    binary = nvrtc.compile(source, parse_target("sm_80"), "k")
    assert binary.registers > 0


def test_parse_ptxas_report_reads_every_field():
    log = (
        "ptxas info    : 0 bytes gmem\n"
        "ptxas info    : Compiling entry function 'gemm' for 'sm_90a'\n"
        "ptxas info    : Function properties for gemm\n"
        "ptxas         .     48 bytes stack frame, 40 bytes spill stores, 24 bytes spill loads\n"
        "ptxas info    : Used 168 registers, used 1 barriers, 16384 bytes smem\n"
        "ptxas info    : Compiling entry function 'add' for 'sm_90a'\n"
        "ptxas info    : Used 8 registers, 380 bytes cmem[0]\n"
    )
    report = parse_ptxas_report(log)
    assert report["gemm"].registers == 168
    assert report["gemm"].spill_bytes == 64
    assert report["gemm"].static_shared_memory_bytes == 16384
    assert report["add"].registers == 8
    assert report["add"].static_shared_memory_bytes == 0


def test_library_and_headers_are_the_ones_cuda_pathfinder_finds():
    pathfinder = pytest.importorskip("cuda.pathfinder")
    library = pathfinder.load_nvidia_dynamic_lib("nvrtc").abs_path
    assert nvrtc.find_library() == library
    assert pathlib.Path(library).is_file() and "libnvrtc" in pathlib.Path(library).name
    assert f" lib={library} " in nvrtc.identity()
    include_dir = pathlib.Path(nvrtc.find_include_dir())
    assert (include_dir / "cuda_fp16.h").is_file() and (include_dir / "cuda_bf16.h").is_file()
    found = pathfinder.find_nvidia_header_directory("cudart")
    if found and (pathlib.Path(found) / "cuda_fp16.h").is_file():
        assert include_dir == pathlib.Path(found)


def test_the_ctypes_layer_is_gone():
    text = pathlib.Path(nvrtc.__file__).read_text()
    assert "import ctypes" not in text
    assert "from cuda.bindings import nvrtc" in text


@pytest.fixture
def without_cuda_bindings(monkeypatch):
    """Makes ``from cuda.bindings import nvrtc`` fail, as on a machine without cuda-bindings."""
    import cuda.bindings

    monkeypatch.delattr(cuda.bindings, "nvrtc", raising=False)
    monkeypatch.setitem(sys.modules, "cuda.bindings.nvrtc", None)
    monkeypatch.delenv("JTILE_COMPILER", raising=False)
    nvrtc._bindings.cache_clear()
    yield
    nvrtc._bindings.cache_clear()


def test_without_cuda_bindings_nvrtc_is_refused_with_the_fix(without_cuda_bindings):
    assert nvrtc.available() is False
    with pytest.raises(JtileCompileError) as info:
        nvrtc.compile('extern "C" __global__ void k() {}', parse_target("sm_80"), "k")
    message = str(info.value)
    assert "cuda-bindings cannot call it" in message
    assert "'cuda-bindings>=13,<14'" in message and "JTILE_COMPILER=nvcc" in message


def test_without_cuda_bindings_auto_falls_back_to_nvcc(without_cuda_bindings):
    if not nvcc.available():
        pytest.skip("nvcc is not installed")
    assert select_backend() is nvcc
    binary = compile_cuda(MIXED_PRECISION, parse_target("sm_90a"), "scale_mixed")
    assert binary.compiler.startswith("nvcc")
    assert binary.cubin.startswith(ELF_MAGIC)
    assert binary.static_shared_memory_bytes == 128 * 4


def test_bindings_come_back_after_the_fallback():
    # The cached lookup is per process; clearing it finds the real bindings again.
    nvrtc._bindings.cache_clear()
    assert nvrtc.available() is True
    assert nvrtc.describe().startswith("nvrtc 13.")


def test_a_tile_too_wide_for_the_blocks_registers_says_why():
    # 192 x 256 on three consumer warpgroups: each wgmma needs a 64 x 256 accumulator (128
    # registers) beside its operands, and 512 threads leave ptxas 128 registers a thread.
    import functools

    import jax
    import jax.numpy as jnp

    import jtile
    from examples import gemm

    kernel = functools.partial(gemm.matmul_kernel, block_m=192, block_n=256, block_k=64,
                               stages=3, threads=384, trans_a=False, trans_b=False)
    spec = jax.ShapeDtypeStruct((512, 512), jnp.float16)
    lowered = jtile.pallas_like(kernel, out_shape=spec).lower(spec, spec, target="sm_90a")
    with pytest.raises(JtileCompileError, match=r"(?s)^matmul_kernel: .*Insufficient registers "
                       r".*held this instruction to the block's share of the register "
                       r"file \(65536 / threads"):
        lowered.compile()
