"""Interpret mode: tile ops (copy, gemm, reduce, atomic add), reducers and local variables."""

import numpy as np
import pytest

import jtile.language as T
from jtile.errors import JtileError

from interpret_helpers import assert_close, random, run


def test_tiled_copy_through_shared_ragged_edges():
    def kernel(X, O):
        M, N = X.shape
        with T.Kernel(T.ceildiv(N, 32), T.ceildiv(M, 16)) as (bx, by):
            tile = T.alloc_shared((16, 32), "float32")
            T.copy(X[by * 16, bx * 32], tile)
            T.copy(tile, O[by * 16:(by + 1) * 16, bx * 32:(bx + 1) * 32])

    x = random(np.random.default_rng(20), (50, 70), "float32")
    (out,) = run(kernel, [x], [((50, 70), "float32")])
    np.testing.assert_array_equal(out, x)


def test_copy_edge_reads_zero_and_casts():
    def kernel(X, O):
        with T.Kernel(1):
            tile = T.alloc_fragment((8, 8), "float16")
            T.copy(X[4, 4], tile)                     # rows/cols 4..11 of a 10x10 input
            T.copy(tile, O)

    x = random(np.random.default_rng(21), (10, 10), "float32")
    (out,) = run(kernel, [x], [((8, 8), "float16")])
    expected = np.zeros((8, 8), np.float32)
    expected[:6, :6] = x[4:, 4:]
    assert_close(out, expected, "float16")


def test_copy_row_of_matrix_into_vector():
    def kernel(X, O):
        with T.Kernel(4) as bx:
            row = T.alloc_fragment((16,), "float32")
            T.copy(X[bx, 0:16], row)
            for i in T.Parallel(16):
                row[i] = row[i] * 2.0
            T.copy(row, O[0:16, bx])                  # a column: unit dims inserted

    x = random(np.random.default_rng(22), (4, 16), "float32")
    (out,) = run(kernel, [x], [((16, 4), "float32")])
    assert_close(out, 2 * x.T, "float32")


def softmax_kernel(X, O):
    M, N = X.shape
    with T.Kernel(T.ceildiv(M, 16), threads=128) as bx:
        x = T.alloc_fragment((16, N), "float32")
        row_max = T.alloc_fragment((16,), "float32")
        row_sum = T.alloc_fragment((16,), "float32")
        T.copy(X[bx * 16:(bx + 1) * 16, :], x)
        T.reduce_max(x, row_max, dim=1)
        for i, j in T.Parallel(16, N):
            x[i, j] = T.exp(x[i, j] - row_max[i])
        T.reduce_sum(x, row_sum, dim=1)
        for i, j in T.Parallel(16, N):
            x[i, j] = x[i, j] / row_sum[i]
        T.copy(x, O[bx * 16, 0])


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_row_softmax(dtype):
    x = random(np.random.default_rng(23), (40, 96), dtype, -4, 4)
    (out,) = run(softmax_kernel, [x], [((40, 96), dtype)])
    f = x.astype(np.float64)
    e = np.exp(f - f.max(axis=1, keepdims=True))
    assert_close(out, e / e.sum(axis=1, keepdims=True), dtype)


def make_gemm(transpose_a: bool, transpose_b: bool, block=(32, 32, 32)):
    BM, BN, BK = block

    def gemm_kernel(A, B, C):
        M, N = C.shape
        K = A.shape[0] if transpose_a else A.shape[1]
        with T.Kernel(T.ceildiv(N, BN), T.ceildiv(M, BM), threads=128) as (bx, by):
            a_smem = T.alloc_shared((BK, BM) if transpose_a else (BM, BK), A.dtype)
            b_smem = T.alloc_shared((BN, BK) if transpose_b else (BK, BN), B.dtype)
            acc = T.alloc_fragment((BM, BN), "float32")
            T.clear(acc)
            for k in T.Pipelined(T.ceildiv(K, BK), num_stages=3):
                if transpose_a:
                    T.copy(A[k * BK, by * BM], a_smem)
                else:
                    T.copy(A[by * BM, k * BK], a_smem)
                if transpose_b:
                    T.copy(B[bx * BN, k * BK], b_smem)
                else:
                    T.copy(B[k * BK, bx * BN], b_smem)
                T.gemm(a_smem, b_smem, acc, transpose_A=transpose_a, transpose_B=transpose_b)
            T.copy(acc, C[by * BM, bx * BN])

    return gemm_kernel


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("transpose_a,transpose_b",
                         [(False, False), (False, True), (True, False), (True, True)])
def test_gemm_pipelined_ragged(dtype, transpose_a, transpose_b):
    M, N, K = 70, 90, 100
    rng = np.random.default_rng(24 + 2 * transpose_a + transpose_b)
    a = random(rng, (K, M) if transpose_a else (M, K), dtype)
    b = random(rng, (N, K) if transpose_b else (K, N), dtype)
    (out,) = run(make_gemm(transpose_a, transpose_b), [a, b], [((M, N), dtype)])
    a32, b32 = a.astype(np.float32), b.astype(np.float32)
    expected = (a32.T if transpose_a else a32) @ (b32.T if transpose_b else b32)
    assert_close(out, expected, dtype)


