"""`T.gemm(..., clear_accum=(j == 0))` with a traced flag, as TileLang's FlashMLA example
writes it inside `T.unroll`: C is zeroed where the flag holds, then accumulated. Interpret
mode, compiled for sm_80 and sm_90a, and compiled against interpret mode on a GPU."""

import jax
import numpy as np
import pytest

import jtile
import jtile.language as T
from tests.language.kernel_runs import run_both_ways


def k_halves(A, B, C):
    """C = A @ B as two gemms over K halves; the first clears C through a traced flag."""
    with T.Kernel(1, threads=128):
        a = T.alloc_shared((64, 64), "float16")
        b = T.alloc_shared((64, 64), "float16")
        acc = T.alloc_fragment((64, 64), "float32")
        T.copy(A, a)
        T.copy(B, b)
        for j in T.unroll(2):
            T.gemm(a[:, j * 32:(j + 1) * 32], b[j * 32:(j + 1) * 32, :], acc,
                   clear_accum=(j == 0))
        T.copy(acc, C)


def test_a_traced_clear_accum_zeroes_where_it_holds():
    rng = np.random.default_rng(31)
    a, b = (rng.integers(-3, 4, (64, 64)).astype(np.float16) for _ in range(2))
    (c,), _ = run_both_ways(k_halves, (a, b), jax.ShapeDtypeStruct((64, 64), np.float32))
    np.testing.assert_array_equal(c, a.astype(np.float64) @ b.astype(np.float64))


def test_a_traced_clear_accum_needs_the_whole_accumulator():
    def part(A, B, C):
        with T.Kernel(1, threads=128):
            a = T.alloc_shared((64, 32), "float16")
            b = T.alloc_shared((32, 32), "float16")
            acc = T.alloc_fragment((64, 64), "float32")
            T.copy(A, a)
            T.copy(B, b)
            T.clear(acc)
            for j in T.unroll(2):
                T.gemm(a, b, acc[:, j * 32:(j + 1) * 32], clear_accum=(j == 0))
            T.copy(acc, C)

    call = jtile.pallas_like(part, out_shape=jax.ShapeDtypeStruct((64, 64), np.float32),
                             interpret=True)
    with pytest.raises(jtile.JtileError, match="a traced clear_accum needs C to be a whole "
                                               "fragment"):
        call(np.ones((64, 32), np.float16), np.ones((32, 32), np.float16))
