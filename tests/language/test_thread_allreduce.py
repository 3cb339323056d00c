"""TVM's cross-thread reduction as TileLang writes it (`T.attr(T.comm_reducer(...),
"reduce_scope", ...)` around `T.tvm_thread_allreduce`): each thread gets the combination of
its group's values, over one or more thread dimensions, in interpret mode and compiled; the
forms jtile does not take are refused by name. TileLang's GEMV with it: tests/tilelang/gemv.py.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jtile
import jtile.language as T
from jtile import JtileError
from tests.gpu.compare import assert_close, seed_of

S = jax.ShapeDtypeStruct


def _kernel(threads, axes, combine, identity):
    """Out[t] = the combination, over the threads differing from t along `axes` only, of
    X[t] (one value per thread, threads=`threads`)."""
    def kernel(X, Out):
        with T.Kernel(1, threads=threads):
            dims = [T.get_thread_binding(d) for d in range(len(threads) if isinstance(
                threads, tuple) else 1)]
            tx = T.get_thread_binding(0) if not isinstance(threads, tuple) else None
            flat = tx if tx is not None else dims[0] + threads[0] * (
                dims[1] if len(dims) == 2 else dims[1] + threads[1] * dims[2])
            value = T.alloc_local((1,), "float32")
            result = T.alloc_local((1,), "float32")
            value[0] = X[flat]
            with T.attr(T.comm_reducer(combine, [identity]), "reduce_scope",
                        T.reinterpret(T.uint64(0), dtype="handle")):
                T.evaluate(T.tvm_thread_allreduce(T.uint32(1), value[0], True, result[0],
                                                  *[dims[a] for a in axes], dtype="handle"))
            Out[flat] = result[0]
    return kernel


CASES = [  # (threads, reduced axes, combine, identity, numpy reduction)
    (128, (0,), lambda x, y: x + y, 0.0, np.sum),
    ((4, 32), (1,), lambda x, y: x + y, 0.0, np.sum),
    ((8, 4, 4), (0, 2), lambda x, y: T.max(x, y), -np.inf, np.max),
]


def _expected(x, threads, axes, reduce):
    shape = threads if isinstance(threads, tuple) else (threads,)
    grid = np.asarray(x, np.float64).reshape(shape[::-1])     # x fastest: last numpy axis
    np_axes = tuple(len(shape) - 1 - a for a in axes)
    return np.broadcast_to(reduce(grid, axis=np_axes, keepdims=True), grid.shape).reshape(-1)


@pytest.mark.parametrize("case", range(len(CASES)))
@pytest.mark.parametrize("interpret", [True, pytest.param(False, marks=pytest.mark.gpu)])
def test_each_thread_gets_its_group_s_combination(case, interpret):
    threads, axes, combine, identity, reduce = CASES[case]
    n = int(np.prod(threads))
    x = jax.random.normal(jax.random.PRNGKey(seed_of(f"allreduce{case}")), (n,), jnp.float32)
    call = jtile.pallas_like(_kernel(threads, axes, combine, identity),
                             out_shape=S((n,), jnp.float32), interpret=interpret)
    assert_close(call(x), _expected(x, threads, axes, reduce), jnp.float32, name="allreduce")


@pytest.mark.parametrize("target", ["sm_80", "sm_90a"])
def test_compiles(target):
    threads, axes, combine, identity, _ = CASES[1]
    call = jtile.pallas_like(_kernel(threads, axes, combine, identity),
                             out_shape=S((128,), jnp.float32))
    assert call.lower(S((128,), jnp.float32), target=target).compile().cubin[:4] == b"\x7fELF"


def _refused(body):
    def kernel(X, Out):
        with T.Kernel(1, threads=64):
            v = T.alloc_local((1,), "float32")
            r = T.alloc_local((1,), "float32")
            v[0] = X[T.get_thread_binding()]
            body(v, r)
            Out[T.get_thread_binding()] = r[0]

    call = jtile.pallas_like(kernel, out_shape=S((64,), jnp.float32), interpret=True)
    return call(jnp.ones((64,), jnp.float32))


def _scope():
    return T.attr(T.comm_reducer(lambda x, y: x + y, [0.0]), "reduce_scope",
                  T.reinterpret(T.uint64(0), dtype="handle"))


@pytest.mark.parametrize("body, rule", [
    (lambda v, r: T.evaluate(T.tvm_thread_allreduce(1, v[0], True, r[0],
                                                    T.get_thread_binding())),
     r"outside `with T.attr\(T.comm_reducer"),
    (lambda v, r: T.attr(T.comm_reducer(lambda x, y: x + y, [0.0]), "pragma_unroll", 1),
     r"takes only a T.comm_reducer's \"reduce_scope\""),
    (lambda v, r: T.evaluate(v[0] + 1), r"T.evaluate of an expression computes nothing"),
    (lambda v, r: T.comm_reducer(lambda x, y: x + y, [0.0, 0.0]),
     r"reduces one value at a time"),
])
def test_refused_forms(body, rule):
    with pytest.raises(JtileError, match=rule):
        _refused(body)


@pytest.mark.parametrize("args, rule", [
    ((2,), r"one value at a time \(size 1, got 2\)"),
    ((1, "cond"), r"a condition other than True"),
    ((1, "axis"), r"is not a thread index of the block"),
])
def test_refused_arguments(args, rule):
    def body(v, r):
        size = args[0]
        cond = v[0] > 0 if "cond" in args else True
        axis = v[0] if "axis" in args else T.get_thread_binding()
        with _scope():
            T.tvm_thread_allreduce(size, v[0], cond, r[0], axis)

    with pytest.raises(JtileError, match=rule):
        _refused(body)
