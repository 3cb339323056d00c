"""TileLang's warp-level operations in per-thread code: T.shfl_xor / shfl_down / shfl_up /
shfl_sync (and TVM's T.tvm_warp_shuffle*), T.warp_reduce_*, T.any_sync / all_sync /
ballot_sync. Checked against NumPy models of CUDA's lane rules, in interpret mode, compiled for
sm_80 and sm_90a, and run on a GPU where one is present (bit for bit)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jtile
import jtile.language as T
from tests.language.kernel_runs import run_both_ways

THREADS = 64
LANE = np.arange(THREADS) % 32
BASE = np.arange(THREADS) - LANE


def _shuffle_ref(x, kind, arg, width):
    """CUDA's __shfl_*_sync(0xffffffff, x, arg, width) for every thread."""
    group = LANE - LANE % width
    if kind == "xor":
        j = LANE ^ arg
        j = np.where(j < group + width, j, LANE)
    elif kind == "down":
        j = LANE + arg
        j = np.where(j < group + width, j, LANE)
    elif kind == "up":
        j = LANE - arg
        j = np.where(j >= group, j, LANE)
    else:
        j = group + np.asarray(arg) % width
    return x[BASE + j]


def shuffles(X, O, *, dtype):
    with T.Kernel(1, threads=THREADS):
        tx = T.get_thread_binding()
        v = T.alloc_var(dtype)
        v = X[tx]
        O[0, tx] = T.shfl_xor(v, 5)
        O[1, tx] = T.shfl_xor(v, 2, 4)
        O[2, tx] = T.shfl_down(v, 3, 8)
        O[3, tx] = T.shfl_up(v, 1, 16)
        O[4, tx] = T.shfl_sync(v, tx * 3 + 1)
        O[5, tx] = T.tvm_warp_shuffle(0xFFFFFFFF, v, (tx + 5) % 32, 8, 32)
        O[6, tx] = T.tvm_warp_shuffle_down(0xFFFFFFFF, v, 16, 32, 32)
        O[7, tx] = T.tvm_warp_shuffle_up(0xFFFFFFFF, v, 7, 32, 32)


@pytest.mark.parametrize("dtype", ["float32", "int32", "float16", "bfloat16", "int8", "uint16",
                                   "uint8"])
def test_shuffles_follow_cudas_lane_rules(dtype):
    rng = np.random.default_rng(21)
    x = np.asarray(rng.integers(1, 100, THREADS)).astype(jnp.dtype(dtype))
    kernel = functools.partial(shuffles, dtype=dtype)
    (out,), _ = run_both_ways(kernel, (x,), jax.ShapeDtypeStruct((8, THREADS), x.dtype))
    t = np.arange(THREADS)
    want = [_shuffle_ref(x, "xor", 5, 32), _shuffle_ref(x, "xor", 2, 4),
            _shuffle_ref(x, "down", 3, 8), _shuffle_ref(x, "up", 1, 16),
            _shuffle_ref(x, "idx", t * 3 + 1, 32), _shuffle_ref(x, "idx", (t + 5) % 32, 8),
            _shuffle_ref(x, "down", 16, 32), _shuffle_ref(x, "up", 7, 32)]
    for row, expected in enumerate(want):
        np.testing.assert_array_equal(out[row], expected, err_msg=f"row {row}")


def reductions_and_votes(X, O, V):
    with T.Kernel(1, threads=THREADS):
        tx = T.get_thread_binding()
        v = T.alloc_var("int32")
        v = X[tx]
        O[0, tx] = T.warp_reduce_sum(v)
        O[1, tx] = T.warp_reduce_max(v)
        O[2, tx] = T.warp_reduce_min(v)
        O[3, tx] = T.warp_reduce_bitand(v)
        O[4, tx] = T.warp_reduce_bitor(v)
        O[5, tx] = T.any_sync(v > 90)
        O[6, tx] = T.all_sync(v > 0)
        V[tx] = T.ballot_sync(v % 2 == 1)


