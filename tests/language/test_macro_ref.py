"""`T.Ref` parameters of `T.macro` (TileLang's eager-JIT tutorial, "Passing references with
T.Ref" and "Recursive macros"): the parameter refers to the caller's buffer element or
T.alloc_var, reads its current value where used and stores into it when assigned; passed on,
the same location follows (recursion). Checked in interpret mode, compiled for sm_80 and
sm_90a, and run compiled where a GPU is present."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jtile
import jtile.language as T
from tests.language.kernel_runs import run_both_ways


@T.macro
def macro_with_ref(x: T.Ref):
    x = 1  # noqa: F841  (stores into the caller's element)


@T.macro
def n31(x, var: T.Ref):
    """TileLang's recursive macro: the Collatz steps of the static x, applied to var."""
    if x == 1:
        pass
    elif x % 2 == 0:
        var = var // 2
        n31(x // 2, var)
    else:
        var = var * 3 + 1
        n31(x * 3 + 1, var)


def _collatz(n, value):
    while n != 1:
        if n % 2 == 0:
            value, n = value // 2, n // 2
        else:
            value, n = value * 3 + 1, n * 3 + 1
    return value


@pytest.mark.parametrize("n", [5, 6, 7])
def test_recursive_macro_updates_the_element_it_was_given(n):
    def foo(A: T.Tensor((1,), T.int32)):
        with T.Kernel(1) as _:
            n31(n, A[0])

    (out,), _ = run_both_ways(foo, (np.array([100], np.int32),), None,
                              input_output_aliases={0: 0})
    assert int(out[0]) == _collatz(n, 100)
    if n == 5:
        assert int(out[0]) == 18     # the tutorial's printed result


def test_constant_and_variable_indices_and_a_var():
    @T.macro
    def add_twice(acc: T.Ref, v):
        acc = acc + v
        acc += v                     # an augmented assignment stores too

    def foo(X: T.Tensor((4,), T.float32)):
        with T.Kernel(1) as _:
            macro_with_ref(X[1])
            idx = T.alloc_var(T.int32, 2)
            macro_with_ref(X[idx])
            total = T.alloc_var(T.float32, 0.5)
            add_twice(total, X[0])
            add_twice(X[3], 2.0)
            X[0] = total

    x = np.array([3.0, 7.0, 9.0, 4.0], np.float32)
    (out,), _ = run_both_ways(foo, (x,), None, input_output_aliases={0: 0})
    np.testing.assert_array_equal(out, [0.5 + 3.0 + 3.0, 1.0, 1.0, 8.0])


def test_a_per_thread_element_in_per_thread_code():
    def foo(X: T.Tensor((128,), T.int32)):
        with T.Kernel(1, threads=128) as _:
            tx = T.get_thread_binding()
            n31(6, X[tx])            # 6 -> 3 -> 10 -> 5 -> 16 -> 8 -> 4 -> 2 -> 1

    x = np.arange(128, dtype=np.int32) * 7
    (out,), _ = run_both_ways(foo, (x,), None, input_output_aliases={0: 0})
    np.testing.assert_array_equal(out, [_collatz(6, int(v)) for v in x])


@pytest.mark.parametrize("given", ["constant", "expression"])
def test_a_value_that_is_no_location_is_refused(given):
    def foo(X: T.Tensor((4,), T.float32)):
        with T.Kernel(1) as _:
            macro_with_ref(2.0 if given == "constant" else X[0] * 2)

    call = jtile.pallas_like(foo, input_output_aliases={0: 0}, interpret=True)
    with pytest.raises(jtile.JtileError, match=r"T.Ref parameter `x` of T.macro macro_with_ref "
                                               r"was given .*: it needs a location to store "
                                               r"into, a buffer element \(`A\[i\]`\) or a "
                                               r"T.alloc_var"):
        call(np.zeros(4, np.float32))


def test_ref_is_an_annotation_only():
    with pytest.raises(TypeError, match="T.Ref is an annotation"):
        T.Ref()
