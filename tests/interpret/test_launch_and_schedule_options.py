"""Interpret mode: T.use_swizzle, cluster_dims, GemmWarpPolicy and the TileLang options of
T.copy / T.Pipelined / T.Kernel that jtile accepts (and the ones it refuses by name)."""

import numpy as np
import pytest

import jtile.language as T
from jtile.errors import JtileError
from jtile.interpret.block_swizzle import rasterize

from interpret_helpers import assert_close, random, run


def tilelang_rasterization_2d_row(panel, bx, by, gx, gy):
    """A line-by-line port of TileLang's rasterization2DRow (unsigned C arithmetic)."""
    block_idx = bx + by * gx
    grid_size = gx * gy
    panel_size = panel * gx
    panel_offset = block_idx % panel_size
    panel_idx = block_idx // panel_size
    total_panel = (grid_size + panel_size - 1) // panel_size
    stride = panel if panel_idx + 1 < total_panel else (grid_size - panel_idx * panel_size) // gx
    col = gx - 1 - panel_offset // stride if panel_idx & 1 else panel_offset // stride
    row = panel_offset % stride + panel_idx * panel
    return col, row


@pytest.mark.parametrize("order", ["row", "column"])
@pytest.mark.parametrize("gx,gy,panel", [(5, 7, 2), (7, 3, 4), (9, 9, 3), (3, 11, 1), (1, 5, 2)])
def test_rasterize_is_a_bijection_on_odd_grids(gx, gy, panel, order):
    seen = set()
    for by in range(gy):
        for bx in range(gx):
            x, y = rasterize(panel, order, bx, by, gx, gy)
            assert 0 <= x < gx and 0 <= y < gy
            seen.add((int(x), int(y)))
            if order == "row":
                assert (x, y) == tilelang_rasterization_2d_row(panel, bx, by, gx, gy)
    assert len(seen) == gx * gy