def test_warp_reductions_and_votes():
    x = np.random.default_rng(22).integers(1, 100, THREADS).astype(np.int32)
    x[40:] = np.arange(1, 25) * 2       # the second warp: no value above 90 at all? (set below)
    x[40] = 95
    outs = (jax.ShapeDtypeStruct((7, THREADS), jnp.int32),
            jax.ShapeDtypeStruct((THREADS,), jnp.uint32))
    (out, votes), _ = run_both_ways(reductions_and_votes, (x,), outs)
    warps = x.reshape(2, 32)
    per_warp = [warps.sum(1), warps.max(1), warps.min(1), np.bitwise_and.reduce(warps, 1),
                np.bitwise_or.reduce(warps, 1), (warps > 90).any(1), (warps > 0).all(1)]
    for row, expected in enumerate(per_warp):
        np.testing.assert_array_equal(out[row], np.repeat(expected.astype(np.int32), 32),
                                      err_msg=f"row {row}")
    bits = [sum(1 << i for i in range(32) if w[i] % 2 == 1) for w in warps]
    np.testing.assert_array_equal(votes, np.repeat(np.array(bits, np.uint32), 32))


def test_a_float_warp_sum_is_the_butterfly_sum_bit_for_bit():
    def warp_sums(X, O):
        with T.Kernel(1, threads=THREADS):
            tx = T.get_thread_binding()
            O[tx] = T.warp_reduce_sum(X[tx])

    x = np.random.default_rng(23).standard_normal(THREADS).astype(np.float32)
    (out,), _ = run_both_ways(warp_sums, (x,), jax.ShapeDtypeStruct((THREADS,), jnp.float32))
    v = x.copy()
    for offset in (16, 8, 4, 2, 1):
        v = v + v[BASE + (LANE ^ offset)]
    np.testing.assert_array_equal(out, v)


def test_a_block_smaller_than_a_warp_shuffles_within_its_lanes():
    """TileLang's Hadamard transform runs 8-thread blocks that exchange within groups of 8."""
    def butterfly(X, O):
        with T.Kernel(1, threads=8):
            tx = T.get_thread_binding()
            v = T.alloc_var("float32")
            v = X[tx]
            for i in T.serial(3):
                other = T.tvm_warp_shuffle(0xFFFFFFFF, v, tx ^ (1 << i), 8, 8)
                v = T.if_then_else((tx >> i) & 1 == 0, v + other, other - v)
            O[tx] = v

    x = np.random.default_rng(24).integers(-9, 9, 8).astype(np.float32)
    (out,), cuda = run_both_ways(butterfly, (x,), jax.ShapeDtypeStruct((8,), jnp.float32))
    hadamard = np.array([[1.0]])
    for _ in range(3):
        hadamard = np.block([[hadamard, hadamard], [hadamard, -hadamard]])
    np.testing.assert_array_equal(out, hadamard @ x)
    assert "0xffu)" in cuda   # the 8 lanes that exist take part


@pytest.mark.parametrize("case, rule", [
    ("parallel", r"T.shfl_xor inside T.Parallel"),
    ("mask", r"mask=65535: jtile's warp operations run over the full warp"),
    ("width", r"width=6 must be a static power of 2"),
    ("threads", r"needs groups \(width=32\) of lanes that exist; the kernel has threads=16"),
    ("threads_reduce", r"T.warp_reduce_sum needs whole warps; the kernel has threads=16"),
    ("float_vote", r"T.any_sync takes an integer or boolean predicate"),
    ("bitand_float", r"T.warp_reduce_bitand takes integers"),
])
def test_refusals(case, rule):
    def bad(X, O):
        with T.Kernel(1, threads=16 if case.startswith("threads") else 32):
            tx = T.get_thread_binding()
            if case == "parallel":
                for i in T.Parallel(32):
                    O[i] = T.shfl_xor(X[i], 1)
            elif case == "mask":
                O[tx] = T.shfl_xor(X[tx], 1, mask=0xFFFF)
            elif case == "width":
                O[tx] = T.shfl_down(X[tx], 1, 6)
            elif case == "threads":
                O[tx] = T.shfl_xor(X[tx], 1)
            elif case == "threads_reduce":
                O[tx] = T.warp_reduce_sum(X[tx])
            elif case == "float_vote":
                O[tx] = T.cast(T.any_sync(X[tx]), "float32")
            else:
                O[tx] = T.warp_reduce_bitand(X[tx])

    f = jtile.pallas_like(bad, out_shape=jax.ShapeDtypeStruct((32,), jnp.float32), interpret=True)
    with pytest.raises(jtile.JtileTraceError, match=r"bad \(test_warp_ops.py:\d+\): .*" + rule):
        f(np.ones(32, np.float32))