def test_gemm_clear_accum_and_float32():
    def kernel(A, B, C):
        with T.Kernel(1):
            a_smem = T.alloc_shared((16, 24), "float32")
            b_smem = T.alloc_shared((24, 8), "float32")
            acc = T.alloc_fragment((16, 8), "float32")  # never cleared: clear_accum must do it
            T.copy(A, a_smem)
            T.copy(B, b_smem)
            T.gemm(a_smem, b_smem, acc, clear_accum=True)
            T.gemm(a_smem, b_smem, acc)                  # accumulates: 2 * A @ B
            T.copy(acc, C)

    rng = np.random.default_rng(30)
    a, b = random(rng, (16, 24), "float32"), random(rng, (24, 8), "float32")
    (out,) = run(kernel, [a, b], [((16, 8), "float32")])
    assert_close(out, 2 * (a.astype(np.float64) @ b), "float32")


REDUCE_REFERENCE = {
    "sum": lambda x, d: x.sum(axis=d), "max": lambda x, d: x.max(axis=d),
    "min": lambda x, d: x.min(axis=d), "abssum": lambda x, d: np.abs(x).sum(axis=d),
    "absmax": lambda x, d: np.abs(x).max(axis=d)}
REDUCE_COMBINE = {"sum": np.add, "abssum": np.add, "max": np.maximum, "absmax": np.maximum,
                  "min": np.minimum}


@pytest.mark.parametrize("clear", [True, False])
@pytest.mark.parametrize("dim", [0, 1])
@pytest.mark.parametrize("op", ["sum", "max", "min", "abssum", "absmax"])
def test_reduce(op, dim, clear):
    dst_shape = (32,) if dim == 0 else (16,)

    def kernel(X, D, O):
        with T.Kernel(1):
            x = T.alloc_fragment((16, 32), "float32")
            d = T.alloc_fragment(dst_shape, "float32")
            T.copy(X, x)
            T.copy(D, d)
            getattr(T, f"reduce_{op}")(x, d, dim=dim, clear=clear)
            T.copy(d, O)

    rng = np.random.default_rng(31)
    x, old = random(rng, (16, 32), "float32"), random(rng, dst_shape, "float32")
    (out,) = run(kernel, [x, old], [(dst_shape, "float32")])
    expected = REDUCE_REFERENCE[op](x.astype(np.float64), dim)
    if not clear:
        expected = REDUCE_COMBINE[op](old, expected)
    assert_close(out, expected, "float32")


def test_reduce_half_accumulates_in_float32():
    def kernel(X, O):
        with T.Kernel(1):
            x = T.alloc_fragment((4, 2048), "float16")
            s = T.alloc_fragment((4,), "float16")
            T.copy(X, x)
            T.reduce_sum(x, s, dim=-1)
            T.copy(s, O)

    x = random(np.random.default_rng(32), (4, 2048), "float16", 0, 1)
    (out,) = run(kernel, [x], [((4,), "float16")])
    assert_close(out, x.astype(np.float64).sum(axis=1), "float16")


def test_atomic_add_element_colliding():
    def kernel(Idx, V, Init, O):
        (N,) = Idx.shape
        with T.Kernel(T.ceildiv(N, 64)) as bx:
            for i in T.Parallel(64):
                with T.If(bx * 64 + i < N):
                    T.atomic_add(O[Idx[bx * 64 + i]], V[bx * 64 + i])
            T.atomic_add(O[0], 1.0)       # outside T.Parallel: once per thread of each block

    rng = np.random.default_rng(33)
    idx = rng.integers(0, 10, size=1000).astype(np.int32)
    v = random(rng, (1000,), "float32")
    init = random(rng, (10,), "float32")
    (out,) = run(kernel, [idx, v, init], [((10,), "float32")], aliases={2: 0})
    expected = init.astype(np.float64).copy()
    np.add.at(expected, idx, v)
    expected[0] += 16 * 128          # 16 blocks of T.Kernel's default 128 threads
    assert_close(out, expected, "float32")


def test_atomic_add_tile_colliding_ragged():
    def kernel(X, Init, O):
        M, N = X.shape
        with T.Kernel(T.ceildiv(N, 16), T.ceildiv(M, 8), 3) as (bx, by, bz):
            tile = T.alloc_fragment((8, 16), "float32")
            T.copy(X[by * 8, bx * 16], tile)
            T.atomic_add(O[by * 8, bx * 16], tile)      # every tile added by 3 blocks (bz)

    rng = np.random.default_rng(34)
    x, init = random(rng, (20, 30), "float32"), random(rng, (20, 30), "float32")
    (out,) = run(kernel, [x, init], [((20, 30), "float32")], aliases={1: 0})
    assert_close(out, init + 3 * x.astype(np.float64), "float32")


