"""Persistent tile loops: a warp-specialised kernel whose tiles all do the same work runs as
one block per SM looping over tiles, with the stage ring running on across tiles. Checked as
generated code and launch shape on the CPU, and compiled on the GPU with far fewer blocks than
tiles (each block then runs many tiles, crossing ring phases mid-tile)."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jtile
from examples import flash_attention as fa
from examples import gemm
from jtile.compiler import target as target_module
from jtile.compiler.target import parse_target

S = jax.ShapeDtypeStruct


@pytest.fixture(autouse=True)
def persistent(monkeypatch):
    monkeypatch.setenv("JTILE_PERSISTENT", "1")


def _gemm_call(m, n, k, *, stages=3, block_n=256, block_k=64, dtype=jnp.float16):
    kernel = functools.partial(gemm.matmul_kernel, block_m=128, block_n=block_n, block_k=block_k,
                               stages=stages, threads=256, trans_a=False, trans_b=False)
    call = jtile.pallas_like(kernel, out_shape=S((m, n), dtype), name="matmul")
    return call, (S((m, k), dtype), S((k, n), dtype))


def _h200():
    return dataclasses.replace(parse_target("sm_90a"), sm_count=132)


def test_a_gemm_becomes_one_block_per_sm_looping_over_tiles():
    call, args = _gemm_call(4096, 4096, 512)
    lowered = call.lower(*args, target=_h200())
    source = lowered.cuda_source()
    assert source.count("for (int jt_tile = blockIdx.x; jt_tile < 512; jt_tile += gridDim.x)") == 2
    assert "jt_ring += 8;" in source   # both roles count ring iterations across tiles
    compiled = lowered.compile()
    assert compiled.grid == (132, 1, 1) and compiled.block == (384, 1, 1)


def test_without_a_known_sm_count_each_block_runs_one_tile():
    call, args = _gemm_call(1024, 1024, 512)
    compiled = call.lower(*args, target="sm_90a").compile()
    assert compiled.grid == (32, 1, 1)   # 8 x 4 tiles, the same kernel code


def test_the_epilogue_stores_through_two_panel_slots_beside_a_full_ring():
    # 4 stages of 128x64 + 64x256 f16 tiles (192 KiB) leave no room for the whole 64 KiB
    # output tile: its four 64-column panels go out one at a time through two 16 KiB slots,
    # each panel's TMA store issued while the threads write the next one.
    call, args = _gemm_call(4096, 4096, 512, stages=4)
    lowered = call.lower(*args, target=_h200())
    source = lowered.cuda_source()
    assert "acc_out_smem = reinterpret_cast<jt::half*>(jt_smem + 196608);" in source
    stores = [line.strip() for line in source.splitlines() if "jt::tma_store_2d(" in line]
    slots = [line.split("acc_out_smem) + ")[1].split(",")[0] for line in stores]
    assert slots == ["0", "16384", "0", "16384"]
    assert "(jt_major * 256) + 128)" in stores[2]   # panel 2 reuses slot 0
    # Before each panel's barrier thread 0 waits for the engine's reads of the earlier ones;
    # the last panel's read is awaited once, after the tile loop.
    assert source.count("jt::tma_store_wait_read<0>();") == 5
    tail = source[source.rindex("jt::tma_store_commit();"):]
    assert tail.index("}\n    }\n") < tail.index("jt::tma_store_wait_read<0>();")
    compiled = lowered.compile()
    assert compiled.grid == (132, 1, 1) and compiled.shared_memory_bytes <= 232448


def test_panels_that_depend_on_the_thread_are_staged_by_the_threads():
    # Two warpgroups side by side along N: a thread's registers cover one 128-column half,
    # so which panel a register lands in depends on the thread; the whole tile is staged and
    # the threads store it in 16-byte vectors (no TMA store).
    kernel = functools.partial(gemm.matmul_kernel, block_m=64, block_n=256, block_k=64,
                               stages=4, threads=256, trans_a=False, trans_b=False)
    call = jtile.pallas_like(kernel, out_shape=S((4096, 4096), jnp.float16), name="matmul")
    lowered = call.lower(S((4096, 512), jnp.float16), S((512, 4096), jnp.float16),
                         target=_h200())
    source = lowered.cuda_source()
    assert "jt_tile" in source and "acc_out_smem" in source
    assert "tma_store" not in source
    assert lowered.compile().grid == (132, 1, 1)


def test_a_ring_too_deep_for_any_staging_stores_fragments_directly():
    # 9 stages of 128x32 + 32x256 f16 tiles (216 KiB) leave no room even for two 16 KiB panel
    # slots: the fragments go straight to global memory.
    call, args = _gemm_call(4096, 4096, 512, stages=9, block_k=32)
    lowered = call.lower(*args, target=_h200())
    source = lowered.cuda_source()
    assert "jt_tile" in source and "acc_out" not in source and "tma_store" not in source
    assert lowered.compile().grid == (132, 1, 1)


def test_a_ring_that_cannot_stay_beside_the_users_tiles_keeps_one_block_per_tile():
    from tests.tilelang import gemm as tilelang_gemm

    # TileLang's GEMM stores through its own C_shared (64 KiB): with 4 stages nothing fits.
    kernel = tilelang_gemm.matmul(4096, 4096, 512, 128, 256, 64, 4, 256, True)
    f16 = jnp.float16
    lowered = jtile.pallas_like(kernel).lower(S((4096, 512), f16), S((4096, 512), f16),
                                              target=_h200())
    assert "jt_tile" not in lowered.cuda_source()
    assert lowered.compile().grid == (16, 32, 1)


def test_persistence_can_be_turned_off(monkeypatch):
    monkeypatch.setenv("JTILE_PERSISTENT", "0")
    call, args = _gemm_call(4096, 4096, 512, stages=4)
    assert "jt_tile" not in call.lower(*args, target=_h200()).cuda_source()


@pytest.mark.parametrize("block_m,block_n", [(128, 256), (128, 128), (256, 128)])
def test_by_default_a_gemm_is_persistent_when_its_stores_leave_through_panel_slots(
        monkeypatch, block_m, block_n):
    monkeypatch.delenv("JTILE_PERSISTENT", raising=False)
    kernel = functools.partial(gemm.matmul_kernel, block_m=block_m, block_n=block_n,
                               block_k=64, stages=4, threads=256, trans_a=False, trans_b=False)
    call = jtile.pallas_like(kernel, out_shape=S((4096, 4096), jnp.float16), name="matmul")
    lowered = call.lower(S((4096, 512), jnp.float16), S((512, 4096), jnp.float16),
                         target=_h200())
    source = lowered.cuda_source()
    assert "jt_tile" in source and "jt::tma_store_2d" in source
    assert lowered.compile().grid == (132, 1, 1)


def test_two_panels_too_large_for_two_slots_take_turns_in_one():
    # 256 x 128: each 64-column panel is 32 KiB, and two of them do not fit beside four 48 KiB
    # stages; one slot does. Each panel waits for the engine to read the one before.
    kernel = functools.partial(gemm.matmul_kernel, block_m=256, block_n=128, block_k=64,
                               stages=4, threads=256, trans_a=False, trans_b=False)
    call = jtile.pallas_like(kernel, out_shape=S((4096, 4096), jnp.float16), name="matmul")
    lowered = call.lower(S((4096, 512), jnp.float16), S((512, 4096), jnp.float16),
                         target=_h200())
    source = lowered.cuda_source()
    assert "acc_out_smem = reinterpret_cast<jt::half*>(jt_smem + 196608);" in source
    stores = [line for line in source.splitlines() if "jt::tma_store_2d(" in line]
    assert len(stores) == 2 and all("acc_out_smem) + 0," in line for line in stores)
    second = source[source.index(stores[0]):]
    assert second.index("jt::tma_store_wait_read<0>();") < second.index("acc_out_smem[")
    assert lowered.compile().shared_memory_bytes <= 232448


def test_by_default_attention_keeps_one_block_per_tile(monkeypatch):
    monkeypatch.delenv("JTILE_PERSISTENT", raising=False)
    shape = S((2, 1024, 4, 128), jnp.float16)
    call = jtile.pallas_like(functools.partial(
        fa.flash_fwd_kernel, causal=False, block_m=128, block_n=128, threads=256,
        stages=2), name="flash")
    assert "jt_tile" not in call.lower(shape, shape, shape, target=_h200()).cuda_source()


def test_full_attention_loops_over_every_grid_axis():
    shape = S((2, 1024, 4, 128), jnp.float16)
    call = jtile.pallas_like(functools.partial(
        fa.flash_fwd_kernel, causal=False, block_m=128, block_n=128, threads=256,
        stages=2), name="flash")
    lowered = call.lower(shape, shape, shape, target=_h200())
    assert "jt_tile < 64;" in lowered.cuda_source()   # 8 query blocks x 4 heads x 2 batches
    assert lowered.compile().grid == (64, 1, 1)


def test_a_tile_of_one_panel_stores_through_one_slot():
    # Head dim 64 in f16: the output tile is one 128-byte panel. Its slot is freed (thread 0
    # waits for the last tile's store to be read, then a barrier) before the threads write it.
    shape = S((2, 1024, 4, 64), jnp.float16)
    call = jtile.pallas_like(functools.partial(
        fa.flash_fwd_kernel, causal=False, block_m=128, block_n=128, threads=256,
        stages=3), name="flash")
    lowered = call.lower(shape, shape, shape, target=_h200())
    source = lowered.cuda_source()
    epilogue = source[source.index("jt::tma_store_wait_read<0>();"):]
    assert source.count("jt::tma_store_4d(") == 1
    assert epilogue.index("jt::named_barrier_sync(1, 256);") < epilogue.index("acc_out_smem[")
    assert "jt::tma_store_wait_read<0>();  // the TMA engine" in epilogue
    assert lowered.compile().grid == (64, 1, 1)


def test_causal_attention_keeps_one_block_per_tile():
    shape = S((2, 1024, 4, 128), jnp.float16)
    call = jtile.pallas_like(functools.partial(
        fa.flash_fwd_kernel, causal=True, block_m=128, block_n=128, threads=256,
        stages=2), name="flash")
    source = call.lower(shape, shape, shape, target=_h200()).cuda_source()
    assert "jt_tile" not in source   # unequal work per tile: the hardware balances it


@pytest.mark.gpu
@pytest.mark.parametrize("m,n,k,blocks", [(1024, 1536, 320, 5), (640, 768, 200, 3)])
def test_persistent_gemm_with_few_blocks_matches_float64(monkeypatch, m, n, k, blocks):
    local = target_module._local_gpu()
    if local is None or local[0] != (9, 0):
        pytest.skip("needs a Hopper GPU")
    # Report a GPU with very few SMs: each block then runs many tiles.
    monkeypatch.setattr(target_module, "_local_gpu", lambda: (local[0], blocks))
    rng = np.random.default_rng(m + n + k)
    a = jnp.asarray(rng.standard_normal((m, k)), jnp.float16)
    b = jnp.asarray(rng.standard_normal((k, n)), jnp.float16)
    call, args = _gemm_call(m, n, k, block_n=128)
    assert call.lower(*args).compile().grid == (blocks, 1, 1)
    out = np.asarray(jax.jit(call)(a, b), np.float64)
    want = np.asarray(a, np.float64) @ np.asarray(b, np.float64)
    np.testing.assert_allclose(out, want, rtol=5e-3, atol=5e-3 * np.sqrt(k))


@pytest.mark.gpu
def test_persistent_gemm_under_vmap_matches_float64(monkeypatch):
    local = target_module._local_gpu()
    if local is None or local[0] != (9, 0):
        pytest.skip("needs a Hopper GPU")
    monkeypatch.setattr(target_module, "_local_gpu", lambda: (local[0], 8))
    m, n, k, batch = 512, 768, 192, 3
    rng = np.random.default_rng(11)
    a = jnp.asarray(rng.standard_normal((batch, m, k)), jnp.float16)
    b = jnp.asarray(rng.standard_normal((batch, k, n)), jnp.float16)
    call, _ = _gemm_call(m, n, k, block_n=128)
    out = np.asarray(jax.jit(jax.vmap(call))(a, b), np.float64)
    want = np.einsum("bmk,bkn->bmn", np.asarray(a, np.float64), np.asarray(b, np.float64))
    np.testing.assert_allclose(out, want, rtol=5e-3, atol=5e-3 * np.sqrt(k))
