"""The element-wise and GEMM families of the TileLang corpus: element-wise add with a broadcast,
a pipelined f16 GEMM, split-K, stream-K and grouped GEMM, each written as TileLang's examples
write it and launched with `jtile.pallas_like`.

Each family runs three ways: in interpret mode at a small size against NumPy, compiled to a
cubin for sm_90a and sm_80, and compiled on the GPU at a realistic size (`-m gpu`). Sizes are
not multiples of the tiles where the family allows. Split-K and stream-K add partial tiles
into C with atomics, so C starts at zero: as in TileLang, where the caller passes a zeroed C,
the kernel gets every parameter and `input_output_aliases={2: 0}` returns C.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jtile
from tests.gpu.compare import assert_close, seed_of
from tests.tilelang import elementwise, gemm, gemm_grouped, gemm_splitk, gemm_streamk

S = jax.ShapeDtypeStruct
TARGETS = ("sm_90a", "sm_80")


@pytest.fixture(autouse=True)
def _no_global_switches(monkeypatch):
    for name in ("JTILE_INTERPRET", "JTILE_DEBUG", "JTILE_TARGET"):
        monkeypatch.delenv(name, raising=False)


def _normal(family, index, shape, dtype):
    """Fresh N(0, 1) values rounded to `dtype`, seeded by the family's name."""
    key = jax.random.fold_in(jax.random.PRNGKey(seed_of(family)), index)
    return jax.random.normal(key, shape, jnp.float32).astype(dtype)


def _compiles(launcher, *specs):
    for target in TARGETS:
        compiled = launcher.lower(*specs, target=target).compile()
        assert compiled.cubin, target


# ----------------------------------------------------------------------------- elementwise


def _elementwise(M, N, block_M, block_N, threads, interpret):
    kernel = elementwise.elementwise_add(M, N, block_M, block_N, "float16", "float32", threads)
    return jtile.pallas_like(kernel, interpret=interpret)


def _check_elementwise(M, N, block_M, block_N, threads, interpret):
    a = _normal("elementwise", 0, (M, N), jnp.float16)
    b = _normal("elementwise", 1, (N,), jnp.float16)
    c = _elementwise(M, N, block_M, block_N, threads, interpret)(a, b)
    assert c.shape == (M, N) and c.dtype == jnp.float32
    # f16 + f16 rounds once to f16 before the cast: an f16 tolerance.
    assert_close(c, elementwise.reference(a, b, np.float32), jnp.float16, name="elementwise")


def test_elementwise_interpret():
    _check_elementwise(70, 100, 32, 32, 128, interpret=True)


def test_elementwise_compiles():
    _compiles(_elementwise(4100, 3000, 64, 128, 256, False),
              S((4100, 3000), jnp.float16), S((3000,), jnp.float16))


@pytest.mark.gpu
def test_elementwise_gpu():
    _check_elementwise(4100, 3000, 64, 128, 256, interpret=False)


# ----------------------------------------------------------------------------- gemm


def _gemm(M, N, K, config, interpret):
    return jtile.pallas_like(gemm.matmul(M, N, K, *config), interpret=interpret)


def _check_gemm(M, N, K, config, interpret):
    a = _normal("gemm", 0, (M, K), jnp.float16)
    b = _normal("gemm", 1, (N, K), jnp.float16)
    c = _gemm(M, N, K, config, interpret)(a, b)
    assert c.shape == (M, N) and c.dtype == jnp.float16
    assert_close(c, gemm.reference(a, b), jnp.float16, k=K, name="gemm")


# (block_M, block_N, block_K, num_stages, thread_num, enable_rasteration)
GEMM_SMALL = (64, 64, 32, 2, 128, True)
GEMM_LARGE = (128, 128, 32, 3, 128, True)


def test_gemm_interpret():
    _check_gemm(150, 200, 100, GEMM_SMALL, interpret=True)


def test_gemm_compiles():
    _compiles(_gemm(1000, 1100, 1200, GEMM_LARGE, False),
              S((1000, 1200), jnp.float16), S((1100, 1200), jnp.float16))


