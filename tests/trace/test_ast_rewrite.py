"""The rewrite of kernel bodies: source lines, closures, nested functions, decorators, and
kernels whose source cannot be read."""

import functools
import textwrap
import traceback

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jtile
import jtile.language as T
from jtile.ir import nodes as ir
from jtile.trace.ast_rewrite import prepare
from tests.trace.helpers import trace1

BLOCK = 64


def _x(seed=0, n=BLOCK):
    return jax.random.normal(jax.random.PRNGKey(seed), (n,), jnp.float32)


def _run(kernel, x):
    f = jtile.pallas_like(kernel, out_shape=jax.ShapeDtypeStruct(x.shape, x.dtype),
                          interpret=True)
    out = np.asarray(f(x))
    f.lower(x, target="sm_90a").cuda_source()
    return out


def clip_kernel(X, O):
    with T.Kernel(1, threads=BLOCK):
        for i in T.Parallel(BLOCK):
            if X[i] > 0.5:
                O[i] = 0.5
            else:
                O[i] = X[i]


def test_rewritten_function_keeps_the_file_and_lines():
    prepared = prepare(clip_kernel)
    assert prepared.rewritten
    code = prepared.fn.__code__
    assert code.co_filename == clip_kernel.__code__.co_filename
    assert code.co_firstlineno == clip_kernel.__code__.co_firstlineno
    assert prepare(clip_kernel).fn is prepared.fn  # cached


def test_errors_inside_a_rewritten_body_point_at_the_users_line():
    def bad_copy(X, O):
        with T.Kernel(1, threads=BLOCK) as bx:
            s = T.alloc_shared((BLOCK, 2), "float32")
            if bx == 0:
                T.copy(X, s)

    line = bad_copy.__code__.co_firstlineno + 4
    with pytest.raises(jtile.JtileError) as info:
        trace1(bad_copy)
    assert f"test_ast_rewrite.py:{line}" in str(info.value)
    frames = traceback.extract_tb(info.value.__traceback__)
    user = [f for f in frames if f.filename == __file__]
    assert user[-1].lineno == line and "T.copy(X, s)" in user[-1].line


def test_closures_and_nonlocal_state_are_shared_with_the_original():
    calls = []
    threshold = 0.25

    def make():
        count = 0

        def kernel(X, O):
            nonlocal count
            count += 1
            calls.append(count)
            with T.Kernel(1, threads=BLOCK):
                for i in T.Parallel(BLOCK):
                    O[i] = X[i] if X[i] > threshold else -1.0

        return kernel, lambda: count

    kernel, read_count = make()
    x = _x(1)
    np.testing.assert_allclose(_run(kernel, x), np.where(np.asarray(x) > threshold, x, -1.0))
    assert read_count() == 1 and calls == [1]


def test_nested_helper_functions_are_rewritten_too():
    def kernel(X, O):
        def relu_into(dst, src, i):
            if src[i] > 0:
                dst[i] = src[i]
            else:
                dst[i] = 0.0

        with T.Kernel(1, threads=BLOCK):
            for i in T.Parallel(BLOCK):
                relu_into(O, X, i)

    x = _x(2)
    np.testing.assert_allclose(_run(kernel, x), np.maximum(np.asarray(x), 0.0))


def scaled_kernel(X, O, scale=1.0, use_abs=False):
    with T.Kernel(1, threads=BLOCK):
        for i in T.Parallel(BLOCK):
            if use_abs and X[i] < 0:
                O[i] = -X[i] * scale
            else:
                O[i] = X[i] * scale


def test_functools_partial_kernels_are_rewritten():
    kernel = functools.partial(scaled_kernel, scale=3.0, use_abs=True)
    prepared = prepare(kernel)
    assert prepared.rewritten and isinstance(prepared.fn, functools.partial)
    x = _x(3)
    np.testing.assert_allclose(_run(kernel, x), np.abs(np.asarray(x)) * 3.0, rtol=1e-6)


def test_macros_are_rewritten():
    @T.macro
    def leaky(dst, src, i, slope):
        dst[i] = src[i] if src[i] > 0 else src[i] * slope

    def kernel(X, O):
        with T.Kernel(1, threads=BLOCK):
            for i in T.Parallel(BLOCK):
                leaky(O, X, i, 0.1)

    x = _x(4)
    xn = np.asarray(x)
    np.testing.assert_allclose(_run(kernel, x), np.where(xn > 0, xn, xn * 0.1), rtol=1e-6)
    with pytest.raises(jtile.JtileTraceError, match="outside a kernel trace"):
        leaky(None, None, 0, 0.1)


def test_a_decorated_kernel_runs_without_the_rewrite_when_it_does_not_need_it():
    def logged(fn):
        @functools.wraps(fn)
        def wrapper(*args):
            return fn(*args)
        return wrapper

    @logged
    def copy_kernel(X, O):
        with T.Kernel(1, threads=BLOCK):
            T.copy(X, O)

    assert not prepare(copy_kernel).rewritten
    x = _x(5)
    np.testing.assert_allclose(_run(copy_kernel, x), x)


def _exec_kernel(source: str):
    namespace = {"T": T, "BLOCK": BLOCK}
    exec(textwrap.dedent(source), namespace)  # no file: inspect cannot read the source
    return namespace["kernel"]


def test_kernels_without_source_work_when_they_need_no_rewrite():
    kernel = _exec_kernel("""
        def kernel(X, O):
            with T.Kernel(1, threads=BLOCK):
                for i in T.Parallel(BLOCK):
                    O[i] = X[i] * 2.0
    """)
    assert not prepare(kernel).rewritten
    x = _x(6)
    np.testing.assert_allclose(_run(kernel, x), np.asarray(x) * 2.0)


def test_kernels_without_source_that_need_the_rewrite_are_refused_by_name():
    kernel = _exec_kernel("""
        def kernel(X, O):
            with T.Kernel(1, threads=BLOCK):
                for i in T.Parallel(BLOCK):
                    if X[i] > 0:
                        O[i] = X[i]
    """)
    with pytest.raises(jtile.JtileTraceError,
                       match=r"^kernel \(<string>:2\): .*T\.If.*only where it can read the "
                             r"kernel's source, and here it cannot"):
        trace1(kernel)


def test_lambda_kernels_are_refused_when_they_need_the_rewrite():
    flip = lambda X, O: [T.Kernel(1, threads=BLOCK).__enter__(),  # noqa: E731
                         T.fill(O, 1.0 if X[0] > 0 else 0.0)]
    with pytest.raises(jtile.JtileTraceError, match=r"it is a lambda"):
        trace1(flip)


def test_existing_t_if_t_else_and_serial_keep_working_beside_python_if():
    def both(X, O):
        with T.Kernel(1, threads=BLOCK):
            for i in T.Parallel(BLOCK):
                with T.If(X[i] > 0):
                    O[i] = 1.0
                with T.Else():
                    if X[i] < -1:
                        O[i] = -2.0
                    else:
                        O[i] = T.if_then_else(X[i] < -0.5, -1.0, 0.0)

    kernel = trace1(both)
    (loop,) = kernel.body
    (outer,) = loop.body
    assert isinstance(outer, ir.IfThenElse) and isinstance(outer.else_body[0], ir.IfThenElse)
    x = _x(7)
    xn = np.asarray(x)
    want = np.where(xn > 0, 1.0, np.where(xn < -1, -2.0, np.where(xn < -0.5, -1.0, 0.0)))
    np.testing.assert_allclose(_run(both, x), want)
