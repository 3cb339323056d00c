"""`T.Persistent`: a kernel with a fixed number of blocks walks a tile domain wave by wave,
in TileLang's grouped order, each tile exactly once (interpret mode, compiled for sm_80 and
sm_90a, and run compiled where a GPU is present)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jtile
import jtile.language as T
from tests.language.kernel_runs import run_both_ways


def _spec(shape, dtype):
    return jax.ShapeDtypeStruct(shape, dtype)


def _tilelang_order(domain, wave_size, group_size):
    """{(wave, block): tile coordinates}, TileLang's PersistentFor order written out."""
    group = max(1, min(group_size, domain[-1]))
    grouped = [-(-domain[-1] // group), *domain[:-1], group]
    padded = int(np.prod(grouped))
    order = {}
    for wave in range(-(-padded // wave_size)):
        for block in range(wave_size):
            rem = wave * wave_size + block
            if rem >= padded:
                continue
            digits = [0] * len(grouped)
            for axis in range(len(grouped) - 1, 0, -1):
                digits[axis] = rem % grouped[axis]
                rem //= grouped[axis]
            digits[0] = rem
            last = digits[0] * group + digits[-1]
            if last < domain[-1]:
                order[wave, block] = tuple(digits[1:-1]) + (last,)
    return order


@pytest.mark.parametrize("domain, blocks, group", [
    ((5, 7), 4, 3),        # waves that do not divide the tiles; a group that pads
    ((3, 2, 6), 5, 8),     # a group wider than the last axis is clamped to it
    ((13,), 6, 1),
])
def test_every_tile_once_in_tilelang_order(domain, blocks, group):
    order = _tilelang_order(domain, blocks, group)
    waves = max(w for w, _ in order) + 1

    def kernel(Owner, Which):
        with T.Kernel(blocks, threads=32) as block_id:
            for w in T.serial(waves + 1):
                Which[w, block_id] = -1
            wave = T.alloc_var("int32", 0)
            for tile in T.Persistent(list(domain), blocks, block_id, group):
                coords = tile if isinstance(tile, tuple) else (tile,)
                flat = 0
                for axis, c in enumerate(coords):
                    flat = flat * domain[axis] + c
                Owner[flat] = block_id * 1000 + wave
                Which[wave, block_id] = flat
                wave = wave + 1

    tiles = int(np.prod(domain))
    (owner, which), _ = run_both_ways(
        kernel, [], (_spec((tiles,), jnp.int32), _spec((waves + 1, blocks), jnp.int32)))
    expected = np.full((waves + 1, blocks), -1, np.int32)
    expected_owner = np.full(tiles, -1, np.int32)
    done = {}
    for (wave, block), coords in sorted(order.items()):
        flat = int(np.ravel_multi_index(coords, domain))
        expected[done.get(block, 0), block] = flat
        expected_owner[flat] = block * 1000 + done.get(block, 0)
        done[block] = done.get(block, 0) + 1
    assert sorted(expected[expected >= 0]) == list(range(tiles))   # every tile, once
    np.testing.assert_array_equal(owner, expected_owner)
    np.testing.assert_array_equal(which, expected)


# A GEMM whose 3 x 5 tiles run on 5 blocks: three waves.
M, N, K, bm, bn, bk, GEMM_BLOCKS = 192, 160, 96, 64, 32, 32, 5


def persistent_matmul(A, B, C):
    with T.Kernel(GEMM_BLOCKS, threads=128) as block_id:
        a = T.alloc_shared((bm, bk), "float16")
        b = T.alloc_shared((bk, bn), "float16")
        acc = T.alloc_fragment((bm, bn), "float32")
        for bx, by in T.Persistent([T.ceildiv(M, bm), T.ceildiv(N, bn)], GEMM_BLOCKS,
                                   block_id):
            T.clear(acc)
            for k in T.Pipelined(T.ceildiv(K, bk), num_stages=2):
                T.copy(A[bx * bm, k * bk], a)
                T.copy(B[k * bk, by * bn], b)
                T.gemm(a, b, acc)
            T.copy(acc, C[bx * bm, by * bn])


def test_a_persistent_gemm_in_tilelang_style():
    rng = np.random.default_rng(7)
    a = rng.standard_normal((M, K)).astype(np.float16)
    b = rng.standard_normal((K, N)).astype(np.float16)
    (c,), _ = run_both_ways(persistent_matmul, [a, b], _spec((M, N), jnp.float16),
                            rtol=2e-3, atol=2e-3)
    ref = a.astype(np.float64) @ b.astype(np.float64)
    np.testing.assert_allclose(c.astype(np.float64), ref, rtol=2e-2, atol=5e-2)


def test_a_ring_inside_the_persistent_loop_runs_its_phases_on():
    # Each tile's T.Pipelined ring is a new pass over the same stage barriers: its stages and
    # phases continue from the last pass (restarting them would wait on a phase a barrier
    # already completed, and read a stage before its load lands).
    call = jtile.pallas_like(persistent_matmul, out_shape=_spec((M, N), jnp.float16))
    source = call.lower(_spec((M, K), jnp.float16), _spec((K, N), jnp.float16),
                        target="sm_90a").cuda_source()
    assert "int jt_ring0 = 0;" in source
    assert "jt::mbarrier_wait_parity(&jt_full_bar[((jt_ring0 + k) % 2)], " \
        "((jt_ring0 + k) / 2) & 1);" in source
    assert "jt_ring0 += 3;" in source
