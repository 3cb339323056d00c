"""The TileLang corpus, misc group: GEMV, chunk-local cumsum, FP8 GEMM, FP4-dequantising GEMM
and NHWC convolution, each written as TileLang's examples write it (see the family modules).

Every family runs in interpret mode against a NumPy/JAX reference at a small, ragged size,
compiles to a cubin for sm_90a (and sm_80 where it does not need Hopper), and runs compiled at
a realistic size on the GPU machine (`pytest -m gpu`).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jtile
from tests.gpu.compare import assert_close, seed_of
from tests.tilelang import chunk_cumsum, conv2d, gemm_fp4_dequant, gemm_fp8, gemv

S = jax.ShapeDtypeStruct


@pytest.fixture(autouse=True)
def _no_global_switches(monkeypatch):
    for name in ("JTILE_INTERPRET", "JTILE_DEBUG", "JTILE_TARGET"):
        monkeypatch.delenv(name, raising=False)


def _rng(name):
    return np.random.default_rng(seed_of(name))


def _normal(rng, shape, dtype):
    return jnp.asarray(rng.standard_normal(shape, np.float32)).astype(dtype)


def _compiles(kernel, specs, targets):
    for target in targets:
        compiled = jtile.pallas_like(kernel).lower(*specs, target=target).compile()
        assert compiled.cubin[:4] == b"\x7fELF", target


def _specs(*arrays):
    return [S(a.shape, a.dtype) for a in arrays]


# ----------------------------------------------------------------------------- gemv


def _gemv_inputs(N, K, dtype=jnp.float16):
    rng = _rng("gemv")
    return _normal(rng, (K,), dtype), _normal(rng, (N, K), dtype)


GEMV_KERNELS = {
    "tile": lambda N, K: gemv.gemv(N, K, block_N=32, block_K=64),
    "splitk": lambda N, K: gemv.splitk_gemv(N, K, BLOCK_N=8, reduce_threads=16),
    "allreduce": lambda N, K: functools.partial(gemv.allreduce_gemv, BLOCK_N=4,
                                                reduce_threads=32),
}


def test_gemv_interpret():
    a, b = _gemv_inputs(100, 200)
    out = jtile.pallas_like(GEMV_KERNELS["tile"](100, 200), interpret=True)(a, b)
    assert out.shape == (100,) and out.dtype == jnp.float16
    assert_close(out, gemv.reference(a, b), jnp.float16, k=200, name="gemv")


def test_gemv_splitk_interpret():
    a, b = _gemv_inputs(100, 200)
    out = jtile.pallas_like(GEMV_KERNELS["splitk"](100, 200), interpret=True)(a, b)
    assert_close(out, gemv.reference(a, b), jnp.float16, k=200, name="splitk_gemv")


def test_gemv_allreduce_interpret():
    # N and K multiples of the block: the kernel reads without bounds checks, as TileLang's.
    a, b = _gemv_inputs(96, 512)
    out = jtile.pallas_like(GEMV_KERNELS["allreduce"](96, 512), interpret=True)(a, b)
    assert out.shape == (96,) and out.dtype == jnp.float16
    assert_close(out, gemv.reference(a, b), jnp.float16, k=512, name="allreduce_gemv")


@pytest.mark.parametrize("style", sorted(GEMV_KERNELS))
def test_gemv_compiles(style):
    a, b = _gemv_inputs(100, 200)
    _compiles(GEMV_KERNELS[style](100, 200), _specs(a, b), ("sm_90a", "sm_80"))


@pytest.mark.gpu
@pytest.mark.parametrize("style", sorted(GEMV_KERNELS))
def test_gemv_gpu(style):
    N, K = (4000, 4096) if style == "allreduce" else (4000, 4100)
    a, b = _gemv_inputs(N, K)
    out = jax.jit(jtile.pallas_like(GEMV_KERNELS[style](N, K)))(a, b)
    assert_close(out, gemv.reference(a, b), jnp.float16, k=K, name=f"gemv {style}")


# ----------------------------------------------------------------------------- chunk cumsum

CUMSUM_CASES = [  # (head_first, reverse, use_fragment)
    (False, False, False), (False, True, True), (True, True, False), (True, False, True)]


def _cumsum_run(B, S_, H, head_first, reverse, use_fragment, interpret, **options):
    shape = (B, H, S_) if head_first else (B, S_, H)
    g = _normal(_rng("chunk_cumsum"), shape, jnp.float16)
    kernel = chunk_cumsum.chunk_local_cumsum(B, S_, H, chunk_size=64, head_first=head_first,
                                             reverse=reverse, use_fragment=use_fragment,
                                             **options)
    out = jax.jit(jtile.pallas_like(kernel, interpret=interpret))(g)
    assert out.shape == shape and out.dtype == jnp.float32
    want = chunk_cumsum.reference(g, 64, head_first=head_first, reverse=reverse)
    # A float32 sum of up to 64 terms: error grows with the chunk length.
    assert_close(out, want, jnp.float32, k=64, operand_scale=1.0, name="chunk_cumsum")


@pytest.mark.parametrize("head_first,reverse,use_fragment", CUMSUM_CASES)
def test_chunk_cumsum_interpret(head_first, reverse, use_fragment):
    # S = 200: the last chunk of 64 is short (8 positions).
    _cumsum_run(2, 200, 3, head_first, reverse, use_fragment, interpret=True)


@pytest.mark.parametrize("head_first,reverse", [(False, True), (True, False)])
def test_chunk_cumsum_in_a_register_fragment_interpret(head_first, reverse):
    _cumsum_run(2, 200, 3, head_first, reverse, True, interpret=True,
                fragment_scope="local.fragment")


@pytest.mark.parametrize(
    "head_first,reverse,use_fragment,fragment_scope",
    [case + ("shared",) for case in CUMSUM_CASES] + [(False, True, True, "local.fragment"),
                                                     (True, False, True, "local.fragment")])
def test_chunk_cumsum_compiles(head_first, reverse, use_fragment, fragment_scope):
    shape = (2, 3, 200) if head_first else (2, 200, 3)
    kernel = chunk_cumsum.chunk_local_cumsum(2, 200, 3, 64, head_first, reverse,
                                             use_fragment=use_fragment,
                                             fragment_scope=fragment_scope)
    _compiles(kernel, [S(shape, jnp.float16)], ("sm_90a", "sm_80"))


@pytest.mark.gpu
@pytest.mark.parametrize("head_first,reverse,use_fragment", CUMSUM_CASES)
def test_chunk_cumsum_gpu(head_first, reverse, use_fragment):
    _cumsum_run(2, 8250, 16, head_first, reverse, use_fragment, interpret=False)


# ----------------------------------------------------------------------------- fp8 gemm


def _fp8_inputs(M, N, K):
    rng = _rng("gemm_fp8")
    return (_normal(rng, (M, K), jnp.float8_e4m3fn), _normal(rng, (N, K), jnp.float8_e4m3fn))


def _fp8_accumulation_error(a, b):
    """Per-element bound on how far an fp8 tensor-core sum may drift from the exact one.

    Hopper's fp8 wgmma keeps about 14 mantissa bits of its running sum (DeepSeek-V3 report,
    section 3.3.2): each wgmma k-step of 32 may lose up to 2**-13 of the partial sum it leaves.
    The bound adds that loss over the exact partial sums, with a factor 4 of margin.
    """
    a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
    partial = np.zeros((a64.shape[0], b64.shape[0]))
    bound = np.full_like(partial, 1e-6)
    for k0 in range(0, a64.shape[1], 32):
        partial += a64[:, k0:k0 + 32] @ b64[:, k0:k0 + 32].T
        bound += 2.0**-11 * np.abs(partial)
    return bound


def _fp8_check(out, a, b, out_dtype):
    want = gemm_fp8.reference(a, b).astype(np.float64)
    accumulation = _fp8_accumulation_error(a, b)
    got = np.asarray(out, np.float64)
    if out_dtype == "float32":
        assert out.dtype == jnp.float32
        bound = accumulation
    else:
        # TileLang's example stores C in float8_e4m3: 3 mantissa bits, half an ulp is 2**-4
        # of the value, and 2**-10 the smallest subnormal step.
        assert out.dtype == jnp.float8_e4m3fn
        bound = 2.0**-4 * (np.abs(want) + accumulation) + accumulation + 2.0**-10
    error = np.abs(got - want)
    worst = np.unravel_index(np.argmax(error - bound), error.shape)
    assert (error <= bound).all(), \
        f"gemm_fp8 ({out_dtype}): {int((error > bound).sum())} elements past the bound; " \
        f"worst at {worst}: got {got[worst]}, want {want[worst]}, bound {bound[worst]:.3g}"


@pytest.mark.parametrize("out_dtype", ["float32", "float8_e4m3"])
def test_gemm_fp8_interpret(out_dtype):
    M, N, K = 136, 80, 160   # ragged against 64 x 64 x 64 tiles
    a, b = _fp8_inputs(M, N, K)
    kernel = gemm_fp8.matmul(M, N, K, 64, 64, 64, out_dtype=out_dtype, num_stages=2)
    _fp8_check(jtile.pallas_like(kernel, interpret=True)(a, b), a, b, out_dtype)


@pytest.mark.parametrize("out_dtype", ["float32", "float8_e4m3"])
def test_gemm_fp8_compiles(out_dtype):
    a, b = _fp8_inputs(200, 136, 160)
    _compiles(gemm_fp8.matmul(200, 136, 160, 128, 128, 64, out_dtype=out_dtype),
              _specs(a, b), ("sm_90a",))


def test_gemm_fp8_runs_on_cuda_cores_on_sm_80():
    a, b = _fp8_inputs(200, 136, 160)
    call = jtile.pallas_like(gemm_fp8.matmul(200, 136, 160, 128, 128, 64))
    with pytest.warns(jtile.JtilePerformanceWarning, match="CUDA cores.*sm_90a"):
        lowered = call.lower(*_specs(a, b), target="sm_80")
    assert lowered.compile().cubin[:4] == b"\x7fELF"


@pytest.mark.gpu
@pytest.mark.parametrize("out_dtype", ["float32", "float8_e4m3"])
def test_gemm_fp8_gpu(out_dtype):
    M, N, K = 1000, 1064, 1088
    a, b = _fp8_inputs(M, N, K)
    kernel = gemm_fp8.matmul(M, N, K, 128, 128, 128, out_dtype=out_dtype)
    _fp8_check(jax.jit(jtile.pallas_like(kernel))(a, b), a, b, out_dtype)


# ----------------------------------------------------------------------------- fp4 dequant gemm


def _fp4_inputs(M, N, K, dtype, storage_dtype):
    rng = _rng("gemm_fp4_dequant")
    a = _normal(rng, (M, K), dtype)
    qb = rng.integers(0, 256, (N, K // 2)).astype(np.uint8).view(storage_dtype)
    scale = rng.integers(0, 3, (N, K // 32)).astype(np.uint8).view(storage_dtype)
    return a, jnp.asarray(qb), jnp.asarray(scale)


def _fp4_run(M, N, K, block, dtype, storage_dtype, interpret, **options):
    a, qb, scale = _fp4_inputs(M, N, K, dtype, storage_dtype)
    kernel = gemm_fp4_dequant.matmul(M, N, K, *block, in_dtype=dtype, out_dtype=dtype,
                                     storage_dtype=storage_dtype, **options)
    out = jax.jit(jtile.pallas_like(kernel, interpret=interpret))(a, qb, scale)
    assert out.shape == (M, N) and out.dtype == jnp.dtype(dtype)
    # The dequantised weights are exact in bf16/f16 (|w| <= 24); A is rounded once.
    assert_close(out, gemm_fp4_dequant.reference(a, qb, scale), jnp.dtype(dtype), k=K,
                 operand_scale=4.0, name="gemm_fp4_dequant")


@pytest.mark.parametrize("dtype,storage_dtype", [("bfloat16", "uint8"), ("float16", "int8")])
def test_gemm_fp4_dequant_interpret(dtype, storage_dtype):
    _fp4_run(72, 100, 128, (64, 64, 64), dtype, storage_dtype, interpret=True)


def test_gemm_fp4_dequant_dequantize_matches_the_bit_layout():
    # Codes 0x0..0xF: sign, two exponent bits (bias 1, no zero), one mantissa bit.
    qb = np.array([[0x10, 0x32, 0x54, 0x76, 0x98, 0xBA, 0xDC, 0xFE] * 4], np.uint8)
    w = gemm_fp4_dequant.dequantize(qb, np.zeros((1, 2), np.uint8))[0, :16]
    np.testing.assert_array_equal(w, [0.5, 0.75, 1, 1.5, 2, 3, 4, 6,
                                      -0.5, -0.75, -1, -1.5, -2, -3, -4, -6])


def test_gemm_fp4_dequant_packed_fragment_interpret():
    # TileLang's form: the packed fragment read as B_local[i, j // 2] in T.Parallel.
    _fp4_run(72, 100, 128, (64, 64, 64), "bfloat16", "uint8", interpret=True,
             packed_in_fragment=True)


def test_gemm_fp4_dequant_packed_fragment_compiles():
    a, qb, scale = _fp4_inputs(200, 136, 256, "bfloat16", "uint8")
    kernel = gemm_fp4_dequant.matmul(200, 136, 256, 128, 128, 128, swizzle_epilogue=False,
                                     packed_in_fragment=True)
    _compiles(kernel, _specs(a, qb, scale), ("sm_90a", "sm_80"))


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_gemm_fp4_dequant_compiles(dtype):
    a, qb, scale = _fp4_inputs(200, 136, 256, dtype, "uint8")
    kernel = gemm_fp4_dequant.matmul(200, 136, 256, 128, 128, 128, in_dtype=dtype,
                                     out_dtype=dtype, swizzle_epilogue=False)
    _compiles(kernel, _specs(a, qb, scale), ("sm_90a", "sm_80"))


def test_gemm_fp4_dequant_compiles_with_swizzled_epilogue():
    a, qb, scale = _fp4_inputs(200, 136, 256, "bfloat16", "uint8")
    _compiles(gemm_fp4_dequant.matmul(200, 136, 256, 128, 128, 128), _specs(a, qb, scale),
              ("sm_90a",))


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_gemm_fp4_dequant_gpu(dtype):
    _fp4_run(1000, 1000, 1024, (128, 128, 128), dtype, "uint8", interpret=False,
             swizzle_epilogue=False)


# ----------------------------------------------------------------------------- conv2d


def _conv_run(shape, block, use_im2col, interpret, **options):
    N, C, H, W, F, K, S_, D, P = shape
    rng = _rng("conv2d")
    data = _normal(rng, (N, H, W, C), jnp.float16)
    weight = _normal(rng, (K, K, C, F), jnp.float16)
    kernel = conv2d.convolution(N, C, H, W, F, K, S_, D, P, *block, use_im2col=use_im2col,
                                **options)
    out = jax.jit(jtile.pallas_like(kernel, interpret=interpret))(data, weight)
    want = conv2d.reference(data, weight, S_, P, D)
    assert out.shape == want.shape and out.dtype == jnp.float16
    assert_close(out, want, jnp.float16, k=K * K * C, operand_scale=1.0, name="conv2d")


# (N, C, H, W, F, K, S, D, P): N*OH*OW = 162 rows against 64, K*K*C = 72 against 32, F = 40
# against 32; the second (90 rows) has stride 2, dilation 2 and padding 2.
CONV_SMALL = [(2, 8, 9, 9, 40, 3, 1, 1, 1), (3, 4, 11, 10, 40, 3, 2, 2, 2)]
CONV_BLOCK_SMALL = (64, 32, 32, 2, 128)   # block_M, block_N, block_K, num_stages, threads


@pytest.mark.parametrize("use_im2col", [False, True], ids=["gather", "im2col"])
@pytest.mark.parametrize("shape", CONV_SMALL, ids=["s1", "s2d2"])
def test_conv2d_interpret(shape, use_im2col):
    _conv_run(shape, CONV_BLOCK_SMALL, use_im2col, interpret=True)


def test_conv2d_output_smaller_than_one_tile_interpret():
    # The (64, 32) output tile is larger than the 30 output pixels: clipped, as in TileLang.
    _conv_run((1, 4, 11, 10, 40, 3, 2, 2, 2), CONV_BLOCK_SMALL, False, interpret=True)


def test_conv2d_output_smaller_than_one_tile_compiles():
    kernel = conv2d.convolution(1, 4, 11, 10, 40, 3, 2, 2, 2, *CONV_BLOCK_SMALL,
                                use_im2col=False, swizzle_epilogue=False)
    specs = [S((1, 11, 10, 4), jnp.float16), S((3, 3, 4, 40), jnp.float16)]
    _compiles(kernel, specs, ("sm_90a", "sm_80"))


@pytest.mark.parametrize("use_im2col", [False, True], ids=["gather", "im2col"])
def test_conv2d_compiles(use_im2col):
    kernel = conv2d.convolution(2, 8, 9, 9, 40, 3, 1, 1, 1, *CONV_BLOCK_SMALL,
                                use_im2col=use_im2col, swizzle_epilogue=False)
    specs = [S((2, 9, 9, 8), jnp.float16), S((3, 3, 8, 40), jnp.float16)]
    _compiles(kernel, specs, ("sm_90a", "sm_80"))


def test_conv2d_compiles_with_swizzled_epilogue():
    kernel = conv2d.convolution(2, 8, 9, 9, 40, 3, 1, 1, 1, *CONV_BLOCK_SMALL)
    specs = [S((2, 9, 9, 8), jnp.float16), S((3, 3, 8, 40), jnp.float16)]
    _compiles(kernel, specs, ("sm_90a",))


@pytest.mark.gpu
@pytest.mark.parametrize("use_im2col", [False, True], ids=["gather", "im2col"])
@pytest.mark.parametrize("shape", [(4, 40, 30, 30, 160, 3, 1, 1, 1),
                                   (2, 64, 57, 57, 192, 3, 2, 1, 1)], ids=["s1", "s2"])
def test_conv2d_gpu(shape, use_im2col):
    _conv_run(shape, (64, 128, 32, 3, 256), use_im2col, interpret=False,
              swizzle_epilogue=False)
