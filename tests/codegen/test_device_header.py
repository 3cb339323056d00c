"""The device header compiles for every target and assembles into real instructions.

A smoke kernel calls every jt:: function once, with its results flowing to
global memory so nothing is dead code. It is compiled with nvcc for sm_80,
sm_90a and sm_100a and with NVRTC (through ctypes, as generated code is at run
time); the sm_90a SASS must then hold the tensor core, ldmatrix, cp.async,
mbarrier and shuffle instructions the inline PTX stands for. CPU only.
"""

import concurrent.futures
import ctypes
import importlib.util
import os
import pathlib
import shutil
import subprocess

import pytest

INCLUDE_DIR = pathlib.Path(__file__).resolve().parents[2] / "jtile" / "codegen" / "include"
NVCC_TARGETS = {
    "sm_80": "arch=compute_80,code=sm_80",
    "sm_90a": "arch=compute_90a,code=sm_90a",
    "sm_100a": "arch=compute_100a,code=sm_100a",
}
# SASS opcodes that prove each group of inline PTX assembled on sm_90a.
SM90A_SASS = {
    "HMMA": "mma.sync",
    "LDSM": "ldmatrix",
    "STSM": "stmatrix",
    "LDGSTS": "cp.async",
    "SYNCS": "mbarrier",
    "UBLKCP": "cp.async.bulk",
    "FENCE.VIEW.ASYNC.S": "fence.proxy.async",
    "SHFL": "shfl.sync",
}

