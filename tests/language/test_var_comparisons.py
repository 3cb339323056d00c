"""A `T.alloc_var` compares as its value with `==` and `!=`, on either side and against another
variable, as TileLang's variables do (it used to compare by identity: `x == 0` was False while
tracing, so `if x == 0:` silently never ran). Interpret mode, compiled for sm_80 and sm_90a,
and run on a GPU where one is present."""

import jax
import jax.numpy as jnp
import numpy as np

from tests.language.kernel_runs import run_both_ways
import jtile.language as T


def test_variables_compare_by_value():
    def classify(X, O):
        with T.Kernel(1, threads=128):
            tx = T.get_thread_binding()
            a = T.alloc_var("int32")
            b = T.alloc_var("int32")
            a = X[tx]
            b = X[(tx + 1) % 128]
            code = T.alloc_var("int32")
            code = 0
            if a == b:
                code = code + 1
            if a != 2:
                code = code + 10
            if 3 == a:
                code = code + 100
            if b == 0:
                code = code + 1000
            O[tx] = code

    x = np.random.default_rng(12).integers(0, 4, 128).astype(np.int32)
    nxt = np.roll(x, -1)
    want = (x == nxt) * 1 + (x != 2) * 10 + (x == 3) * 100 + (nxt == 0) * 1000
    (out,), _ = run_both_ways(classify, (x,), jax.ShapeDtypeStruct((128,), jnp.int32))
    np.testing.assert_array_equal(out, want)


def test_a_variable_is_itself_and_differs_from_a_tile():
    def same(X, O):
        with T.Kernel(1, threads=32):
            v = T.alloc_var("int32")
            tile = T.alloc_shared((1,), "int32")
            assert (v == v) is True and (v != v) is False
            assert (v == tile) is False and (tile == v) is False
            O[0] = X[0]

    x = np.arange(1, dtype=np.int32)
    (out,), _ = run_both_ways(same, (x,), jax.ShapeDtypeStruct((1,), jnp.int32))
    assert out[0] == 0