def test_reducer_sum_and_max():
    def kernel(X, S, M):
        rows, cols = X.shape
        with T.Kernel(1):
            total = T.alloc_reducer((cols,), "float32", op="sum")
            biggest = T.alloc_reducer((cols,), "float32", op="max")
            T.clear(total)
            T.fill(biggest, -T.infinity("float32"))
            for t in T.serial(rows // 16):
                for i, j in T.Parallel(16, cols):
                    total[j] += X[t * 16 + i, j]
                    biggest[j] = T.max(biggest[j], X[t * 16 + i, j])
            T.finalize_reducer(total)
            T.finalize_reducer(biggest)
            T.copy(total, S)
            T.copy(biggest, M)

    x = random(np.random.default_rng(35), (64, 24), "float32")
    s, m = run(kernel, [x], [((24,), "float32"), ((24,), "float32")])
    assert_close(s, x.astype(np.float64).sum(axis=0), "float32")
    assert_close(m, x.max(axis=0), "float32")


def test_reducer_plain_store_in_parallel_is_refused():
    def kernel(X, O):
        with T.Kernel(1):
            r = T.alloc_reducer((8,), "float32", op="sum")
            T.clear(r)
            for i, j in T.Parallel(4, 8):
                r[j] = X[i, j]
            T.finalize_reducer(r)
            T.copy(r, O)

    with pytest.raises(JtileError, match=r"reducer r .*r\[idx\] = r\[idx\] \+ v"):
        run(kernel, [np.ones((4, 8), np.float32)], [((8,), "float32")])


def test_alloc_var_counter_in_serial():
    def kernel(X, O):
        with T.Kernel(6) as bx:
            count = T.alloc_var("int32", 5)
            plain = T.alloc_var("int32")
            for k in T.serial(bx + 1):                  # traced trip count
                with T.If(X[k] > 0):
                    count[0] = count + X[k]
                plain[0] = plain + 1
            for k in T.serial(2, 8, 3):                 # k = 2, 5
                plain[0] = plain + k * 100
            O[bx, 0] = count
            O[bx, 1] = plain[0]

    x = np.random.default_rng(36).integers(-5, 6, size=8).astype(np.int32)
    (out,) = run(kernel, [x], [((6, 2), "int32")])
    for b in range(6):
        assert out[b, 0] == 5 + sum(v for v in x[:b + 1] if v > 0)
        assert out[b, 1] == (b + 1) + 700


def test_serial_inside_parallel():
    def kernel(X, O):
        with T.Kernel(1):
            acc = T.alloc_fragment((16,), "float32")
            T.clear(acc)
            for i in T.Parallel(16):
                for k in T.serial(8):
                    acc[i] = acc[i] + X[i, k]
                for k in T.serial(i):                   # trip count varies by iteration
                    acc[i] = acc[i] + 100.0
            T.copy(acc, O)

    x = random(np.random.default_rng(37), (16, 8), "float32")
    (out,) = run(kernel, [x], [((16,), "float32")])
    assert_close(out, x.astype(np.float64).sum(axis=1) + 100.0 * np.arange(16), "float32")


def test_nested_parallel_and_unroll():
    def kernel(X, O):
        with T.Kernel(2) as bx:
            tile = T.alloc_fragment((4, 8), "float32")
            T.fill(tile, 0.0)
            for i in T.Parallel(4):
                for j in T.Parallel(8):
                    with T.If(j % 2 == 0):
                        tile[i, j] = X[bx, i, j] + 1.0
            for u in T.unroll(3):
                for i, j in T.Parallel(4, 8):
                    tile[i, j] = tile[i, j] * 2.0
            T.copy(tile, O[bx, 0:4, 0:8])

    x = random(np.random.default_rng(38), (2, 4, 8), "float32")
    (out,) = run(kernel, [x], [((2, 4, 8), "float32")])
    expected = np.where(np.arange(8) % 2 == 0, x + 1.0, 0.0) * 8.0
    assert_close(out, expected, "float32")


def test_reducer_min_with_traced_row_count():
    def kernel(X, O):
        rows, cols = X.shape
        with T.Kernel(3) as bx:
            low = T.alloc_reducer((cols,), "float32", op="min")
            T.fill(low, T.max_value("float32"))
            for t in T.serial(bx + 1):                  # block b reduces rows 0..4b+3
                for i, j in T.Parallel(4, cols):
                    low[j] = T.min(X[t * 4 + i, j], low[j])
            T.finalize_reducer(low)
            T.copy(low, O[bx, 0:cols])

    x = random(np.random.default_rng(39), (12, 16), "float32")
    (out,) = run(kernel, [x], [((3, 16), "float32")])
    assert_close(out, np.stack([x[:4 * (b + 1)].min(axis=0) for b in range(3)]), "float32")
