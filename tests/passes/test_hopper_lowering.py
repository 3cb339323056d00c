"""sm_90a instruction selection: a plain TileLang GEMM or attention kernel becomes TMA loads into
swizzled panels, an mbarrier stage ring with a producer warpgroup, and wgmma; sm_80 keeps
cp.async + mma.sync. Layouts and descriptors are checked as maps, not as text."""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jtile
from examples import flash_attention as fa
from examples import gemm
from jtile.errors import JtilePerformanceWarning
from jtile.passes import run_passes
from jtile.passes.layout import WgmmaTiling, choose_wgmma_tiling
from jtile.passes.wgmma_selection import panel_layout
from jtile.compiler.target import parse_target
from tests.gpu.test_hopper_gpu import fp8_gemm_kernel

S = jax.ShapeDtypeStruct


def _gemm_call(m=256, n=256, k=256, dtype=jnp.float16, trans_a=False, trans_b=False,
               **cfg):
    cfg = dict(dict(block_m=128, block_n=128, block_k=64, stages=3, threads=128), **cfg)
    kernel = functools.partial(gemm.matmul_kernel, trans_a=trans_a, trans_b=trans_b, **cfg)
    a = S((k, m) if trans_a else (m, k), dtype)
    b = S((n, k) if trans_b else (k, n), dtype)
    return jtile.pallas_like(kernel, out_shape=S((m, n), dtype), name="matmul"), (a, b)


def test_gemm_on_sm90a_uses_tma_ring_wgmma_and_a_producer():
    call, args = _gemm_call(block_n=256, threads=256)
    lowered = call.lower(*args, target="sm_90a")
    source = lowered.cuda_source()
    assert "wgmma.mma_async.sync.aligned.m64n256k16.f32.f16.f16" in source
    assert "jt::tma_load_2d" in source and "jt::setmaxnreg_inc<240>" in source
    assert "__syncthreads();" in source.split("if (tx >= 256)")[0]  # only before the split
    assert "__syncthreads();" not in source.split("if (tx >= 256)")[1]
    compiled = lowered.compile()
    assert compiled.block == (384, 1, 1)


def test_gemm_on_sm80_keeps_cp_async_and_mma_sync():
    call, args = _gemm_call()
    source = call.lower(*args, target="sm_80").cuda_source()
    assert "wgmma" not in source and "tma_load" not in source
    assert "jt::mma_m16n8k16_f16f32" in source and "cp_async" in source


@pytest.mark.parametrize("trans_a,trans_b", list(itertools.product([False, True], repeat=2)))
def test_every_transpose_compiles_on_wgmma(trans_a, trans_b):
    call, args = _gemm_call(m=200, n=264, k=136, trans_a=trans_a, trans_b=trans_b)
    lowered = call.lower(*args, target="sm_90a")
    source = lowered.cuda_source()
    assert "wgmma.mma_async" in source
    # imm-trans-a / imm-trans-b follow the operands' major-ness.
    assert f"p, 1, 1, {int(trans_a)}, {int(not trans_b)};" in source
    assert lowered.compile().cubin


def test_tensor_maps_describe_the_operands():
    call, args = _gemm_call(m=256, n=512, k=192, block_n=256, threads=256)
    generated = call.lower(*args, target="sm_90a")._require_generated()
    maps = {spec.param: spec for spec in generated.tensor_maps}
    a, b = maps[0], maps[1]
    assert a.dims == (192, 256) and a.strides == (192 * 2,) and a.box == (64, 128)
    assert a.swizzle == 3 and a.dtype == 6
    # B (K, N) is N-major: boxes of 64 columns (128 bytes) by block_k rows, one per panel.
    assert b.dims == (512, 192) and b.strides == (512 * 2,) and b.box == (64, 64)


def test_batched_operands_get_a_batch_dimension():
    from jtile.codegen import generate

    call, args = _gemm_call()
    target = parse_target("sm_90a")
    planned = run_passes(call.lower(*args, target=target)._kernel, target)
    generated = generate(planned, target, batch=3)
    for spec in generated.tensor_maps:
        assert spec.dims[-1] == 3 and spec.box[-1] == 1
    assert "(int)jt_batch" in generated.source


def test_ir_text_shows_the_lowered_instructions():
    call, args = _gemm_call()
    text = call.lower(*args, target="sm_90a").ir_text()
    assert "MbarrierPipeline" in text or "mbarrier" in text.lower()
    assert "wgmma" in text.lower()