@pytest.mark.parametrize("order", ["row", "column"])
def test_use_swizzle_keeps_a_tiled_copy_correct(order):
    def kernel(X, O):
        M, N = X.shape
        with T.Kernel(T.ceildiv(N, 8), T.ceildiv(M, 4), threads=32) as (bx, by):
            T.use_swizzle(panel_size=2, order=order)
            tile = T.alloc_shared((4, 8), "float32")
            T.copy(X[by * 4, bx * 8], tile)
            for i, j in T.Parallel(4, 8):
                tile[i, j] = tile[i, j] + by * 100 + bx
            T.copy(tile, O[by * 4, bx * 8])

    x = random(np.random.default_rng(30), (20, 40), "float32")   # a 5 x 5 grid
    (out,) = run(kernel, [x], [((20, 40), "float32")])
    rows, cols = np.meshgrid(np.arange(20) // 4, np.arange(40) // 8, indexing="ij")
    assert_close(out, x + rows * 100 + cols, "float32")


def test_use_swizzle_may_follow_statements_that_do_not_read_the_block_indices():
    def after_fill(X, O):   # TileLang's linear-attention example clears its state first
        M, N = X.shape
        with T.Kernel(T.ceildiv(N, 8), T.ceildiv(M, 4), threads=32) as (bx, by):
            tile = T.alloc_shared((4, 8), "float32")
            T.fill(tile, 1.0)
            T.use_swizzle(panel_size=2)
            for i, j in T.Parallel(4, 8):
                tile[i, j] = tile[i, j] + X[by * 4 + i, bx * 8 + j] + by * 100 + bx
            T.copy(tile, O[by * 4, bx * 8])

    x = random(np.random.default_rng(32), (20, 40), "float32")
    (out,) = run(after_fill, [x], [((20, 40), "float32")])
    rows, cols = np.meshgrid(np.arange(20) // 4, np.arange(40) // 8, indexing="ij")
    assert_close(out, x + 1.0 + rows * 100 + cols, "float32")


def test_use_swizzle_must_come_before_reads_of_block_indices_and_rejects_unknown_order():
    def late(X, O):
        with T.Kernel(2, 2) as (bx, by):
            T.copy(X[bx * 4:(bx + 1) * 4], O[bx * 4:(bx + 1) * 4])
            T.use_swizzle(2)

    def mlx(X, O):
        with T.Kernel(2, 2) as (bx, by):
            T.use_swizzle(2, order="mlx")
            T.copy(X, O)

    x = random(np.random.default_rng(31), (8,), "float32")
    with pytest.raises(JtileError, match=r"T.use_swizzle comes after a statement at "
                                         r"test_launch_and_schedule_options.py:\d+ that reads "
                                         r"the block indices"):
        run(late, [x], [((8,), "float32")])
    with pytest.raises(JtileError, match="order='mlx' is not supported"):
        run(mlx, [x], [((8,), "float32")])


@pytest.mark.parametrize("policy", [T.GemmWarpPolicy.Square, T.GemmWarpPolicy.FullRow,
                                    T.GemmWarpPolicy.FullCol])
def test_gemm_policy_and_cluster_dims_keep_results(policy):
    def kernel(A, B, C):
        with T.Kernel(2, 2, threads=128, cluster_dims=(2, 1)) as (bx, by):
            a = T.alloc_shared((64, 32), "float16")
            b = T.alloc_shared((32, 64), "float16")
            acc = T.alloc_fragment((64, 64), "float32")
            T.copy(A[by * 64, 0], a)
            T.copy(B[0, bx * 64], b)
            T.gemm(a, b, acc, policy=policy, clear_accum=True)
            T.copy(acc, C[by * 64, bx * 64])

    rng = np.random.default_rng(32)
    a, b = random(rng, (128, 32), "float16"), random(rng, (32, 128), "float16")
    (c,) = run(kernel, [a, b], [((128, 128), "float32")])
    assert_close(c, a.astype(np.float32) @ b.astype(np.float32), "float16")


def test_pipelined_schedule_equal_to_jtile_is_accepted_and_copy_options_recorded():
    def kernel(A, O):
        with T.Kernel(1, threads=128):
            s = T.alloc_shared((16, 16), "float32")
            acc = T.alloc_fragment((16, 16), "float32")
            T.clear(acc)
            for k in T.Pipelined(4, num_stages=3, order=[0, 1], stage=[0, 2],
                                 group=[[0], [1]]):
                T.copy(A[k * 16, 0], s, disable_tma=True, eviction_policy="evict_normal")
                for i, j in T.Parallel(16, 16):
                    acc[i, j] = acc[i, j] + s[i, j]
            T.copy(acc, O)

    x = random(np.random.default_rng(33), (64, 16), "float32")
    (out,) = run(kernel, [x], [((16, 16), "float32")])
    assert_close(out, x.reshape(4, 16, 16).sum(0), "float32")


def _single_copy_kernel(body):
    def kernel(X, O):
        with T.Kernel(1, threads=32):
            body(X, O)
    return kernel


@pytest.mark.parametrize("body,match", [
    (lambda X, O: T.copy(X, O, coalesced_width=4), "coalesced_width=4 is not supported"),
    (lambda X, O: T.copy(X, O, eviction_policy="evict_first"),
     "eviction_policy='evict_first' is not supported"),
    (lambda X, O: T.copy(X, O, eviction_policy="evict_sometimes"), "is not one of"),
    (lambda X, O: T.copy(X, O, prefer_instruction="tma"), "prefer_instruction='tma'"),
    (lambda X, O: [None for _ in T.Parallel(8, coalesced_width=2)],
     "coalesced_width=2 not supported"),
])
def test_copy_and_parallel_options_refused_by_name(body, match):
    x = random(np.random.default_rng(34), (8,), "float32")
    with pytest.raises(JtileError, match=match):
        run(_single_copy_kernel(body), [x], [((8,), "float32")])


@pytest.mark.parametrize("kwargs,match", [
    ({"order": [1, 0]}, r"order=\[1, 0\] differs from program order"),
    ({"stage": [0, 0]}, r"stage=\[0, 0\] differs from jtile's stages.*stage=\[0, 1\]"),
    ({"group": [[0, 1]]}, "differs from one statement per group"),
    ({"sync": [[0, 1]]}, "manual barrier placement is not supported"),
])
def test_pipelined_manual_schedule_refused_unless_equal(kwargs, match):
    def kernel(A, O):
        with T.Kernel(1, threads=32):
            s = T.alloc_shared((8,), "float32")
            for k in T.Pipelined(2, num_stages=2, **kwargs):
                T.copy(A[k * 8], s)
                T.copy(s, O[k * 8])

    x = random(np.random.default_rng(35), (16,), "float32")
    with pytest.raises(JtileError, match=match):
        run(kernel, [x], [((16,), "float32")])


@pytest.mark.parametrize("make,match", [
    (lambda: T.Kernel(2, prelude="#define X 1"), r"prelude=\.\.\.\) injects raw C"),
    (lambda: T.Kernel(4, cluster_dims=3), r"does not divide the grid \(4,\)"),
    (lambda: T.Kernel(16, cluster_dims=16), "at most 8"),
    (lambda: T.Kernel(2, threads=(32, 2, 2, 2)), r"threads=\(32, 2, 2, 2\) must have 1 to 3"),
])
def test_kernel_arguments_refused_by_name(make, match):
    def kernel(X, O):
        with make():
            T.copy(X, O)

    x = random(np.random.default_rng(36), (8,), "float32")
    with pytest.raises(JtileError, match=match):
        run(kernel, [x], [((8,), "float32")])


def test_cluster_kernel_alias_and_padded_threads_accepted():
    def kernel(X, O):
        with T.ClusterKernel(4, cluster_dims=2, threads=(32, 1, 1)) as bx:
            for i in T.Parallel(8):
                O[bx * 8 + i] = X[bx * 8 + i] * 2.0

    x = random(np.random.default_rng(37), (32,), "float32")
    (out,) = run(kernel, [x], [((32,), "float32")])
    assert_close(out, 2 * x, "float32")


@pytest.mark.parametrize("call,match", [
    (lambda a, b, c: T.gemm(a, b, c, k_pack=3), "k_pack=3: TileLang takes k_pack 1 or 2"),
    (lambda a, b, c: T.gemm(a, b, c, wg_wait=-2), "wg_wait=-2: TileLang takes an int, -1"),
    (lambda a, b, c: T.wait_wgmma(-1), r"T.wait_wgmma\(-1\): the number of wgmma groups"),
    (lambda a, b, c: T.gemm(a, b, c, policy=7), "policy=7 is not a T.GemmWarpPolicy"),
])
def test_gemm_issue_options_refused_by_name(call, match):
    def kernel(A, O):
        with T.Kernel(1, threads=128):
            a = T.alloc_shared((32, 32), "float16")
            acc = T.alloc_fragment((32, 32), "float32")
            T.copy(A, a)
            call(a, a, acc)
            T.copy(acc, O)

    x = random(np.random.default_rng(38), (32, 32), "float16")
    with pytest.raises(JtileError, match=match):
        run(kernel, [x], [((32, 32), "float32")])