@pytest.mark.gpu
def test_gemm_gpu():
    _check_gemm(1000, 1100, 1200, GEMM_LARGE, interpret=False)


# ----------------------------------------------------------------------------- split-K


def _splitk(M, N, K, config, interpret):
    kernel = gemm_splitk.matmul(M, N, K, *config)
    return jtile.pallas_like(kernel, input_output_aliases={2: 0}, interpret=interpret)


def _check_splitk(M, N, K, config, interpret):
    a = _normal("gemm_splitk", 0, (M, K), jnp.float16)
    b = _normal("gemm_splitk", 1, (K, N), jnp.float16)
    c = _splitk(M, N, K, config, interpret)(a, b, jnp.zeros((M, N), jnp.float32))
    assert c.shape == (M, N) and c.dtype == jnp.float32
    assert_close(c, gemm_splitk.reference(a, b), jnp.float16, k=K, name="gemm_splitk")


# (block_M, block_N, block_K, split_k); K is a multiple of block_K * split_k, as TileLang's
# example requires (each slice is K // split_k long).
SPLITK_SMALL = (64, 64, 32, 4)
SPLITK_LARGE = (128, 128, 32, 4)


def test_gemm_splitk_interpret():
    _check_splitk(100, 72, 256, SPLITK_SMALL, interpret=True)


def test_gemm_splitk_compiles():
    _compiles(_splitk(1000, 1100, 2048, SPLITK_LARGE, False), S((1000, 2048), jnp.float16),
              S((2048, 1100), jnp.float16), S((1000, 1100), jnp.float32))


@pytest.mark.gpu
def test_gemm_splitk_gpu():
    _check_splitk(1000, 1100, 2048, SPLITK_LARGE, interpret=False)


# ----------------------------------------------------------------------------- stream-K


def _streamk(M, N, K, config, interpret):
    programs, block_M, block_N, block_K, threads = config
    kernel = gemm_streamk.tl_matmul_streamk(M, N, K, programs, block_M, block_N, block_K,
                                            "float16", "float16", "float32", 2, threads)
    return jtile.pallas_like(kernel, input_output_aliases={2: 0}, interpret=interpret)


def _check_streamk(M, N, K, config, interpret):
    a = _normal("gemm_streamk", 0, (M, K), jnp.float16)
    b = _normal("gemm_streamk", 1, (N, K), jnp.float16)
    c = _streamk(M, N, K, config, interpret)(a, b, jnp.zeros((M, N), jnp.float16))
    assert c.shape == (M, N) and c.dtype == jnp.float16
    # A tile split between blocks is rounded to f16 once per atomic add: still within the
    # f16 bound (about 8 ulps).
    assert_close(c, gemm_streamk.reference(a, b), jnp.float16, k=K, name="gemm_streamk")


# (programs, block_M, block_N, block_K, threads)
STREAMK_SMALL = (6, 32, 64, 32, 128)
# TileLang's example configuration on an H200's 132 SMs, and one with wgmma-sized tiles.
STREAMK_LARGE = {"tilelang": ((256, 1024, 512), (132, 16, 128, 32, 64)),
                 "ragged": ((1000, 1500, 1000), (132, 64, 128, 32, 128))}


def test_gemm_streamk_schedule_splits_tiles_between_blocks():
    # The small case really exercises both paths: whole tiles stored, split tiles added.
    schedule = gemm_streamk.streamk_schedule(100, 200, 150, 32, 64, 32, 6)
    assert schedule == dict(iters_per_tile=5, streamk_tiles=10, streamk_full_tiles=8,
                            streamk_partial_tiles=2, sm_partition_factor=1)


def test_gemm_streamk_interpret():
    _check_streamk(100, 200, 150, STREAMK_SMALL, interpret=True)


