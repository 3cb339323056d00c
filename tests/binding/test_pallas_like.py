"""`jtile.pallas_like` in interpret mode: the launcher's forms, caching, errors and transforms.

The compiled path needs a GPU to run; lowering it for CUDA is tested in test_lowered.py.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jtile
import jtile.language as T
from jtile.binding.ffi import cuda_available

N = 512
BLOCK = 128


@pytest.fixture(autouse=True)
def _no_global_switches(monkeypatch):
    # The tests choose interpret mode explicitly; a developer's environment must not leak in.
    for name in ("JTILE_INTERPRET", "JTILE_DEBUG", "JTILE_TARGET"):
        monkeypatch.delenv(name, raising=False)


def _arange(n=N, dtype=jnp.float32, scale=1.0):
    return jnp.arange(n, dtype=dtype) * scale


def add_kernel(X, Y, O):
    (n,) = X.shape
    with T.Kernel(T.ceildiv(n, BLOCK), threads=BLOCK) as bx:
        for i in T.Parallel(BLOCK):
            with T.If(bx * BLOCK + i < n):
                O[bx * BLOCK + i] = X[bx * BLOCK + i] + Y[bx * BLOCK + i]


def sum_diff_kernel(X, Y, S, D):
    (n,) = X.shape
    with T.Kernel(n // BLOCK, threads=BLOCK) as bx:
        for i in T.Parallel(BLOCK):
            S[bx * BLOCK + i] = X[bx * BLOCK + i] + Y[bx * BLOCK + i]
            D[bx * BLOCK + i] = X[bx * BLOCK + i] - Y[bx * BLOCK + i]


def _f32(n=N):
    return jax.ShapeDtypeStruct((n,), jnp.float32)


# ----------------------------------------------------------------------------- launcher forms


def test_out_shape_single_struct_returns_one_array():
    add = jtile.pallas_like(add_kernel, out_shape=_f32(), interpret=True)
    x, y = _arange(), _arange(scale=3.0)
    z = add(x, y)
    assert isinstance(z, jax.Array) and z.shape == (N,)
    np.testing.assert_allclose(z, x + y)


def test_out_shape_with_a_ragged_last_block():
    add = jtile.pallas_like(add_kernel, out_shape=_f32(300), interpret=True)
    x = _arange(300)
    np.testing.assert_allclose(jax.jit(add)(x, x), 2 * x)


def test_out_shape_pytree_gives_the_same_structure():
    x, y = _arange(), _arange(scale=0.5)
    as_tuple = jtile.pallas_like(sum_diff_kernel, out_shape=(_f32(), _f32()), interpret=True)
    s, d = as_tuple(x, y)
    np.testing.assert_allclose(s, x + y)
    np.testing.assert_allclose(d, x - y)

    as_dict = jtile.pallas_like(sum_diff_kernel, out_shape={"d": _f32(), "s": _f32()},
                                interpret=True)
    out = as_dict(x, y)
    # Dict leaves flatten in key order: "d" is the first output ref, "s" the second.
    assert set(out) == {"d", "s"}
    np.testing.assert_allclose(out["d"], x + y)
    np.testing.assert_allclose(out["s"], x - y)


def test_t_empty_form_single_output():
    def scale_kernel(X):
        (n,) = X.shape
        O = T.empty((n,), "float32")
        with T.Kernel(n // BLOCK, threads=BLOCK) as bx:
            for i in T.Parallel(BLOCK):
                O[bx * BLOCK + i] = X[bx * BLOCK + i] * 2.0
        return O

    scale = jtile.pallas_like(scale_kernel, interpret=True)
    x = _arange()
    out = scale(x)
    assert isinstance(out, jax.Array)
    np.testing.assert_allclose(out, 2 * x)


def test_t_empty_form_tuple_output():
    def split_kernel(X):
        (n,) = X.shape
        Lo = T.empty((n,), "float32")
        Hi = T.empty((n,), "int32")
        with T.Kernel(n // BLOCK, threads=BLOCK) as bx:
            for i in T.Parallel(BLOCK):
                Lo[bx * BLOCK + i] = X[bx * BLOCK + i] - 1.0
                Hi[bx * BLOCK + i] = T.cast(X[bx * BLOCK + i], "int32")
        return Lo, Hi

    lo, hi = jtile.pallas_like(split_kernel, interpret=True)(_arange())
    np.testing.assert_allclose(lo, _arange() - 1)
    assert hi.dtype == jnp.int32
    np.testing.assert_array_equal(hi, np.arange(N, dtype=np.int32))


def test_t_empty_single_element_tuple_stays_a_tuple():
    def one_kernel(X):
        O = T.empty(X.shape, "float32")
        with T.Kernel(X.shape[0] // BLOCK, threads=BLOCK) as bx:
            for i in T.Parallel(BLOCK):
                O[bx * BLOCK + i] = X[bx * BLOCK + i]
        return (O,)

    out = jtile.pallas_like(one_kernel, interpret=True)(_arange())
    assert isinstance(out, tuple) and len(out) == 1


def test_grid_form_with_program_id():
    def double_kernel(X, O):
        bx = T.program_id(0)
        for i in T.Parallel(BLOCK):
            O[bx * BLOCK + i] = X[bx * BLOCK + i] * 2.0

    double = jtile.pallas_like(double_kernel, out_shape=_f32(), grid=(N // BLOCK,),
                               threads=BLOCK, interpret=True)
    x = _arange()
    np.testing.assert_allclose(jax.jit(double)(x), 2 * x)


def test_two_dimensional_grid_form():
    rows, cols = 4, 256

    def transpose_add_kernel(X, O):
        r = T.program_id(0)
        c = T.program_id(1)
        for j in T.Parallel(BLOCK):
            O[r, c * BLOCK + j] = X[r, c * BLOCK + j] + r

    f = jtile.pallas_like(transpose_add_kernel,
                          out_shape=jax.ShapeDtypeStruct((rows, cols), jnp.float32),
                          grid=(rows, cols // BLOCK), interpret=True)
    x = jnp.ones((rows, cols), jnp.float32)
    np.testing.assert_allclose(f(x), x + jnp.arange(rows, dtype=jnp.float32)[:, None])


def test_numpy_inputs_are_accepted():
    add = jtile.pallas_like(add_kernel, out_shape=_f32(), interpret=True)
    x = np.arange(N, dtype=np.float32)
    np.testing.assert_allclose(add(x, x), 2 * x)
    # float64 NumPy data becomes float32 (no x64), like any JAX operation's input.
    np.testing.assert_allclose(add(x.astype(np.float64), x), 2 * x)


def test_name_renames_the_kernel(capsys):
    add = jtile.pallas_like(add_kernel, out_shape=_f32(), interpret=True, name="my_add",
                            debug=True)
    add(_arange(), _arange())
    assert "my_add" in capsys.readouterr().out


# ----------------------------------------------------------------------------- caching


def test_traced_once_per_signature():
    traces = []

    def counting_kernel(X, O):
        traces.append(X.shape)
        add_kernel(X, X, O)

    launcher = jtile.pallas_like(counting_kernel, out_shape=_f32(), interpret=True)
    x = _arange()
    launcher(x)
    launcher(x + 1)
    jax.jit(launcher)(x)
    assert traces == [(N,)] and launcher.trace_count == 1

    # A different input shape is a new signature (the output shape is fixed by out_shape).
    def counting_empty_kernel(X):
        traces.append(X.shape)
        O = T.empty(X.shape, "float32")
        add_kernel(X, X, O)
        return O

    traces.clear()
    launcher = jtile.pallas_like(counting_empty_kernel, interpret=True)
    launcher(_arange(256))
    launcher(_arange(256))
    launcher(_arange(384))
    launcher(_arange(384, dtype=jnp.int32).astype(jnp.float32))
    assert traces == [(256,), (384,)] and launcher.trace_count == 2


def test_different_dtype_retraces():
    traces = []

    def copy_kernel(X):
        traces.append(X.dtype)
        O = T.empty(X.shape, X.dtype)
        with T.Kernel(1, threads=BLOCK) as _:
            for i in T.Parallel(BLOCK):
                O[i] = X[i]
        return O

    launcher = jtile.pallas_like(copy_kernel, interpret=True)
    launcher(jnp.ones((BLOCK,), jnp.float32))
    launcher(jnp.ones((BLOCK,), jnp.float16))
    assert len(traces) == 2


# ----------------------------------------------------------------------------- jax transforms


def test_works_under_jit_and_inside_larger_programs():
    add = jtile.pallas_like(add_kernel, out_shape=_f32(), interpret=True)

    @jax.jit
    def program(x, y):
        return jnp.sum(add(jnp.sin(x), y) * 2.0)

    x, y = _arange(scale=0.01), _arange(scale=0.1)
    np.testing.assert_allclose(program(x, y), jnp.sum((jnp.sin(x) + y) * 2.0), rtol=1e-5)


def square_kernel(X, O):
    (n,) = X.shape
    with T.Kernel(n // BLOCK, threads=BLOCK) as bx:
        for i in T.Parallel(BLOCK):
            O[bx * BLOCK + i] = X[bx * BLOCK + i] * X[bx * BLOCK + i]


def square_bwd_kernel(X, G, DX):
    (n,) = X.shape
    with T.Kernel(n // BLOCK, threads=BLOCK) as bx:
        for i in T.Parallel(BLOCK):
            DX[bx * BLOCK + i] = 2.0 * X[bx * BLOCK + i] * G[bx * BLOCK + i]


def test_grad_through_a_custom_vjp_kernel_pair():
    forward = jtile.pallas_like(square_kernel, out_shape=_f32(), interpret=True)
    backward = jtile.pallas_like(square_bwd_kernel, out_shape=_f32(), interpret=True)

    @jax.custom_vjp
    def square(x):
        return forward(x)

    def square_fwd(x):
        return forward(x), x

    def square_bwd(x, g):
        return (backward(x, g),)

    square.defvjp(square_fwd, square_bwd)

    def loss(x):
        return jnp.sum(jnp.cos(square(x)))

    def reference(x):
        return jnp.sum(jnp.cos(x * x))

    x = _arange(scale=1.0 / N)
    np.testing.assert_allclose(loss(x), reference(x), rtol=1e-6)
    np.testing.assert_allclose(jax.grad(loss)(x), jax.grad(reference)(x), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(jax.jit(jax.grad(loss))(x), jax.grad(reference)(x), rtol=1e-5,
                               atol=1e-7)
    # And batched: vmap of grad runs both kernels folded.
    xs = jnp.stack([x, 2 * x])
    np.testing.assert_allclose(jax.vmap(jax.grad(loss))(xs), jax.vmap(jax.grad(reference))(xs),
                               rtol=1e-5, atol=1e-7)


def test_grad_without_custom_vjp_is_refused():
    forward = jtile.pallas_like(square_kernel, out_shape=_f32(), interpret=True)
    with pytest.raises(NotImplementedError):
        jax.grad(lambda x: jnp.sum(forward(x)))(_arange())


def test_works_inside_shard_map():
    from jax.sharding import NamedSharding, PartitionSpec as P

    add = jtile.pallas_like(add_kernel, out_shape=_f32(), interpret=True)
    mesh = jax.make_mesh((1,), ("x",))
    x = jax.device_put(_arange(), NamedSharding(mesh, P("x")))
    y = jax.device_put(_arange(scale=2.0), NamedSharding(mesh, P()))
    # x varies over the manual axis, y does not: the output varies like x.
    f = jax.jit(jax.shard_map(lambda a, b: add(a, b) * 2.0, mesh=mesh,
                              in_specs=(P("x"), P()), out_specs=P("x")))
    np.testing.assert_allclose(f(x, y), 2.0 * (_arange() + _arange(scale=2.0)))


# ----------------------------------------------------------------------------- interpret switch


def test_jtile_interpret_env_forces_interpret_mode(monkeypatch):
    monkeypatch.setenv("JTILE_INTERPRET", "1")
    add = jtile.pallas_like(add_kernel, out_shape=_f32())  # interpret not asked for
    x = _arange()
    np.testing.assert_allclose(jax.jit(add)(x, x), 2 * x)


@pytest.mark.skipif(cuda_available(), reason="this machine has a CUDA GPU")
def test_without_a_gpu_the_error_names_interpret_mode():
    add = jtile.pallas_like(add_kernel, out_shape=_f32())
    x = _arange()
    with pytest.raises(jtile.JtileRuntimeError, match=r"interpret=True") as info:
        add(x, x)
    assert "no CUDA GPU" in str(info.value) and "JTILE_INTERPRET=1" in str(info.value)
    with pytest.raises(jtile.JtileRuntimeError, match=r"interpret=True"):
        jax.jit(add)(x, x)


# ----------------------------------------------------------------------------- debug


def test_debug_prints_the_kernel_ir(capsys):
    add = jtile.pallas_like(add_kernel, out_shape=_f32(), interpret=True, debug=True)
    add(_arange(), _arange())
    printed = capsys.readouterr().out
    assert "add_kernel" in printed
    assert "X" in printed and "O" in printed


def test_jtile_debug_env_prints_the_ir(monkeypatch, capsys):
    monkeypatch.setenv("JTILE_DEBUG", "1")
    jtile.pallas_like(add_kernel, out_shape=_f32(), interpret=True)(_arange(), _arange())
    assert "add_kernel" in capsys.readouterr().out


def test_no_output_without_debug(capsys):
    jtile.pallas_like(add_kernel, out_shape=_f32(), interpret=True)(_arange(), _arange())
    assert capsys.readouterr().out == ""


# ----------------------------------------------------------------------------- aliases


def accumulate_kernel(X, Acc, O):
    (n,) = X.shape
    with T.Kernel(n // BLOCK, threads=BLOCK) as bx:
        for i in T.Parallel(BLOCK):
            O[bx * BLOCK + i] = O[bx * BLOCK + i] + X[bx * BLOCK + i]


def test_input_output_aliases_start_the_output_from_the_input():
    acc = jtile.pallas_like(accumulate_kernel, out_shape=_f32(), interpret=True,
                            input_output_aliases={1: 0})
    x, a = _arange(), _arange(scale=10.0)
    np.testing.assert_allclose(acc(x, a), x + a)
    np.testing.assert_allclose(jax.jit(acc, donate_argnums=1)(x, jnp.array(a)), x + a)


def test_aliases_of_different_shapes_are_refused():
    acc = jtile.pallas_like(accumulate_kernel, out_shape=_f32(), interpret=True,
                            input_output_aliases={1: 0})
    with pytest.raises(jtile.JtileShapeError, match=r"input_output_aliases \{1: 0\}"):
        acc(_arange(), _arange(256))


def test_aliases_out_of_range_are_refused():
    acc = jtile.pallas_like(accumulate_kernel, out_shape=_f32(), interpret=True,
                            input_output_aliases={2: 0})
    with pytest.raises(jtile.JtileError, match="out of range"):
        acc(_arange(), _arange())


def test_writing_an_input_without_an_alias_is_caught_at_the_call():
    def bad_kernel(X, O):
        with T.Kernel(1, threads=BLOCK) as _:
            for i in T.Parallel(BLOCK):
                X[i] = 1.0
                O[i] = 1.0

    bad = jtile.pallas_like(bad_kernel, out_shape=_f32(BLOCK), interpret=True)
    with pytest.raises(jtile.JtileError, match="read-only"):
        jax.jit(bad).trace(jnp.ones((BLOCK,), jnp.float32))  # before any lowering


# ----------------------------------------------------------------------------- user errors


def test_tensor_annotation_mismatch_names_the_parameter():
    def annotated_kernel(A: T.Tensor((N,), "float16"), O: T.Tensor((N,), "float16")):
        with T.Kernel(N // BLOCK, threads=BLOCK) as bx:
            for i in T.Parallel(BLOCK):
                O[bx * BLOCK + i] = A[bx * BLOCK + i]

    f = jtile.pallas_like(annotated_kernel, out_shape=jax.ShapeDtypeStruct((N,), jnp.float16),
                          interpret=True)
    np.testing.assert_allclose(f(jnp.ones((N,), jnp.float16)), np.ones(N))
    with pytest.raises(jtile.JtileShapeError, match=r"`A`.*float16") as info:
        f(jnp.ones((N,), jnp.float32))
    assert "annotated_kernel" in str(info.value)
    with pytest.raises(jtile.JtileShapeError, match=r"`A` has shape \(256,\)"):
        f(jnp.ones((256,), jnp.float16))


def test_a_kernel_that_never_writes_its_output_is_refused():
    def lazy_kernel(X, O):
        with T.Kernel(1, threads=BLOCK) as _:
            for i in T.Parallel(BLOCK):
                T.if_then_else(X[i] > 0, X[i], 0.0)

    f = jtile.pallas_like(lazy_kernel, out_shape=_f32(BLOCK), interpret=True)
    with pytest.raises(jtile.JtileError, match="never written"):
        f(jnp.ones((BLOCK,), jnp.float32))


def test_wrong_number_of_arrays_is_a_clear_error():
    add = jtile.pallas_like(add_kernel, out_shape=_f32(), interpret=True)
    with pytest.raises(jtile.JtileError, match="array parameters"):
        add(_arange())


def test_bad_out_shape_leaf():
    with pytest.raises(jtile.JtileError, match="out_shape leaf 0 is 512; expected a jax.Shape"):
        jtile.pallas_like(add_kernel, out_shape=(N,), interpret=True)


def test_shape_dtype_struct_inputs_are_for_lower_only():
    add = jtile.pallas_like(add_kernel, out_shape=_f32(), interpret=True)
    with pytest.raises(jtile.JtileError, match=r"\.lower"):
        add(_f32(), _f32())


def test_compiler_params_are_checked():
    with pytest.raises(jtile.JtileError, match="unknown compiler_params"):
        jtile.pallas_like(add_kernel, out_shape=_f32(), compiler_params={"num_warps": 4})
    with pytest.raises(jtile.JtileTargetError, match="sm_70"):
        jtile.pallas_like(add_kernel, out_shape=_f32(), compiler_params={"target": "sm_70"})
    with pytest.raises(jtile.JtileError, match="list of strings"):
        jtile.pallas_like(add_kernel, out_shape=_f32(), compiler_params={"options": "-O3"})


def test_public_api():
    assert callable(jtile.pallas_like)
    assert isinstance(jtile.__version__, str)
    for name in ("Lowered", "Compiled", "JtileError", "JtileTraceError", "JtileShapeError",
                 "JtileTargetError", "JtileCompileError", "JtileRuntimeError"):
        assert name in jtile.__all__ and hasattr(jtile, name)
    assert issubclass(jtile.JtileRuntimeError, jtile.JtileError)