def test_panel_layout_is_a_bijection_and_matches_the_swizzle():
    for rows, cols, eb in ((64, 64, 2), (128, 128, 2), (32, 32, 2), (64, 16, 2), (64, 128, 1)):
        buf = jtile.ir.nodes.Buffer("t", (rows, cols), jtile.ir.types.as_dtype(
            {1: "float8_e4m3", 2: "float16"}[eb]), jtile.ir.types.MemorySpace.SHARED_DYN)
        layout = panel_layout(buf)
        mask = layout.span // 16 - 1
        seen = set()
        for r in range(rows):
            for c in range(cols):
                o = layout.byte_offset(r, c)
                o ^= ((o >> 7) & mask) << 4
                seen.add(o // eb)
        assert seen == set(range(rows * cols))


@pytest.mark.parametrize("m,n,groups", [(128, 256, 2), (128, 128, 1), (256, 128, 2),
                                         (64, 64, 1), (128, 64, 2)])
def test_wgmma_accumulator_layout_covers_the_tile_once(m, n, groups):
    tiling = choose_wgmma_tiling(m, n, groups, full_row=False)
    assert isinstance(tiling, WgmmaTiling)
    layout = tiling.accumulator_layout(128 * groups)
    seen = [layout.logical_index(t, r) for t in range(128 * groups)
            for r in range(layout.num_registers)]
    assert sorted(seen) == [(i, j) for i in range(m) for j in range(n)]
    # Lane 4g+q of warp w holds rows 16w + g and 16w + g + 8 of the first row block.
    assert layout.logical_index(4 * 3 + 2 + 32 * 1, 0) == (16 + 3, 4)
    assert layout.logical_index(4 * 3 + 2 + 32 * 1, 2) == (16 + 3 + 8, 4)


def test_attention_accumulator_feeds_the_next_wgmma_from_registers():
    tiling = choose_wgmma_tiling(128, 128, 2, full_row=True)
    assert tiling.accumulator_layout(256) == tiling.operand_a_layout(256, 128)


@pytest.mark.parametrize("d,block_n", [(64, 128), (128, 128), (256, 64)])
def test_attention_uses_ss_and_rs_wgmma(d, block_n):
    kernel = functools.partial(fa.flash_fwd_kernel, block_m=128, block_n=block_n, stages=2,
                               threads=256, causal=True)
    x = S((1, 256, 2, d), jnp.float16)
    lowered = jtile.pallas_like(kernel, name="fa").lower(x, x, x, target="sm_90a")
    source = lowered.cuda_source()
    assert "_f16_ss_nn(" in source and "_f16_rs_nt(" in source
    assert lowered.compile().cubin


def test_fp8_gemm_runs_on_wgmma_on_sm90a():
    kernel = functools.partial(fp8_gemm_kernel, block_m=128, block_n=128, block_k=128,
                               stages=3, threads=128)
    call = jtile.pallas_like(kernel, out_shape=S((256, 256), jnp.bfloat16), name="fp8")
    args = (S((256, 256), jnp.float8_e4m3fn), S((256, 256), jnp.float8_e4m3fn))
    source = call.lower(*args, target="sm_90a").cuda_source()
    assert "m64n128k32.f32.e4m3.e4m3" in source


def test_fp8_gemm_runs_on_cuda_cores_where_wgmma_is_missing():
    kernel = functools.partial(fp8_gemm_kernel, block_m=128, block_n=128, block_k=128,
                               stages=3, threads=128)
    call = jtile.pallas_like(kernel, out_shape=S((256, 256), jnp.bfloat16), name="fp8")
    args = (S((256, 256), jnp.float8_e4m3fn), S((256, 256), jnp.float8_e4m3fn))
    with pytest.warns(JtilePerformanceWarning, match="CUDA cores.*wgmma.*sm_90a.*sm_80"):
        source = call.lower(*args, target="sm_80").cuda_source()
    assert "wgmma" not in source and "mma.sync" not in source


def test_fp8_gemm_in_interpret_mode_matches_float64():
    kernel = functools.partial(fp8_gemm_kernel, block_m=64, block_n=64, block_k=64,
                               stages=2, threads=128)
    ka, kb = jax.random.split(jax.random.key(7))
    a = jax.random.normal(ka, (128, 192), jnp.float32).astype(jnp.float8_e4m3fn)
    b = jax.random.normal(kb, (64, 192), jnp.float32).astype(jnp.float8_e4m3fn)
    out = jtile.pallas_like(kernel, out_shape=S((128, 64), jnp.bfloat16), name="fp8",
                            interpret=True)(a, b)
    ref = np.asarray(a, np.float64) @ np.asarray(b, np.float64).T
    np.testing.assert_allclose(np.asarray(out, np.float64), ref, rtol=2e-2, atol=0.3)


def _attention_ir(stages):
    kernel = functools.partial(fa.flash_fwd_kernel, block_m=128, block_n=64, stages=stages,
                               threads=256, causal=False)
    x = S((1, 512, 2, 64), jnp.float16)
    return jtile.pallas_like(kernel, name="fa").lower(x, x, x, target="sm_90a").ir_text()


def test_attention_defers_the_pv_wait_only_with_three_stages_or_more():
    deferred = [line for line in _attention_ir(3).splitlines() if "wgmma" in line]
    assert "deferred_release" in _attention_ir(3)
    assert deferred[0].endswith("wait_group 0 then frees the previous stage")
    assert deferred[1].endswith("commit")           # P @ V: waited by the next Q @ K^T
    plain = [line for line in _attention_ir(2).splitlines() if "wgmma" in line]
    assert all(line.endswith("commit wait_group 0") for line in plain)


def test_gemm_keeps_one_wgmma_group_in_flight():
    call, args = _gemm_call(stages=4)
    text = call.lower(*args, target="sm_90a").ir_text()
    (line,) = [ln for ln in text.splitlines() if "wgmma" in ln]
    assert line.endswith("commit wait_group 1 then frees the previous stage")


def test_large_grids_are_rasterised_and_small_ones_are_not():
    big, args = _gemm_call(m=4096, n=4096, k=256)
    assert "use_swizzle panel=8 order=row" in big.lower(*args, target="sm_90a").ir_text()
    small, args = _gemm_call()
    assert "use_swizzle" not in small.lower(*args, target="sm_90a").ir_text()


def test_a_producer_ring_never_shares_bytes_with_tiles_used_before_the_loop():
    # Q is read into registers before the loop and dead after it; the producer warpgroup
    # starts its TMA loads at kernel entry, so K and V must not reuse Q's bytes.
    from jtile.ir.lowered import MbarrierPipeline

    kernel = functools.partial(fa.flash_fwd_kernel, block_m=128, block_n=128, stages=2,
                               threads=256, causal=True, q_in_registers=True)
    x = S((1, 256, 2, 128), jnp.float16)
    planned = jtile.pallas_like(kernel, name="fa").lower(x, x, x, target="sm_90a").kernel
    plan = planned.attrs["shared"]
    (ring,) = [s for s in planned.body if isinstance(s, MbarrierPipeline)]
    ring_tiles = [load.tile.dst.buffer for load in ring.loads]
    before = [b for b in planned.allocations if b.space.is_shared and b not in ring_tiles
              and b.shape == (128, 128) and b not in plan.staging.values()]
    assert before, "the Q tile"

    def span(b):
        return plan.offsets[b], plan.offsets[b] + b.nbytes * plan.stages.get(b, 1)

    for tile in ring_tiles:
        for other in before:
            (a0, a1), (b0, b1) = span(tile), span(other)
            assert a1 <= b0 or b1 <= a0, (tile.name, other.name, span(tile), span(other))


def test_one_gemm_wgmma_cannot_run_is_named_when_it_drags_the_others_to_mma_sync():
    import jtile.language as T
    from jtile.errors import JtilePerformanceWarning

    def two_gemms(A, B, C, D):
        with T.Kernel(1, threads=256):
            a_s = T.alloc_shared((128, 64), "float16")
            b_s = T.alloc_shared((64, 64), "float16")
            big = T.alloc_fragment((128, 64), "float32")
            small = T.alloc_fragment((64, 64), "float32")   # 64 rows over two warpgroups
            T.copy(A, a_s)
            T.copy(B, b_s)
            T.gemm(a_s, b_s, big, clear_accum=True)
            T.gemm(a_s[0:64, :], b_s, small, clear_accum=True)
            T.copy(big, C)
            T.copy(small, D)

    f16, f32 = jnp.float16, jnp.float32
    call = jtile.pallas_like(two_gemms, out_shape=(S((128, 64), f32), S((64, 64), f32)))
    with pytest.warns(JtilePerformanceWarning, match=r"64x64 float32 accumulator cannot run on "
                      r"wgmma .* all 2 gemms of the kernel run on mma.sync"):
        source = call.lower(S((128, 64), f16), S((64, 64), f16), target="sm_90a").cuda_source()
    assert "wgmma" not in source


def test_a_cross_warp_reduction_in_a_warp_specialised_kernel_syncs_only_the_consumers():
    import jtile.language as T

    def gemm_column_sums(A, B, S):
        M, K = A.shape
        N = B.shape[1]
        with T.Kernel(1, threads=256):
            a_s = T.alloc_shared((128, 64), A.dtype)
            b_s = T.alloc_shared((64, 128), B.dtype)
            acc = T.alloc_fragment((128, 128), "float32")
            sums = T.alloc_fragment((128,), "float32")
            T.clear(acc)
            for k in T.Pipelined(K // 64, num_stages=3):
                T.copy(A[0, k * 64], a_s)
                T.copy(B[k * 64, 0], b_s)
                T.gemm(a_s, b_s, acc)
            T.reduce_sum(acc, sums, dim=0)   # rows live in both consumer warpgroups
            T.copy(sums, S)

    f16 = jnp.float16
    call = jtile.pallas_like(gemm_column_sums, out_shape=S((128,), jnp.float32))
    source = call.lower(S((128, 256), f16), S((256, 128), f16), target="sm_90a").cuda_source()
    consumers = source.split("if (tx >= 256)")[1]
    assert "jt::named_barrier_sync(1, 256);" in consumers
    assert "__syncthreads();" not in consumers   # the producer never reaches it: a hang