@pytest.mark.parametrize("case", sorted(STREAMK_LARGE))
def test_gemm_streamk_compiles(case):
    (M, N, K), config = STREAMK_LARGE[case]
    _compiles(_streamk(M, N, K, config, False), S((M, K), jnp.float16), S((N, K), jnp.float16),
              S((M, N), jnp.float16))


@pytest.mark.gpu
@pytest.mark.parametrize("case", sorted(STREAMK_LARGE))
def test_gemm_streamk_gpu(case):
    (M, N, K), config = STREAMK_LARGE[case]
    _check_streamk(M, N, K, config, interpret=False)


# ----------------------------------------------------------------------------- grouped GEMM


def _grouped(sizes, K, N, config, interpret):
    block_M, block_N, block_K, num_stages, threads = config
    kernel = gemm_grouped.grouped_gemm(sizes, K, N, block_M, block_N, block_K, num_stages,
                                       threads)
    # TileLang compiles it with out_idx=[2]; C sits between inputs, so it is passed (zeroed)
    # and returned through the alias.
    return jtile.pallas_like(kernel, input_output_aliases={2: 0}, interpret=interpret)


def _check_grouped(sizes, K, N, config, interpret):
    a = _normal("gemm_grouped", 0, (sum(sizes), K), jnp.float16)
    b = _normal("gemm_grouped", 1, (len(sizes), K, N), jnp.float16)
    tables = gemm_grouped.group_tables(sizes, config[0])
    c = _grouped(sizes, K, N, config, interpret)(a, b, jnp.zeros((sum(sizes), N), jnp.float16),
                                                 *tables)
    assert c.shape == (sum(sizes), N) and c.dtype == jnp.float16
    assert_close(c, gemm_grouped.reference(a, b, sizes), jnp.float16, k=K, name="gemm_grouped")


# (block_M, block_N, block_K, num_stages, threads)
GROUPED_SMALL = ([37, 64, 90], 96, 80, (32, 32, 32, 2, 128))
GROUPED_LARGE = ([63, 77, 111, 280], 1024, 1000, (64, 128, 64, 2, 256))


def test_gemm_grouped_interpret():
    sizes, K, N, config = GROUPED_SMALL
    _check_grouped(sizes, K, N, config, interpret=True)


def test_gemm_grouped_compiles():
    sizes, K, N, config = GROUPED_LARGE
    count = len(sizes)
    _compiles(_grouped(sizes, K, N, config, False), S((sum(sizes), K), jnp.float16),
              S((count, K, N), jnp.float16), S((sum(sizes), N), jnp.float16),
              *(S((count,), jnp.int32),) * 3)


@pytest.mark.gpu
def test_gemm_grouped_gpu():
    sizes, K, N, config = GROUPED_LARGE
    _check_grouped(sizes, K, N, config, interpret=False)


def _check_grouped_out_idx(sizes, K, N, config, interpret):
    """Called as TileLang calls it with out_idx=[2]: without C, which sits between inputs."""
    block_M, block_N, block_K, num_stages, threads = config
    kernel = gemm_grouped.grouped_gemm(sizes, K, N, block_M, block_N, block_K, num_stages,
                                       threads)
    a = _normal("gemm_grouped", 0, (sum(sizes), K), jnp.float16)
    b = _normal("gemm_grouped", 1, (len(sizes), K, N), jnp.float16)
    tables = gemm_grouped.group_tables(sizes, block_M)
    c = jtile.pallas_like(kernel, interpret=interpret)(a, b, *tables)
    assert c.shape == (sum(sizes), N) and c.dtype == jnp.float16
    assert_close(c, gemm_grouped.reference(a, b, sizes), jnp.float16, k=K, name="gemm_grouped")


def test_gemm_grouped_called_with_out_idx_as_tilelang_interpret():
    sizes, K, N, config = GROUPED_SMALL
    _check_grouped_out_idx(sizes, K, N, config, interpret=True)


@pytest.mark.gpu
def test_gemm_grouped_called_with_out_idx_as_tilelang_gpu():
    sizes, K, N, config = GROUPED_LARGE
    _check_grouped_out_idx(sizes, K, N, config, interpret=False)
