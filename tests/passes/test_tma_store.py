"""TMA stores of staged epilogues (sm_90+, JTILE_TMA_STORE on by default): the staged tile takes the TMA
panel layout, the threads' writes to it are fenced for the async proxy before the barrier, one
thread stores each 64-column panel with `cp.async.bulk.tensor` through a tensor map of the
output, and waits until the engine has read the tile. No GPU needed: the CUDA, the tensor
maps, and the SASS (UTMASTG) are checked."""

from __future__ import annotations

import functools
import re

import jax
import jax.numpy as jnp
import pytest

import jtile
from examples import gemm
from tests.sass import sass_counts

S = jax.ShapeDtypeStruct


def _gemm(m, n, k, *, batch=None, **cfg):
    cfg = dict(dict(block_m=128, block_n=256, block_k=64, stages=4, threads=256), **cfg)
    kernel = functools.partial(gemm.matmul_kernel, trans_a=False, trans_b=False, **cfg)
    call = jtile.pallas_like(kernel, out_shape=S((m, n), jnp.float16), name="matmul")
    return call, (S((m, k), jnp.float16), S((k, n), jnp.float16))


@pytest.fixture
def tma_stores(monkeypatch):
    monkeypatch.setenv("JTILE_TMA_STORE", "1")
    # One block per tile: the persistent form's panel slots are tests/passes/test_persistent_tiles.py's.
    monkeypatch.setenv("JTILE_PERSISTENT", "0")


def test_the_epilogue_is_stored_by_tma(tma_stores):
    call, args = _gemm(512, 512, 256)
    lowered = call.lower(*args, target="sm_90a")
    source = lowered.cuda_source()
    epilogue = source.split("jt::fence_proxy_async_shared();")[-1]
    # Four panels of 64 columns, issued by one thread after the consumers' named barrier.
    assert "jt::named_barrier_sync(1, 256);\n    if (tx == 0) {" in epilogue
    assert epilogue.count("jt::tma_store_2d(&jt_tma_map2,") == 4
    assert "jt::tma_store_wait_read<0>();" in epilogue
    assert "C[" not in epilogue                      # no thread writes C itself
    out = lowered._require_generated().tensor_maps[-1]
    assert (out.param, out.dims, out.strides, out.box, out.swizzle) == \
        (2, (512, 512), (1024,), (64, 128), 3)
    counts = sass_counts(lowered.compile().cubin)
    assert counts["UTMASTG"] == 4 and counts["HGMMA"] > 0


def test_edge_tiles_and_unaligned_rows(tma_stores):
    # 200 x 264: TMA clips the edge boxes itself.
    call, args = _gemm(200, 264, 136)
    source = call.lower(*args, target="sm_90a").cuda_source()
    assert "jt::tma_store_2d" in source
    # Rows of 100 halves (200 bytes) break the tensor map's 16-byte stride rule: the threads
    # store the tile.
    call, args = _gemm(256, 100, 128, block_n=128, threads=128, stages=3)
    source = call.lower(*args, target="sm_90a").cuda_source()
    assert "jt::tma_store" not in source
    # A 128-row tile of a 64-row output: a box must fit inside the tensor (the launcher's map
    # check), so the threads store it.
    call, args = _gemm(64, 512, 128)
    assert "jt::tma_store" not in call.lower(*args, target="sm_90a").cuda_source()


def test_vmap_batches_get_a_third_coordinate(tma_stores):
    from jtile.codegen import generate
    from jtile.compiler.target import parse_target
    from jtile.passes import run_passes

    call, args = _gemm(256, 256, 128)
    target = parse_target("sm_90a")
    planned = run_passes(call.lower(*args, target=target)._kernel, target)
    generated = generate(planned, target, batch=3)
    out = generated.tensor_maps[-1]
    assert out.param == 2 and out.dims[-1] == 3 and out.box[-1] == 1
    assert "jt::tma_store_3d(&jt_tma_map2," in generated.source
    assert "(int)jt_batch);" in generated.source
    from jtile.binding.lowered import compile_generated

    assert sass_counts(compile_generated(generated, target).cubin)["UTMASTG"] == 4


def test_on_by_default_off_when_asked_and_on_sm80():
    call, args = _gemm(512, 512, 256)
    assert "jt::tma_store" in call.lower(*args, target="sm_90a").cuda_source()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("JTILE_TMA_STORE", "0")
        assert "jt::tma_store" not in call.lower(*args, target="sm_90a").cuda_source()
    call, args = _gemm(512, 512, 256, block_n=128, threads=128, stages=3)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("JTILE_TMA_STORE", "1")
        assert "jt::tma_store" not in call.lower(*args, target="sm_80").cuda_source()


@pytest.mark.parametrize("d", [64, 128])
def test_attention_output_is_stored_by_tma(tma_stores, d):
    # O is (batch, seq, heads, head_dim): a 4-D map whose box is (64, 1, block_m, 1).
    from examples import flash_attention as fa

    shape = S((2, 512, 4, d), jnp.float16)
    call = jtile.pallas_like(functools.partial(
        fa.flash_fwd_kernel, causal=True, block_m=128, block_n=128, threads=256, stages=2),
        name="flash")
    lowered = call.lower(shape, shape, shape, target="sm_90a")
    source = lowered.cuda_source()
    assert source.count("jt::tma_store_4d(") == d // 64
    out = lowered._require_generated().tensor_maps[-1]
    assert out.param == 3 and out.dims == (d, 4, 512, 2) and out.box == (64, 1, 128, 1)
    assert sass_counts(lowered.compile().cubin)["UTMASTG"] == d // 64


def _grouped_gemm(m, n, k, groups, kind="sm_90a"):
    from jtile.ops.ragged_dot import gemm_tiles
    from jtile.ops.ragged_dot_kernels import grouped_gemm_kernel
    from jtile.ops.ragged_dot_schedule import max_row_tiles

    tiles = gemm_tiles(kind, jnp.bfloat16)
    count = max_row_tiles(m, groups, tiles["block_m"])
    call = jtile.pallas_like(functools.partial(
        grouped_gemm_kernel, out_dtype="bfloat16", transpose_rhs=False, **tiles),
        name="ragged_dot")
    table = S((count,), jnp.int32)
    return call, (S((m, k), jnp.bfloat16), S((groups, k, n), jnp.bfloat16), table, table,
                  table)


def test_a_store_under_a_block_uniform_condition_is_staged_too(tma_stores):
    # The grouped GEMM stores its tiles wholly inside a group with T.copy under a T.If on
    # the tile table: that copy goes through the stage and the TMA engine like a dense
    # GEMM's; the group's last tile keeps its row-masked element stores.
    call, args = _grouped_gemm(1024, 512, 256, groups=4)
    source = call.lower(*args, target="sm_90a").cuda_source()
    then_branch, else_branch = source.split("    else {")
    assert then_branch.count("jt::tma_store_2d(") == 4      # 256 columns: four 128-byte panels
    assert "jt::named_barrier_sync(1, 256);" in then_branch
    assert "jt::cast<jt::bfloat16>(" in else_branch and "jt::tma_store" not in else_branch
    # The sm_80 code stages the same store in a swizzled tile written out by the threads.
    call, args = _grouped_gemm(1024, 512, 256, groups=4, kind="sm_80")
    sm80 = call.lower(*args, target="sm_80").cuda_source()
    assert re.search(r"const jt::vec<jt::bfloat16, 8>\*>\(&\w+_out_smem\[", sm80)
    assert "jt::tma_store" not in sm80
