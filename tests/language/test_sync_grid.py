"""`T.sync_grid`: every block of the launch meets, and what any block wrote to global memory
before the barrier every block reads after it. Interpret mode runs the blocks phase by phase,
each keeping its on-chip memory; compiled, the kernel is launched cooperatively (checked in
interpret mode, compiled for sm_80 and sm_90a, and run compiled where a GPU is present)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jtile
import jtile.language as T
from tests.language.kernel_runs import has_cuda_gpu, run_both_ways


def _spec(shape, dtype=jnp.float32):
    return jax.ShapeDtypeStruct(shape, dtype)


def neighbour_sum(n, blocks, threads=128):
    """B = 2 A; after the barrier C[i] = B of the next block's element plus this block's own
    element of A, kept in shared memory and in a per-block variable across the barrier."""
    per = n // blocks

    def kernel(A, B, C):
        with T.Kernel(blocks, threads=threads) as bx:
            kept = T.alloc_shared((per,), "float32")
            block_first = T.alloc_var("float32")
            for i in T.Parallel(per):
                B[bx * per + i] = A[bx * per + i] * 2
                kept[i] = A[bx * per + i]
            block_first = A[bx * per]
            T.sync_grid()
            for i in T.Parallel(per):
                C[bx * per + i] = B[(bx * per + i + per) % n] + kept[i] + block_first * 0.5
    return kernel


def _want(a, blocks):
    per = a.size // blocks
    firsts = np.repeat(a[::per], per)
    return np.roll(a * 2, -per) + a + firsts * 0.5


@pytest.mark.parametrize("n, blocks", [(128, 4), (1024, 8), (96, 3)])
def test_blocks_read_what_other_blocks_wrote_before_the_barrier(n, blocks):
    a = np.random.default_rng(n).standard_normal(n).astype(np.float32)
    (b, c), source = run_both_ways(neighbour_sum(n, blocks), (a,), (_spec((n,)), _spec((n,))))
    np.testing.assert_allclose(b, a * 2)
    np.testing.assert_allclose(c, _want(a, blocks), rtol=1e-6)
    assert '#include "jtile/grid.cuh"' in source and "jt::grid_sync();" in source


def three_phases(n, grid_x, grid_y):
    """Two barriers on a 2-D grid: a prefix over blocks computed through global memory."""
    blocks = grid_x * grid_y

    def kernel(A, PARTS, OUT):
        with T.Kernel(grid_x, grid_y, threads=64) as (bx, by):
            me = by * grid_x + bx
            total = T.alloc_var("float32")
            # Phase 1: each block's sum of its slice.
            total = 0.0
            for i in T.serial(n):
                total = total + A[me, i]
            PARTS[me] = total
            T.sync_grid()
            # Phase 2: block 0's running sums over the blocks, in place.
            with T.If(me == 0):
                for j in T.serial(blocks - 1):
                    PARTS[j + 1] = PARTS[j + 1] + PARTS[j]
            T.sync_grid()
            # Phase 3: every block reads the prefix up to itself and its own total.
            for i in T.Parallel(n):
                OUT[me, i] = PARTS[me] - total + A[me, i]
    return kernel


def test_two_barriers_on_a_two_dimensional_grid():
    grid_x, grid_y, n = 3, 2, 16
    a = np.random.default_rng(0).standard_normal((grid_x * grid_y, n)).astype(np.float32)
    (parts, out), _ = run_both_ways(three_phases(n, grid_x, grid_y), (a,),
                                    (_spec((grid_x * grid_y,)), _spec(a.shape)), rtol=1e-5,
                                    atol=1e-5)
    sums = a.sum(axis=1)
    np.testing.assert_allclose(parts, np.cumsum(sums), rtol=1e-5, atol=1e-5)
    before = np.concatenate([[0.0], np.cumsum(sums)[:-1]])
    np.testing.assert_allclose(out, before[:, None] + a, rtol=1e-5, atol=1e-5)


def test_the_launch_is_cooperative_and_outside_command_buffers():
    kernel = jtile.pallas_like(neighbour_sum(128, 4), out_shape=(_spec((128,)), _spec((128,))),
                               interpret=False, compiler_params={"target": "sm_90a"})
    compiled = kernel.lower(_spec((128,)), target="sm_90a").compile()
    assert compiled.cooperative
    hlo = jax.jit(kernel).trace(np.zeros(128, np.float32)).lower(
        lowering_platforms=("cuda",)).as_text()
    assert "@jtile_launch_cooperative" in hlo
    plain = jtile.pallas_like(lambda A, B: _copy_kernel(A, B), out_shape=_spec((128,)),
                              interpret=False).lower(_spec((128,)), target="sm_90a").compile()
    assert not plain.cooperative


def _copy_kernel(A, B):
    with T.Kernel(1, threads=128) as bx:
        for i in T.Parallel(128):
            B[i] = A[i]


def _nested(where):
    def kernel(A, B):
        with T.Kernel(2, threads=32) as bx:
            for i in T.Parallel(16):
                B[bx * 16 + i] = A[bx * 16 + i]
            if where == "serial":
                for _ in T.serial(2):
                    T.sync_grid()
            elif where == "if":
                with T.If(bx == 0):
                    T.sync_grid()
    return kernel


@pytest.mark.parametrize("where", ["serial", "if"])
def test_a_barrier_inside_a_loop_or_branch_is_refused(where):
    launch = jtile.pallas_like(_nested(where), out_shape=_spec((32,)), interpret=True)
    with pytest.raises(jtile.JtileError, match=r"T.sync_grid at test_sync_grid.py:\d+: "
                                               r"T.sync_grid must be a statement of the kernel "
                                               r"body itself, or of a T.Parallel loop in it"):
        launch(np.zeros(32, np.float32))


def test_a_value_read_from_global_memory_before_the_barrier_is_refused_after_it():
    def kernel(A, B):
        with T.Kernel(2, threads=32) as bx:
            for i in T.Parallel(16):
                B[bx * 16 + i] = A[bx * 16 + i]
                mirrored = B[31 - bx * 16 - i]     # bound before the barrier
                T.sync_grid()
                B[bx * 16 + i] = mirrored           # would read B again after it
    launch = jtile.pallas_like(kernel, out_shape=_spec((32,)), interpret=True)
    with pytest.raises(jtile.JtileError, match=r"`mirrored` was bound at test_sync_grid.py:\d+ "
                                               r"to a value read from B \(global float32 "
                                               r"\(32,\)\), which T.sync_grid at "
                                               r"test_sync_grid.py:\d+ \(any block\) has "
                                               r"written since"):
        launch(np.zeros(32, np.float32))


def test_a_barrier_in_a_cluster_kernel_is_refused():
    def kernel(A, B):
        with T.Kernel(2, threads=32, cluster_dims=2) as bx:
            T.sync_grid()
            for i in T.Parallel(16):
                B[bx * 16 + i] = A[bx * 16 + i]
    launch = jtile.pallas_like(kernel, out_shape=_spec((32,)), interpret=True)
    with pytest.raises(jtile.JtileError, match=r"T.sync_grid in a kernel with cluster_dims"):
        launch(np.zeros(32, np.float32))


@pytest.mark.gpu
@pytest.mark.skipif(not has_cuda_gpu(), reason="needs a CUDA GPU")
def test_on_the_gpu_one_block_per_sm_inside_jit_and_a_grid_too_large_is_refused():
    sms = jax.devices()[0].core_count
    n = 256 * sms
    a = np.random.default_rng(1).standard_normal(n).astype(np.float32)
    kernel = jtile.pallas_like(neighbour_sum(n, sms, threads=256),
                               out_shape=(_spec((n,)), _spec((n,))), interpret=False)
    for _ in range(3):  # the barrier's counter is back at its start after every launch
        b, c = jax.jit(kernel)(a)
        np.testing.assert_allclose(np.asarray(c), _want(a, sms), rtol=1e-6)
    # Far more blocks than the GPU holds at once: the driver refuses, naming T.sync_grid.
    blocks = 64 * sms
    too_many = jtile.pallas_like(neighbour_sum(blocks * 1024, blocks, threads=1024),
                                 out_shape=(_spec((blocks * 1024,)),) * 2, interpret=False)
    with pytest.raises(Exception, match="T.sync_grid"):
        jax.block_until_ready(jax.jit(too_many)(np.zeros(blocks * 1024, np.float32)))


def tilelang_grid_sync(n=1024, barrier_in_loop=True):
    """TileLang's own grid-barrier test kernel (testing/python/language/
    test_tilelang_language_cooperative.py), A updated in place. TileLang writes its second
    barrier inside the T.Parallel loop, between the read and the write (`barrier_in_loop`),
    which splits the loop there; the other form has it between two loops."""
    block = 64

    @T.prim_func
    def kernel(A: T.Tensor((n,), T.float32)):
        with T.Kernel(T.ceildiv(n, block), threads=128) as bx:
            A_local = T.alloc_fragment((block,), dtype=T.float32)
            n_idx = bx * block
            for i in T.Parallel(block):
                A[n_idx + i] = n_idx + i
            T.sync_grid()
            if barrier_in_loop:
                for i in T.Parallel(block):
                    A_local[i] = A[n - n_idx - i - 1]
                    T.sync_grid()
                    A[n_idx + i] = A[n_idx + i] + A_local[i]
            else:
                for i in T.Parallel(block):
                    A_local[i] = A[n - n_idx - i - 1]
                T.sync_grid()
                for i in T.Parallel(block):
                    A[n_idx + i] = A[n_idx + i] + A_local[i]

    return kernel


@pytest.mark.parametrize("barrier_in_loop", [True, False])
def test_tilelang_grid_sync_kernel(barrier_in_loop):
    n = 1024
    a = np.random.default_rng(2).random(n).astype(np.float32)
    (out,), source = run_both_ways(tilelang_grid_sync(n, barrier_in_loop), (a,), None,
                                   input_output_aliases={0: 0})
    # Every element is its index plus its mirror's: n - 1 everywhere (TileLang's check).
    np.testing.assert_array_equal(out, np.full(n, n - 1, np.float32))
    assert source.count("jt::grid_sync();") == 2
