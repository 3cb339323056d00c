"""TileLang's eager calling style: static values passed in the call beside the arrays.

TileLang's `examples/elementwise/example_elementwise_add.py` calls its `@tilelang.jit` kernel
as `elementwise_add(a, b, block_M=32, block_N=32, threads=128, in_dtype=T.float32,
out_dtype=T.float32)`; with jtile the launcher is `jtile.pallas_like(elementwise_add)` and the
call stays as it is. Positional static values after the arrays work too."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jtile
import jtile.language as T
from tests.gpu.compare import seed_of


def elementwise_add(A, B, block_M, block_N, in_dtype, out_dtype, threads):
    # TileLang's example body, unchanged.
    M, N = T.const("M, N")

    A: T.Tensor((M, N), in_dtype)
    B: T.Tensor((M, N), in_dtype)
    C = T.empty((M, N), out_dtype)

    with T.Kernel(T.ceildiv(N, block_N), T.ceildiv(M, block_M), threads=threads) as (bx, by):
        A_shared = T.alloc_shared((block_M, block_N), in_dtype)
        B_shared = T.alloc_shared((block_M, block_N), in_dtype)
        C_local = T.alloc_fragment((block_M, block_N), out_dtype)
        C_shared = T.alloc_shared((block_M, block_N), out_dtype)

        T.copy(A[by * block_M, bx * block_N], A_shared)
        T.copy(B[by * block_M, bx * block_N], B_shared)
        for local_y, local_x in T.Parallel(block_M, block_N):
            C_local[local_y, local_x] = A_shared[local_y, local_x] + B_shared[local_y, local_x]
        T.copy(C_local, C_shared)
        T.copy(C_shared, C[by * block_M, bx * block_N])

    return C


def _inputs(m=96, n=80):
    rng = np.random.default_rng(seed_of("static_call_arguments"))
    return (jnp.asarray(rng.standard_normal((m, n)), jnp.float32),
            jnp.asarray(rng.standard_normal((m, n)), jnp.float32))


@pytest.mark.parametrize("call", [
    lambda f, a, b: f(a, b, block_M=32, block_N=32, threads=128, in_dtype=T.float32,
                      out_dtype=T.float32),
    lambda f, a, b: f(a, b, block_M=32, block_N=32, threads=128, in_dtype="float32",
                      out_dtype="float32"),
    lambda f, a, b: f(a, b, 32, 32, "float32", "float32", 128),
    lambda f, a, b: f(a, b, 32, 32, "float32", out_dtype="float32", threads=128),
], ids=["keywords-dtypes", "keywords-names", "positional", "mixed"])
def test_tilelang_eager_call_runs_as_tilelang_calls_it(call):
    a, b = _inputs()
    f = jtile.pallas_like(elementwise_add, interpret=True)
    out = call(f, a, b)
    np.testing.assert_allclose(np.asarray(out), np.asarray(a) + np.asarray(b), rtol=1e-6,
                               atol=1e-6)


def test_one_launcher_per_set_of_static_values_under_jit():
    a, b = _inputs()
    f = jtile.pallas_like(elementwise_add, interpret=True)
    static = dict(block_M=32, block_N=32, threads=128, in_dtype="float32", out_dtype="float32")
    first = jax.jit(lambda a, b: f(a, b, **static))(a, b)
    second = f(a, b, **static)
    np.testing.assert_array_equal(np.asarray(first), np.asarray(second))
    assert len(f._bound) == 1
    f(a, b, **dict(static, block_M=16))
    assert len(f._bound) == 2


def test_lower_takes_the_same_static_values():
    spec = jax.ShapeDtypeStruct((128, 128), jnp.float32)
    f = jtile.pallas_like(elementwise_add)
    lowered = f.lower(spec, spec, block_M=32, block_N=64, threads=128, in_dtype="float32",
                      out_dtype="float32", target="sm_90a")
    assert "elementwise_add" in lowered.cuda_source()


@pytest.mark.parametrize("call,message", [
    (lambda f, a, b: f(a, B=b, block_M=32), "array argument B= is passed by keyword"),
    (lambda f, a, b: f(a, "float32", b), "argument 2 is an array after the static value"),
    (lambda f, a, b: f(a, b, 32, 32, "float32", in_dtype="float32"),
     "parameter in_dtype is given both by position and by keyword"),
])
def test_static_values_that_cannot_bind_are_refused_by_name(call, message):
    a, b = _inputs()
    f = jtile.pallas_like(elementwise_add, interpret=True)
    with pytest.raises(jtile.JtileError, match=message):
        call(f, a, b)