SMOKE_KERNEL = r"""
#include <jtile/device.cuh>

// 128 threads. Every jt:: function is called once and its result reaches `out`.
extern "C" __global__ void __launch_bounds__(128)
header_smoke(const float* __restrict__ x, const jt::half* __restrict__ xh,
             const jt::bfloat16* __restrict__ xb, float* __restrict__ out,
             int* __restrict__ iout, unsigned* __restrict__ uout,
             unsigned long long* __restrict__ ullout, double* __restrict__ dout,
             jt::half* __restrict__ hout, jt::bfloat16* __restrict__ bout) {
  __shared__ alignas(128) jt::half a_smem[128 * 8];
  __shared__ alignas(128) jt::half b_smem[128 * 8];
  __shared__ alignas(128) float f_smem[128 * 4];
  const int tid = threadIdx.x;
  const int lane = jt::lane_id();
  const int warp = jt::warp_id();

  // --- cp.async ---
  jt::cp_async_16(&a_smem[tid * 8], xh + tid * 8);
  jt::cp_async_16_zfill(&b_smem[tid * 8], xh + 1024 + tid * 8, tid < 100);
  jt::cp_async_8(&f_smem[tid * 2], x + tid * 2);
  jt::cp_async_commit();
  jt::cp_async_4(&f_smem[256 + tid], x + 256 + tid);
  jt::cp_async_commit();
  jt::cp_async_wait<1>();
  jt::cp_async_wait_all();
  __syncthreads();

  // --- ldmatrix + mma.sync ---
  const jt::half* tile_a = a_smem + warp * 256;  // 16x16 row-major per warp
  const jt::half* tile_b = b_smem + warp * 256;
  unsigned a[4], b2[2], b1[1], at[4], bt2[2], bt1[1];
  jt::ldmatrix_x4(a, tile_a + (lane % 16) * 16 + (lane / 16) * 8);
  jt::ldmatrix_x2(b2, tile_b + (lane % 16) * 16);
  jt::ldmatrix_x1(b1, tile_b + (lane % 8) * 16 + 8);
  jt::ldmatrix_x4_trans(at, tile_b + (lane % 16) * 16 + (lane / 16) * 8);
  jt::ldmatrix_x2_trans(bt2, tile_a + (lane % 16) * 16);
  jt::ldmatrix_x1_trans(bt1, tile_a + (lane % 8) * 16 + 8);
  float acc[4] = {0.f, 0.f, 0.f, 0.f};
  jt::mma_m16n8k16_f16f32(acc, a, b2);
  const unsigned b_mix[2] = {bt2[0] ^ b1[0], bt2[1] ^ bt1[0]};
  jt::mma_m16n8k16_bf16f32(acc, at, b_mix);
  const unsigned p[4] = {jt::pack_half2(acc[0], acc[1]), jt::pack_half2(acc[2], acc[3]),
                         jt::pack_bfloat162(acc[0], acc[2]), jt::pack_bfloat162(acc[1], acc[3])};
  jt::mma_m16n8k16_f16f32(acc, p, b2);
  const unsigned ta[4] = {jt::float_to_tf32(f_smem[tid]), jt::float_to_tf32(f_smem[tid + 128]),
                          jt::float_to_tf32(f_smem[tid + 256]), jt::float_to_tf32(f_smem[tid + 384])};
  const unsigned tb[2] = {jt::float_to_tf32(acc[0]), jt::float_to_tf32(acc[1])};
  jt::mma_m16n8k8_tf32f32(acc, ta, tb);

  // --- math ---
  float f = x[tid] + acc[0] + acc[1] + acc[2] + acc[3];
  f = jt::exp(f) + jt::exp2(f) + jt::log(jt::abs(f)) + jt::log2(f) + jt::sqrt(f) + jt::rsqrt(f);
  f = jt::tanh(f) + jt::sigmoid(f) + jt::max(f, 1.f) + jt::min(f, 2.f) + jt::fast_exp2(f);
  double d = static_cast<double>(x[tid + 1]);
  d = jt::exp(d) + jt::exp2(d) + jt::log(d) + jt::log2(d) + jt::sqrt(d) + jt::rsqrt(d) +
      jt::abs(d) + jt::tanh(d) + jt::sigmoid(d) + jt::max(d, 1.0) + jt::min(d, 2.0);
  jt::half h = xh[tid];
  h = jt::exp(h) + jt::exp2(h) + jt::log(h) + jt::log2(h) + jt::sqrt(h) + jt::rsqrt(h) +
      jt::abs(h) + jt::tanh(h) + jt::sigmoid(h) + jt::max(h, xh[tid + 1]) + jt::min(h, xh[tid + 2]);
  jt::bfloat16 bf = xb[tid];
  bf = jt::exp(bf) + jt::exp2(bf) + jt::log(bf) + jt::log2(bf) + jt::sqrt(bf) + jt::rsqrt(bf) +
       jt::abs(bf) + jt::tanh(bf) + jt::sigmoid(bf) + jt::max(bf, xb[tid + 1]) + jt::min(bf, xb[tid + 2]);
  int i = jt::cast<int>(f);  // truncates
  i = jt::max(i, tid) + jt::min(i, 7) + jt::abs(i);
  long long ll = jt::cast<long long>(d);
  ll = jt::max(ll, 3LL) + jt::min(ll, -3LL) + jt::abs(ll);

  // --- casts and limits ---
  jt::fp8_e4m3 e4 = jt::cast<jt::fp8_e4m3>(f);
  jt::fp8_e5m2 e5 = jt::cast<jt::fp8_e5m2>(h);
  f += jt::cast<float>(e4) + jt::cast<float>(e5) + jt::cast<float>(jt::cast<jt::half>(bf)) +
       jt::cast<float>(jt::cast<jt::bfloat16>(e4)) + jt::cast<float>(jt::cast<bool>(h)) +
       jt::cast<float>(jt::cast<signed char>(ll)) + jt::cast<float>(jt::cast<unsigned char>(i)) +
       jt::cast<float>(jt::cast<short>(d)) + jt::cast<float>(jt::cast<unsigned long long>(i));
  d += jt::cast<double>(jt::cast<jt::half>(jt::cast<unsigned>(i))) + jt::cast<double>(jt::cast<jt::fp8_e4m3>(ll));
  f += jt::infinity<float>() * 0.f + jt::max_value<float>() * 1e-38f + jt::min_value<float>() * 1e-38f;
  d += jt::infinity<double>() * 0.0 + jt::max_value<double>() * 1e-308 + jt::min_value<double>() * 1e-308;
  h = h + jt::infinity<jt::half>() + jt::max_value<jt::half>() + jt::min_value<jt::half>();
  bf = bf + jt::infinity<jt::bfloat16>() + jt::max_value<jt::bfloat16>() + jt::min_value<jt::bfloat16>();
  i += jt::infinity<int>() + jt::max_value<int>() + jt::min_value<int>();
  unsigned u = jt::infinity<unsigned>() + jt::max_value<unsigned>() + jt::min_value<unsigned>() + tid;
  ll += jt::infinity<long long>() + jt::max_value<long long>() + jt::min_value<long long>();

  // --- warp shuffles ---
  f = jt::shfl_xor(f, 16);
  d = jt::shfl_xor(d, 8);
  i = jt::shfl_xor(i, 4);
  u = jt::shfl_xor(u, 2);
  h = jt::shfl_xor(h, 1);
  bf = jt::shfl_xor(bf, 1);

  // --- vectors ---
  jt::vec<float, 4> v4 = reinterpret_cast<const jt::vec<float, 4>*>(f_smem)[tid];
  jt::vec<jt::half, 8> h8 = reinterpret_cast<const jt::vec<jt::half, 8>*>(a_smem)[tid];
  f += v4.v[0] + v4.v[3] + jt::cast<float>(h8.v[7]);

#if __CUDA_ARCH__ >= 900
  // --- mbarrier + bulk copy + stmatrix ---
  __shared__ alignas(8) unsigned long long full_bar;
  __shared__ alignas(8) unsigned long long done_bar;
  __shared__ alignas(128) float bulk_smem[128];
  if (tid == 0) {
    jt::mbarrier_init(&full_bar, 1);
    jt::mbarrier_init(&done_bar, 128);
    jt::fence_barrier_init();
  }
  __syncthreads();
  if (tid == 0) {
    jt::mbarrier_expect_tx(&full_bar, 256);
    jt::mbarrier_arrive_expect_tx(&full_bar, 256);
    jt::cp_async_bulk_g2s(bulk_smem, x + 512, 512, &full_bar);
  }
  jt::mbarrier_wait_parity(&full_bar, 0);
  f += bulk_smem[127 - tid];
  jt::mbarrier_arrive(&done_bar);
  while (!jt::mbarrier_try_wait_parity(&done_bar, 0)) {
  }
  const unsigned s1[1] = {p[0]};
  const unsigned s2[2] = {p[1], p[2]};
  jt::stmatrix_x4(&a_smem[warp * 256 + (lane % 16) * 16 + (lane / 16) * 8], p);
  jt::stmatrix_x4_trans(&b_smem[warp * 256 + (lane % 16) * 16 + (lane / 16) * 8], p);
  jt::stmatrix_x2(&a_smem[warp * 256 + (lane % 16) * 16], s2);
  jt::stmatrix_x1(&b_smem[warp * 256 + (lane % 8) * 16 + 8], s1);
  jt::fence_proxy_async_shared();
  __syncthreads();
  h = h + a_smem[1023 - tid] + b_smem[tid];
#endif

  // --- atomics ---
  out[tid] = f;
  jt::atomic_add(&out[128], f);
  jt::atomic_max(&out[129], f);
  jt::atomic_min(&out[130], f);
  jt::atomic_add(&dout[0], d);
  jt::atomic_add(&iout[0], i);
  jt::atomic_max(&iout[1], i);
  jt::atomic_min(&iout[2], i);
  jt::atomic_add(&uout[0], u);
  jt::atomic_add(&ullout[0], static_cast<unsigned long long>(ll));
  jt::atomic_add(&hout[0], h);
  jt::atomic_add(&bout[0], bf);
}
"""


