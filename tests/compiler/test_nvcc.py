"""Tests for jtile.compiler.nvcc, the fallback compiler, and for choosing between compilers."""

from __future__ import annotations

import pytest

from jtile import compiler
from jtile.compiler import nvcc, nvrtc
from jtile.compiler.target import parse_target
from jtile.errors import JtileCompileError

needs_nvcc = pytest.mark.skipif(
    not nvcc.available(), reason="nvcc is not on PATH or in /usr/local/cuda/bin"
)

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


@needs_nvcc
@pytest.mark.parametrize("arch", ["sm_80", "sm_90a", "sm_100a"])
def test_compiles_half_and_bf16_to_cubin(arch):
    binary = nvcc.compile(MIXED_PRECISION, parse_target(arch), "scale_mixed")
    assert binary.cubin.startswith(b"\x7fELF")
    assert binary.registers > 0
    assert binary.static_shared_memory_bytes == 128 * 4
    assert binary.compiler.startswith("nvcc ")
    assert binary.cached is False


@needs_nvcc
def test_syntax_error_shows_line_without_temp_paths():
    source = 'extern "C" __global__ void broken(float* p) {\n  float v = p[0]\n  p[1] = v;\n}\n'
    with pytest.raises(JtileCompileError) as info:
        nvcc.compile(source, parse_target("sm_90a"), "broken")
    message = str(info.value)
    assert message.startswith("broken: nvcc")
    assert "broken.cu(3): error" in message
    assert "> 3 |   p[1] = v;" in message
    assert "jtile-nvcc-" not in message


@needs_nvcc
def test_version():
    major, _ = nvcc.version()
    assert major >= 12
    assert nvcc.identity().startswith("nvcc ")


def _backend_availability(monkeypatch, *, has_nvrtc, has_nvcc):
    monkeypatch.setattr(nvrtc, "available", lambda: has_nvrtc)
    monkeypatch.setattr(nvcc, "available", lambda: has_nvcc)


@pytest.mark.parametrize(
    "choice,has_nvrtc,has_nvcc,expected",
    [
        ("auto", True, True, "nvrtc"),
        ("auto", False, True, "nvcc"),
        ("nvcc", True, True, "nvcc"),
        ("nvrtc", True, False, "nvrtc"),
    ],
)
def test_select_backend(monkeypatch, choice, has_nvrtc, has_nvcc, expected):
    monkeypatch.setenv("JTILE_COMPILER", choice)
    _backend_availability(monkeypatch, has_nvrtc=has_nvrtc, has_nvcc=has_nvcc)
    assert compiler.select_backend().__name__ == f"jtile.compiler.{expected}"


@pytest.mark.parametrize("choice", ["auto", "nvrtc", "nvcc"])
def test_no_compiler_says_what_to_install(monkeypatch, choice):
    monkeypatch.setenv("JTILE_COMPILER", choice)
    _backend_availability(monkeypatch, has_nvrtc=False, has_nvcc=False)
    with pytest.raises(
        JtileCompileError, match="pip install nvidia-cuda-nvrtc nvidia-cuda-runtime"
    ):
        compiler.select_backend()


@needs_nvcc
def test_compile_cuda_with_nvcc(monkeypatch, tmp_path):
    monkeypatch.setenv("JTILE_COMPILER", "nvcc")
    monkeypatch.setenv("JTILE_CACHE_DIR", str(tmp_path))
    binary = compiler.compile_cuda(
        MIXED_PRECISION, parse_target("sm_90a"), "scale_mixed"
    )
    assert binary.compiler.startswith("nvcc ")
