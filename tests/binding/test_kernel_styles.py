"""TileLang's two kernel styles through `jtile.pallas_like`: a factory returning a
`@T.prim_func` with `T.Tensor` parameter annotations, and the eager-jit style with `T.const`,
in-body annotations and `T.empty` outputs. Each runs in interpret mode against NumPy and is
lowered to CUDA for sm_90a."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jtile
import jtile.language as T


@pytest.fixture(autouse=True)
def _no_global_switches(monkeypatch):
    for name in ("JTILE_INTERPRET", "JTILE_DEBUG", "JTILE_TARGET"):
        monkeypatch.delenv(name, raising=False)


def _normal(seed, shape, dtype=jnp.float32):
    return jax.random.normal(jax.random.PRNGKey(seed), shape, jnp.float32).astype(dtype)


def _f32(a):
    return np.asarray(a, np.float32)


# ----------------------------------------------------------------------------- factory style


def matmul(M, N, K, block_M, block_N, block_K, dtype="float16", accum_dtype="float"):
    @T.prim_func
    def gemm(A: T.Tensor((M, K), dtype), B: T.Tensor((K, N), dtype),
             C: T.Tensor((M, N), dtype)):
        with T.Kernel(T.ceildiv(N, block_N), T.ceildiv(M, block_M), threads=128) as (bx, by):
            A_shared = T.alloc_shared((block_M, block_K), dtype)
            B_shared = T.alloc_shared((block_K, block_N), dtype)
            C_local = T.alloc_fragment((block_M, block_N), accum_dtype)
            T.clear(C_local)
            for k in T.Pipelined(T.ceildiv(K, block_K), num_stages=2):
                T.copy(A[by * block_M, k * block_K], A_shared)
                T.copy(B[k * block_K, bx * block_N], B_shared)
                T.gemm(A_shared, B_shared, C_local)
            T.copy(C_local, C[by * block_M, bx * block_N])

    return gemm


def test_factory_prim_func_infers_its_output_from_the_annotation():
    kernel = matmul(128, 128, 64, 64, 64, 32)
    a, b = _normal(0, (128, 64), jnp.float16), _normal(1, (64, 128), jnp.float16)
    f = jtile.pallas_like(kernel, interpret=True)
    c = f(a, b)
    assert c.shape == (128, 128) and c.dtype == jnp.float16
    np.testing.assert_allclose(_f32(c), _f32(a) @ _f32(b), rtol=2e-2, atol=2e-2)
    source = f.lower(a, b, target="sm_90a").cuda_source()
    assert "gemm" in source and f.__name__ == "gemm"


def test_factory_prim_func_with_explicit_out_shape_and_under_jit():
    kernel = matmul(64, 64, 32, 64, 64, 32)
    a, b = _normal(2, (64, 32), jnp.float16), _normal(3, (32, 64), jnp.float16)
    f = jtile.pallas_like(kernel, out_shape=jax.ShapeDtypeStruct((64, 64), jnp.float16),
                          interpret=True)
    np.testing.assert_allclose(_f32(jax.jit(f)(a, b)), _f32(a) @ _f32(b), rtol=2e-2, atol=2e-2)


def test_prim_func_input_annotations_are_checked():
    f = jtile.pallas_like(matmul(128, 128, 64, 64, 64, 32), interpret=True)
    with pytest.raises(jtile.JtileShapeError,
                       match=r"^gemm \(test_kernel_styles.py:\d+\): input parameter `B` has shape "
                             r"\(32, 128\) but is annotated T.Tensor\(\(64, 128\), float16\)"
                             r".*parameters not passed, at the end, are the outputs.*"
                             r"input_output_aliases"):
        f(_normal(0, (128, 64), jnp.float16), _normal(1, (32, 128), jnp.float16))


def test_prim_func_objects_are_not_called_directly():
    with pytest.raises(jtile.JtileTraceError, match=r"jtile.pallas_like\(gemm\)"):
        matmul(64, 64, 32, 64, 64, 32)(None, None, None)


def split_kernel(M, N, block):
    @T.prim_func(private=True)
    def split(X: T.Tensor((M, N), "float32"), Pos: T.Tensor((M, N), "float32"),
              Neg: T.Tensor((M, N), "int32")):
        with T.Kernel(M * N // block, threads=128) as bx:
            for i in T.Parallel(block):
                row = (bx * block + i) // N
                col = (bx * block + i) % N
                v = X[row, col]
                Pos[row, col] = v if v > 0 else 0.0
                Neg[row, col] = 1 if v < 0 else 0

    return split


def test_several_annotated_outputs_come_back_as_a_tuple():
    x = _normal(4, (16, 32))
    f = jtile.pallas_like(split_kernel(16, 32, 128), interpret=True)
    pos, neg = f(x)
    xn = np.asarray(x)
    np.testing.assert_allclose(pos, np.maximum(xn, 0))
    np.testing.assert_array_equal(neg, (xn < 0).astype(np.int32))
    assert neg.dtype == jnp.int32
    f.lower(x, target="sm_90a").cuda_source()


def dynamic_rows(block=64):
    m = T.dynamic("m")

    @T.prim_func
    def double(X: T.Tensor((m, 32), "float32"), Y: T.Tensor((m, 32), "float32")):
        with T.Kernel(T.ceildiv(m, block), threads=128) as bx:
            for i, j in T.Parallel(block, 32):
                if bx * block + i < m:
                    Y[bx * block + i, j] = X[bx * block + i, j] * 2.0

    return double


def test_symbolic_dimensions_bind_from_the_arguments_and_retrace_per_shape():
    f = jtile.pallas_like(dynamic_rows(), interpret=True)
    for rows, seed in ((100, 5), (64, 6)):
        x = _normal(seed, (rows, 32))
        np.testing.assert_allclose(f(x), np.asarray(x) * 2.0)
    assert f.trace_count == 2
    assert "while" not in f.lower(_normal(0, (100, 32)), target="sm_90a").cuda_source()
    with pytest.raises(jtile.JtileShapeError, match=r"`X` has shape \(10, 16\) but is annotated "
                                                    r"T.Tensor\(\(m, 32\), float32\); m = 10"):
        f(_normal(0, (10, 16)))


def test_an_output_the_inputs_do_not_determine_needs_out_shape():
    m, n = T.dynamic("m, n")

    @T.prim_func
    def widen(X: T.Tensor((m,), "float32"), Y: T.Tensor((n,), "float32")):
        with T.Kernel(1):
            T.copy(X, Y)

    with pytest.raises(jtile.JtileShapeError, match=r"output parameter `Y` is annotated "
                                                    r"T.Tensor\(\(n,\), float32\) with n, which "
                                                    r"no input determines; pass out_shape="):
        jtile.pallas_like(widen, interpret=True)(_normal(0, (8,)))


def accumulate_kernel(M, N):
    @T.prim_func
    def accumulate(X: T.Tensor((M, N), "float32"), Total: T.Tensor((M, N), "float32"),
                   Count: T.Tensor((M,), "int32")):
        with T.Kernel(M, threads=32) as bx:
            for j in T.Parallel(N):
                T.atomic_add(Total[bx, j], X[bx, j])
            Count[bx] = Count[bx] + 1

    return accumulate


def test_aliased_parameters_of_a_prim_func_given_all_its_arguments_are_updated_in_place():
    """TileLang's kernels compiled without out_idx write into their arguments; with
    input_output_aliases the aliased inputs come back, in output order, holding the writes."""
    x, total = _normal(9, (8, 32)), _normal(10, (8, 32))
    count = jnp.arange(8, dtype=jnp.int32)
    f = jtile.pallas_like(accumulate_kernel(8, 32), input_output_aliases={2: 1, 1: 0},
                          interpret=True)
    new_total, new_count = f(x, total, count)
    np.testing.assert_allclose(new_total, np.asarray(total) + np.asarray(x), rtol=1e-6)
    np.testing.assert_array_equal(new_count, np.arange(8) + 1)
    source = f.lower(x, total, count, target="sm_90a").cuda_source()
    assert "Total_in" in source and "Count_in" in source
    with pytest.raises(jtile.JtileTraceError, match=r"input_output_aliases \{1: 1\} .*"
                                                    r"the output indices must be 0, 1"):
        jtile.pallas_like(accumulate_kernel(8, 32), input_output_aliases={1: 1},
                          interpret=True)(x, total, count)


# ----------------------------------------------------------------------------- eager-jit style


def eager_add(A, B, block_M: int = 32, block_N: int = 32):
    M, N = T.const("M, N")
    A: T.Tensor((M, N), T.float32)
    B: T.Tensor((M, N), T.float32)
    C = T.empty((M, N), T.float32)
    with T.Kernel(T.ceildiv(N, block_N), T.ceildiv(M, block_M), threads=128) as (bx, by):
        for i, j in T.Parallel(block_M, block_N):
            C[by * block_M + i, bx * block_N + j] = (A[by * block_M + i, bx * block_N + j] +
                                                     B[by * block_M + i, bx * block_N + j])
    return C


def test_eager_style_binds_const_names_from_the_arguments():
    a, b = _normal(7, (64, 96)), _normal(8, (64, 96))
    f = jtile.pallas_like(eager_add, interpret=True)
    np.testing.assert_allclose(f(a, b), np.asarray(a) + np.asarray(b), rtol=1e-6)
    f.lower(a, b, target="sm_90a").cuda_source()
    g = jtile.pallas_like(functools.partial(eager_add, block_M=64, block_N=16), interpret=True)
    np.testing.assert_allclose(g(a, b), np.asarray(a) + np.asarray(b), rtol=1e-6)


def test_eager_style_checks_names_already_bound():
    f = jtile.pallas_like(eager_add, interpret=True)
    with pytest.raises(jtile.JtileShapeError,
                       match=r"^eager_add \(test_kernel_styles.py:\d+\): test_kernel_styles.py:\d+:"
                             r" parameter `B` has shape \(64, 32\) but is annotated "
                             r"T.Tensor\(\(64, 96\), float32\)"):
        f(_normal(0, (64, 96)), _normal(1, (64, 32)))


def eager_rowsum(X, block_M=16):
    rows, cols = T.const("rows cols", "int32")   # space-separated names, a dtype
    half = T.const("half")
    X: T.Tensor[[rows, cols], T.float32]
    W: T.Tensor[(half,), "float32"]   # noqa: F842  (W is the second parameter below)
    Y = T.empty((rows,), T.float32)
    with T.Kernel(T.ceildiv(rows, block_M), threads=128) as bx:
        for i in T.Parallel(block_M):
            Y[bx * block_M + i] = X[bx * block_M + i, cols - 1] * half
    return Y


def test_const_names_not_annotated_on_a_parameter_are_refused():
    with pytest.raises(jtile.JtileTraceError,
                       match=r"`W: T.Tensor\(\(half,\), float32\)` annotates a name that is "
                             r"not a kernel parameter \(so it cannot bind half\)"):
        jtile.pallas_like(eager_rowsum, interpret=True)(_normal(0, (32, 8)))


def eager_row_ends(X, block_M=16):
    rows, cols = T.const("rows cols")
    X: T.Tensor[[rows, cols], T.float32]
    Y = T.empty((rows,), T.float32)
    with T.Kernel(T.ceildiv(rows, block_M), threads=128) as bx:
        for i in T.Parallel(block_M):
            Y[bx * block_M + i] = X[bx * block_M + i, 0] + X[bx * block_M + i, cols - 1]
    return Y


def test_eager_style_with_subscript_annotations_and_space_separated_names():
    x = _normal(9, (48, 10))
    f = jtile.pallas_like(eager_row_ends, interpret=True)
    np.testing.assert_allclose(f(x), np.asarray(x)[:, 0] + np.asarray(x)[:, -1], rtol=1e-6)
    f.lower(x, target="sm_90a").cuda_source()


def test_eager_style_output_refs_given_by_out_shape_are_annotated_too():
    def scale(A, C, factor: float = 2.0):
        M = T.const("M")
        A: T.Tensor((M,), "float32")
        C: T.Tensor((M,), "float32")
        with T.Kernel(T.ceildiv(M, 128), threads=128) as bx:
            for i in T.Parallel(128):
                if bx * 128 + i < M:
                    C[bx * 128 + i] = A[bx * 128 + i] * factor

    a = _normal(10, (200,))
    f = jtile.pallas_like(scale, out_shape=jax.ShapeDtypeStruct((200,), jnp.float32),
                          interpret=True)
    np.testing.assert_allclose(f(a), np.asarray(a) * 2.0, rtol=1e-6)
    bad = jtile.pallas_like(scale, out_shape=jax.ShapeDtypeStruct((100,), jnp.float32),
                            interpret=True)
    with pytest.raises(jtile.JtileShapeError, match=r"parameter `C` has shape \(100,\)"):
        bad(a)


def test_an_in_body_annotation_of_a_non_parameter_is_refused():
    def stray(A):
        M = T.const("M")
        A: T.Tensor((M,), "float32")
        Out: T.Tensor((M,), "float32")
        return Out

    with pytest.raises(jtile.JtileTraceError, match=r"`Out: T.Tensor\(\(8,\), float32\)` "
                                                    r"annotates a name that is not a kernel "
                                                    r"parameter; declare outputs with "
                                                    r"`Out = T.empty"):
        jtile.pallas_like(stray, interpret=True)(_normal(0, (8,)))


def test_const_outside_a_kernel_trace_is_refused():
    with pytest.raises(jtile.JtileTraceError, match="T.const .*outside a jtile kernel trace"):
        T.const("M")


# ----------------------------------------------------------------------------- macros


def row_scale_factory(rows, cols, block_rows, clamp):
    @T.macro
    def load_tile(X: T.Tensor((rows, cols), "float32"),
                  tile: T.FragmentBuffer((block_rows, cols), "float32"), row0: T.int32):
        for i, j in T.Parallel(block_rows, cols):
            tile[i, j] = X[row0 + i, j]

    @T.macro
    def scale_rows(tile: T.FragmentBuffer((block_rows, cols), "float32"),
                   peak: T.FragmentBuffer((block_rows,), "float32")):
        T.reduce_absmax(tile, peak, dim=1)
        for i, j in T.Parallel(block_rows, cols):
            if clamp:                    # a static branch: chosen when the kernel is built
                tile[i, j] = T.min(tile[i, j] / peak[i], 0.5)
            else:
                tile[i, j] = tile[i, j] / peak[i] if peak[i] > 0 else 0.0

    @T.prim_func
    def row_scale(X: T.Tensor((rows, cols), "float32"), Y: T.Tensor((rows, cols), "float32")):
        with T.Kernel(rows // block_rows, threads=128) as bx:
            tile = T.alloc_fragment((block_rows, cols), "float32")
            peak = T.alloc_fragment((block_rows,), "float32")
            load_tile(X, tile, bx * block_rows)
            scale_rows(tile, peak)
            T.copy(tile, Y[bx * block_rows, 0])

    return row_scale


@pytest.mark.parametrize("clamp", [False, True])
def test_factory_with_macros(clamp):
    x = _normal(11, (64, 32))
    f = jtile.pallas_like(row_scale_factory(64, 32, 16, clamp), interpret=True)
    xn = np.asarray(x)
    want = xn / np.abs(xn).max(axis=1, keepdims=True)
    if clamp:
        want = np.minimum(want, 0.5)
    np.testing.assert_allclose(f(x), want, rtol=1e-6)
    f.lower(x, target="sm_90a").cuda_source()