def _cuda_wheel_dir():
    """site-packages/nvidia/cu13 of the NVIDIA pip wheels, or None."""
    spec = importlib.util.find_spec("nvidia")
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        path = pathlib.Path(root) / "cu13"
        if path.is_dir():
            return path
    return None


def _include_flags():
    flags = [f"-I{INCLUDE_DIR}"]
    wheel = _cuda_wheel_dir()
    if wheel is not None and (wheel / "include" / "cuda_fp16.h").is_file():
        flags.append(f"-I{wheel / 'include'}")
    return flags


def _cuobjdump_env():
    """Environment with cuobjdump and nvdisasm on PATH, or None if either is missing."""
    wheel = _cuda_wheel_dir()
    path = os.environ.get("PATH", "")
    if wheel is not None:
        path = f"{wheel / 'bin'}{os.pathsep}{path}"
    if shutil.which("cuobjdump", path=path) and shutil.which("nvdisasm", path=path):
        return {**os.environ, "PATH": path}
    return None


def _sass(cubin: pathlib.Path) -> str:
    env = _cuobjdump_env()
    if env is None:
        pytest.skip("cuobjdump/nvdisasm not found (pip install nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm)")
    return subprocess.run(
        ["cuobjdump", "-sass", str(cubin)], env=env, check=True, capture_output=True, text=True
    ).stdout


def _nvrtc_compile(source: str, arch: str):
    """Compiles with NVRTC through ctypes. Returns (cubin bytes or None, log)."""
    wheel = _cuda_wheel_dir()
    lib_path = wheel / "lib" / "libnvrtc.so.13" if wheel is not None else None
    if lib_path is None or not lib_path.is_file():
        pytest.skip("libnvrtc.so.13 not found (pip install nvidia-cuda-nvrtc)")
    nvrtc = ctypes.CDLL(str(lib_path))
    prog = ctypes.c_void_p()
    assert nvrtc.nvrtcCreateProgram(ctypes.byref(prog), source.encode(), b"smoke.cu", 0, None, None) == 0
    opts = [f"--gpu-architecture={arch}", "-std=c++17", *_include_flags()]
    status = nvrtc.nvrtcCompileProgram(prog, len(opts), (ctypes.c_char_p * len(opts))(*[o.encode() for o in opts]))
    size = ctypes.c_size_t()
    nvrtc.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
    log = ctypes.create_string_buffer(size.value)
    nvrtc.nvrtcGetProgramLog(prog, log)
    cubin = None
    if status == 0:
        nvrtc.nvrtcGetCUBINSize(prog, ctypes.byref(size))
        buf = ctypes.create_string_buffer(size.value)
        assert nvrtc.nvrtcGetCUBIN(prog, buf) == 0
        cubin = buf.raw
    nvrtc.nvrtcDestroyProgram(ctypes.byref(prog))
    return cubin, log.value.decode(errors="replace")


@pytest.fixture(scope="module")
def nvcc_cubins(tmp_path_factory):
    """The smoke kernel compiled by nvcc for each target, in parallel."""
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("nvcc not on PATH")
    tmp = tmp_path_factory.mktemp("device_header")
    source = tmp / "smoke.cu"
    source.write_text(SMOKE_KERNEL)

    def compile_one(arch):
        cubin = tmp / f"smoke_{arch}.cubin"
        cmd = [nvcc, "-cubin", "-std=c++17", *_include_flags(), f"-gencode={NVCC_TARGETS[arch]}",
               "-o", str(cubin), str(source)]
        result = subprocess.run(cmd, capture_output=True, text=True)
        assert result.returncode == 0, f"nvcc for {arch} failed:\n{result.stderr}"
        return arch, cubin

    with concurrent.futures.ThreadPoolExecutor(len(NVCC_TARGETS)) as pool:
        return dict(pool.map(compile_one, NVCC_TARGETS))


def test_nvcc_compiles_every_target(nvcc_cubins):
    for arch, cubin in nvcc_cubins.items():
        assert cubin.stat().st_size > 0, arch


def test_sm90a_sass_holds_every_instruction_family(nvcc_cubins):
    sass = _sass(nvcc_cubins["sm_90a"])
    missing = {op: ptx for op, ptx in SM90A_SASS.items() if op not in sass}
    assert not missing, f"sm_90a SASS lacks {missing}"


def test_sm80_sass_holds_mma_ldmatrix_cp_async(nvcc_cubins):
    sass = _sass(nvcc_cubins["sm_80"])
    for op in ("HMMA.16816.F32", "HMMA.16816.F32.BF16", "HMMA.1688.F32.TF32", "LDSM", "LDGSTS", "SHFL"):
        assert op in sass, op


@pytest.mark.parametrize("arch", ["sm_80", "sm_90a", "sm_100a"])
def test_nvrtc_compiles(arch, tmp_path):
    cubin, log = _nvrtc_compile(SMOKE_KERNEL, arch)
    assert cubin, f"NVRTC for {arch} failed:\n{log}"
    if arch == "sm_90a":
        path = tmp_path / "smoke.cubin"
        path.write_bytes(cubin)
        sass = _sass(path)
        assert all(op in sass for op in SM90A_SASS), sass[:2000]


def test_nvrtc_sm75_compiles_the_portable_subset():
    kernel = r"""
#include <jtile/device.cuh>
extern "C" __global__ void k(const jt::half* x, float* out) {
  __shared__ alignas(16) jt::half s[32 * 8];
  s[threadIdx.x] = x[threadIdx.x];
  __syncthreads();
  unsigned r[4];
  jt::ldmatrix_x4(r, &s[(jt::lane_id() % 16) * 8]);
  out[threadIdx.x] = jt::shfl_xor(jt::exp(jt::cast<float>(r[0] ^ r[3])), 1);
}
"""
    cubin, log = _nvrtc_compile(kernel, "sm_75")
    assert cubin, log


@pytest.mark.parametrize(
    "arch, call",
    [
        ("sm_75", "float d[4] = {}; unsigned a[4] = {}, b[2] = {}; jt::mma_m16n8k16_f16f32(d, a, b);"),
        ("sm_75", "jt::cp_async_commit();"),
        ("sm_80", "__shared__ unsigned long long bar; jt::mbarrier_init(&bar, 1);"),
        ("sm_80", "jt::fence_proxy_async_shared();"),
    ],
)
def test_missing_arch_feature_is_a_compile_error(arch, call):
    kernel = f'#include <jtile/device.cuh>\nextern "C" __global__ void k() {{ {call} }}\n'
    cubin, log = _nvrtc_compile(kernel, arch)
    assert cubin is None
    assert 'namespace "jt" has no member' in log, log
